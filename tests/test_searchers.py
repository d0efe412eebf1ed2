"""DDAS, DADA and DAAS on a toy problem whose best op is known, and exact checkpoint/resume.

Toy problem: 8x8 grey images with a bright 3x3 blob; the class is whether the blob is in the top
or the bottom half. Training blobs are always in the left half, validation blobs in the right
half, so FlipLR (and only FlipLR) moves training images toward the validation distribution.
A linear classifier starts at zero. Every searcher must make FlipLR its most likely op.
"""
from __future__ import annotations

import json

import pytest
import torch

from det_autoaug.ops.spaces import SpaceEntry
from det_autoaug.policy.policy import SearchedPolicy, build_policy
from det_autoaug.policy.policy_file import load_policy_file, policy_from_dict, save_policy_file
from det_autoaug.search.searchers import (DAASSearcher, DADASharedSearcher, DDASSearcher, TorchSearchContext,
                                          build_searcher, select_images)
from search_helpers import assert_same_state
from search_helpers import ToyBlobs

pytestmark = pytest.mark.usefixtures('one_thread')  # tiny tensors (conftest.py)

OPS = ('Identity', 'FlipLR', 'FlipUD', 'Invert')
ENTRIES = tuple(SpaceEntry(op, 1.0) for op in OPS)
SIZE = 8


class Toy(ToyBlobs):
    """Model, optimiser, data streams and search context of the toy problem (all seeded)."""

    def __init__(self, searcher, seed: int = 0, lr: float = 0.5) -> None:
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, 2))
        with torch.no_grad():
            for p in self.model.parameters():
                p.zero_()
        self.model[1].weight.register_hook(lambda g: g / 255.0)  # inputs are on the 0..255 scale
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.data_gen = torch.Generator().manual_seed(seed + 7)
        self.searcher = searcher
        forward = lambda out, y: torch.nn.functional.cross_entropy(out / 255.0, y)  # noqa: E731
        self.ctx = TorchSearchContext(self.model, forward, self.opt, self._val, searcher.num_grad_slots, seed=seed)


def _ddas():
    return DDASSearcher(ENTRIES, signal='one_step', num_policies=3, ops_per_policy=1, lr_alpha=0.05, lr_beta=0.01)


def _daas():
    return DAASSearcher(ENTRIES, reward='paired', ops_per_policy=1, lr_alpha=0.05, lr_beta=0.01, baseline_decay=0.8)


def _dada():  # the shared-parameter variant; the published DADA: tests/test_dada_published.py
    return DADASharedSearcher(ENTRIES, lr=0.1, lr_cv=0.05)


def _probs(searcher) -> dict:
    """Each op's probability under the searcher (DADA: its application probability)."""
    return searcher.op_probs()


@pytest.mark.parametrize('make, steps', [(_ddas, 40), (_daas, 60), (_dada, 30)], ids=['ddas', 'daas', 'dada_shared'])
def test_every_searcher_finds_the_op_that_helps_validation(make, steps):
    toy = Toy(make())
    before = _probs(toy.searcher)
    toy.run(steps)
    after = _probs(toy.searcher)
    assert after['FlipLR'] > before['FlipLR'] + 0.02, f'FlipLR did not rise: {before} -> {after}'
    others = {k: v for k, v in after.items() if k != 'FlipLR'}
    assert after['FlipLR'] > max(others.values()), f'FlipLR is not the most likely op: {after}'


@pytest.mark.parametrize('make', [_ddas, _daas, _dada], ids=['ddas', 'daas', 'dada_shared'])
def test_state_dict_round_trip_mid_search_continues_identically(make):
    straight = Toy(make())
    straight.run(8)
    first = Toy(make())
    first.run(4)
    blob = first.state()
    resumed = Toy(make(), seed=123)  # different seed: everything must come from the state
    resumed.load(blob)
    resumed.run(4)
    assert_same_state(straight.searcher.state_dict(), resumed.searcher.state_dict())


def test_load_state_dict_rejects_another_searcher():
    with pytest.raises(ValueError, match='daas'):
        _daas().load_state_dict(_ddas().state_dict())
    with pytest.raises(ValueError, match='searcher'):
        _dada().load_state_dict(_ddas().state_dict())


def test_build_searcher_names_bad_names_and_arguments():
    with pytest.raises(ValueError, match="'nope'"):
        build_searcher('nope', ENTRIES)
    with pytest.raises(ValueError, match='searcher_cfg'):
        build_searcher('dada', ENTRIES, dict(num_policies=3))
    with pytest.raises(ValueError, match='baseline_decay'):
        build_searcher('daas', ENTRIES, dict(baseline_decay=1.0))


def test_dada_shared_sub_policies_are_ordered_pairs_of_distinct_ops_at_mean_magnitudes():
    entries = (SpaceEntry('Rotate', 6.0, 2.0), SpaceEntry('Rotate', 18.0, 6.0), SpaceEntry('Color', 0.4, 2.0))
    dada = DADASharedSearcher(entries)
    assert dada.op_names == ['Rotate', 'Color'] and dada.pairs == [(0, 1), (1, 0)]
    torch.testing.assert_close(dada.magnitude_values(), torch.tensor([12.0, 0.4], dtype=torch.float64))
    assert abs(dada.apply_prob() - 0.75) < 1e-6  # two ops at p = 0.5


def test_dada_shared_export_is_a_policy_file_policy_augment_samples_by_sub_policy(tmp_path):
    toy = Toy(_dada())
    toy.run(3)
    toy.searcher.snapshot(1)
    path = tmp_path / 'dada.json'
    save_policy_file(path, space='toy', meta={'steps': 3}, **toy.searcher.export())
    doc = json.loads(path.read_text())
    assert doc['version'] == 2 and len(doc['subpolicies']) == 12
    loaded = load_policy_file(path)
    assert abs(sum(sp.prob for sp in loaded.subpolicies) - 1) < 1e-9
    policy = build_policy(path)
    assert isinstance(policy, SearchedPolicy) and not policy.uses_epoch
    gen = torch.Generator().manual_seed(0)
    pairs = {tuple(o.op for o in sp.ops) for sp in loaded.subpolicies}
    for _ in range(20):
        chain = policy.sample_chain(gen)
        assert len(chain) == 2 and tuple(s.op for s in chain) in pairs
        assert all(0 < s.prob < 1 for s in chain)


def _sub_doc(**overrides):
    doc = {'schema': 'det_autoaug.policy', 'version': 2, 'searcher': 'dada', 'space': 'toy',
           'entries': [{'op': 'Rotate', 'magnitude': 9.0, 'level': None}, {'op': 'Color', 'magnitude': 0.5}],
           'probs': [0.5, 0.5], 'apply_prob': 0.75, 'ops_per_policy': 2,
           'subpolicies': [{'prob': 0.7, 'ops': [{'op': 'Rotate', 'magnitude': 9.0, 'prob': 0.5},
                                                 {'op': 'Color', 'magnitude': 0.5, 'prob': 1.0}]},
                           {'prob': 0.3, 'ops': [{'op': 'Color', 'magnitude': 0.2, 'prob': 0.0}]}]}
    doc.update(overrides)
    return doc


def test_subpolicies_field_round_trips_and_samples_with_its_probabilities():
    policy = SearchedPolicy(policy_from_dict(_sub_doc()))
    assert policy_from_dict(policy.file.to_dict()) == policy.file
    gen = torch.Generator().manual_seed(0)
    chains = [policy.sample_chain(gen) for _ in range(400)]
    share = sum(len(c) == 2 for c in chains) / len(chains)
    assert 0.6 < share < 0.8
    assert chains[[len(c) for c in chains].index(2)][0].prob == 0.5


@pytest.mark.parametrize('overrides, match', [
    (dict(version=1), 'needs schema version 2'),
    (dict(subpolicies=[]), 'non-empty list'),
    (dict(subpolicies=[{'prob': 0.5, 'ops': [{'op': 'Color', 'magnitude': 0.2, 'prob': 1.0}]}]), 'sum to 0.5'),
    (dict(subpolicies=[{'prob': 1.0, 'ops': [{'op': 'Foo', 'magnitude': 0.2, 'prob': 1.0}]}]), "unknown op 'Foo'"),
    (dict(subpolicies=[{'prob': 1.0, 'ops': [{'op': 'Color', 'magnitude': 0.2, 'prob': 2.0}]}]),
     r'ops\[0\].prob=2.0'),
    (dict(subpolicies=[{'prob': 1.0, 'ops': [{'op': 'Color', 'magnitude': 0.2}]}]), 'malformed'),
])
def test_bad_subpolicies_fail_loudly(overrides, match):
    with pytest.raises(ValueError, match=match):
        policy_from_dict(_sub_doc(**overrides))


def test_version_2_without_subpolicies_is_rejected():
    doc = _sub_doc()
    del doc['subpolicies']
    with pytest.raises(ValueError, match='schema version mismatch'):
        policy_from_dict(doc)


def test_select_images_mixes_per_image():
    clean = dict(inputs=torch.zeros(3, 1, 4, 4), targets=torch.arange(3))
    aug = dict(inputs=torch.ones(3, 1, 4, 4), targets=torch.arange(3))
    out = select_images(clean, aug, [True, False, True])
    assert out['inputs'][:, 0, 0, 0].tolist() == [1.0, 0.0, 1.0]
