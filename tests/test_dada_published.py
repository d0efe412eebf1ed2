"""DADA as published (``'dada'``): unordered pairs, per-(sub-policy, slot) parameters kept in
[0, 1], the unrolled step of the official code (momentum and weight decay), exact resume, and a
search through a TorchSearchContext on the planted-harm space."""
from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

from det_autoaug.evaluation.planted_harm import SmallCNN, entry_probs, planted_space
from det_autoaug.ops.spaces import SpaceEntry
from det_autoaug.policy.policy import SearchedPolicy, build_policy
from det_autoaug.policy.policy_file import load_policy_file, save_policy_file
from det_autoaug.search.searchers import DADASearcher, DADASharedSearcher, TorchSearchContext, build_searcher
from search_helpers import assert_same_state
from search_helpers import ToyBlobs, toy_images as _images

pytestmark = pytest.mark.usefixtures('one_thread')  # tiny tensors (conftest.py)

OFFICIAL_OPS = ('ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate', 'AutoContrast', 'Invert', 'Equalize',
                'Solarize', 'Posterize', 'Contrast', 'Color', 'Brightness', 'Sharpness', 'Cutout')
TOY_OPS = ('Identity', 'FlipLR', 'FlipUD', 'Invert')
TOY_ENTRIES = tuple(SpaceEntry(op, 1.0) for op in TOY_OPS)
SIZE, BATCH = 8, 16


class SpyContext(TorchSearchContext):
    """Records the batch of the training gradient (slot 0) and the parameters at which the
    validation gradient (slot 1) is taken: the unrolled model."""

    def loss_grad(self, batch: dict, slot: int):
        if slot == 0:
            self.train_batch = {k: v.detach().clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        else:
            self.unrolled = [p.detach().clone() for p in self.params]
        return super().loss_grad(batch, slot)


class Toy(ToyBlobs):
    """A linear classifier, SGD with momentum and weight decay, the searcher and its context.

    FlipLR moves the training blobs (left) onto the validation side (right): the op that helps.
    """

    def __init__(self, searcher, seed: int = 0, optimizer: str = 'sgd') -> None:
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, 2))
        with torch.no_grad():
            self.model[1].weight.mul_(0.01)
        weight, bias = self.model[1].weight, self.model[1].bias
        if optimizer == 'sgd':  # two groups: the per-group lr and weight decay must reach the unrolled step
            self.opt = torch.optim.SGD([dict(params=[weight], weight_decay=0.01),
                                        dict(params=[bias], lr=0.05, weight_decay=0.0)], lr=0.2, momentum=0.9)
        else:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=0.01)
        self.data_gen = torch.Generator().manual_seed(seed + 7)
        self.searcher = searcher
        loss = lambda out, y: torch.nn.functional.cross_entropy(out / 255.0, y)  # noqa: E731
        self.ctx = SpyContext(self.model, loss, self.opt, self._val, searcher.num_grad_slots, seed=seed)


def test_sub_policies_are_the_unordered_pairs_of_the_distinct_ops():
    dada = DADASearcher(tuple(SpaceEntry(op, 0.0) for op in OFFICIAL_OPS))
    assert len(dada.pairs) == math.comb(15, 2) == 105  # the official search space
    assert all(i < j for i, j in dada.pairs) and len({frozenset(p) for p in dada.pairs}) == 105
    planted = DADASearcher(planted_space())  # 10 entries, 8 distinct ops (Rotate and TranslateX twice)
    assert len(planted.op_names) == 8 and len(planted.pairs) == math.comb(8, 2)


def test_every_sub_policy_and_slot_has_its_own_probability_and_magnitude():
    entries = (SpaceEntry('Rotate', 6.0), SpaceEntry('Rotate', 18.0), SpaceEntry('Color', 0.4),
               SpaceEntry('FlipLR', 1.0))
    dada = DADASearcher(entries)
    assert dada.pairs == [(0, 1), (0, 2), (1, 2)]
    assert dada.probabilities.shape == dada.magnitudes.shape == (3, 2)
    assert dada.weights.shape == (3,)
    expected = torch.tensor([[12.0, 0.4], [12.0, 1.0], [0.4, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(dada.magnitude_values(), expected)  # each slot starts at the space's magnitude
    assert abs(dada.apply_prob() - 0.75) < 1e-6  # two slots at p = 0.5
    assert dada.op_probs() == pytest.approx({'Rotate': 1 / 3, 'Color': 1 / 3, 'FlipLR': 1 / 3})

    toy = Toy(DADASearcher(TOY_ENTRIES, lr=0.05, score_unused=False, baseline_decay=None))
    p0, m0 = toy.searcher.probabilities.detach().clone(), toy.searcher.magnitudes.detach().clone()
    toy.run(1)
    k = int(toy.searcher.last_stats['subpolicy'])
    changed = (toy.searcher.probabilities.detach() != p0).any(1)
    assert changed.tolist() == [s == k for s in range(len(toy.searcher.pairs))], 'only the drawn sub-policy learns'
    assert not (toy.searcher.magnitudes.detach() != m0)[torch.arange(len(m0)) != k].any()
    # the official estimator scores every sampled decision: every sub-policy's probabilities move
    toy = Toy(DADASearcher(TOY_ENTRIES, lr=0.05, baseline_decay=None))
    p0 = toy.searcher.probabilities.detach().clone()
    toy.run(1)
    assert (toy.searcher.probabilities.detach() != p0).any(1).all()


def test_probabilities_and_magnitudes_stay_in_the_unit_interval():
    entries = (SpaceEntry('Rotate', 30.0), SpaceEntry('Brightness', 0.5), SpaceEntry('FlipLR', 1.0))
    toy = Toy(DADASearcher(entries, lr=0.3, baseline_decay=None))
    for _ in range(25):
        toy.run(1)
        for name in ('probabilities', 'magnitudes'):
            value = getattr(toy.searcher, name).detach()
            assert value.min() >= 0 and value.max() <= 1, f'{name} left [0, 1]: {value}'
    p = toy.searcher.probabilities.detach()
    assert ((p == 0) | (p == 1)).any(), 'lr 0.3 for 25 steps of raw d should reach a bound (the clamp was not exercised)'
    assert 0 <= toy.searcher.apply_prob() <= 1


def _train_batch_grads(toy: Toy, theta):
    """The gradient of the recorded training batch at parameters ``theta``, computed on a copy of
    the model, independently of the searcher."""
    model = copy.deepcopy(toy.model)
    with torch.no_grad():
        for p, t in zip(model.parameters(), theta):
            p.copy_(t)
    loss = torch.nn.functional.cross_entropy(model(toy.ctx.train_batch['inputs'].float()) / 255.0,
                                             toy.ctx.train_batch['targets'])
    return torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize('warm_steps', [0, 2], ids=['no_momentum_buffer', 'momentum_buffer'])
def test_unrolled_model_is_the_sgd_step_with_momentum_and_weight_decay(warm_steps):
    toy = Toy(DADASearcher(TOY_ENTRIES))
    toy.run(warm_steps)
    theta = [p.detach().clone() for p in toy.model.parameters()]
    state = copy.deepcopy(toy.opt.state_dict())
    toy.run(1)
    grads = _train_batch_grads(toy, theta)
    momentum = 0.9
    for i, (t, g, lr, wd) in enumerate(zip(theta, grads, (0.2, 0.05), (0.01, 0.0))):
        buf = state['state'].get(i, {}).get('momentum_buffer')
        moment = torch.zeros_like(t) if buf is None else momentum * buf
        expected = t - lr * (moment + g + wd * t)  # Architect._compute_unrolled_model
        torch.testing.assert_close(toy.ctx.unrolled[i], expected, rtol=1e-5, atol=1e-7)
        # the model then steps on the same gradient: the unrolled model is where the optimiser went
        torch.testing.assert_close(list(toy.model.parameters())[i].detach(), expected, rtol=1e-5, atol=1e-7)


def test_validation_pass_on_the_unrolled_model_leaves_batch_norm_statistics_alone():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.BatchNorm1d(SIZE * SIZE), torch.nn.Linear(SIZE * SIZE, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)

    def batch(right: bool) -> dict:
        x, y = _images(BATCH, right, gen)
        return dict(inputs=x, targets=y)
    searcher = DADASearcher(TOY_ENTRIES)
    ctx = TorchSearchContext(model, torch.nn.functional.cross_entropy, opt, lambda: batch(True), 2, seed=0)
    searcher.step(ctx, batch(False))
    # the training pass and the two perturbed passes; the official validation pass runs on a copy
    assert int(model[1].num_batches_tracked) == 3


def test_unrolled_step_falls_back_to_plain_sgd_for_other_optimisers():
    toy = Toy(DADASearcher(TOY_ENTRIES), optimizer='adam')
    with pytest.warns(UserWarning, match='falls back'):
        toy.run(1)
    theta = [p.detach().clone() for p in toy.model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # warned once per searcher
        toy.run(1)
    for t, g, u in zip(theta, _train_batch_grads(toy, theta), toy.ctx.unrolled):
        torch.testing.assert_close(u, t - 0.01 * g, rtol=1e-5, atol=1e-7)


def test_state_dict_round_trip_mid_search_continues_identically():
    def make():
        return DADASearcher(TOY_ENTRIES, lr=0.05)
    straight = Toy(make())
    straight.run(4)
    straight.searcher.snapshot(4)
    straight.run(4)
    first = Toy(make())
    first.run(4)
    first.searcher.snapshot(4)
    blob = first.state()
    resumed = Toy(make(), seed=123)  # everything must come from the state
    resumed.load(blob)
    resumed.run(4)
    flat = assert_same_state(straight.searcher.state_dict(), resumed.searcher.state_dict())
    assert flat['num_updates.'] == 8 and len(resumed.searcher.trajectory) == 1
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())


def test_states_of_the_two_variants_are_told_apart():
    published, shared = DADASearcher(TOY_ENTRIES), DADASharedSearcher(TOY_ENTRIES)
    with pytest.raises(ValueError, match='for this DADA searcher'):
        published.load_state_dict(shared.state_dict())
    with pytest.raises(ValueError, match="'version'"):
        shared.load_state_dict(published.state_dict())
    legacy = dict(shared.state_dict(), searcher='dada')  # a shared state saved before the rename
    with pytest.raises(ValueError, match='dada_shared'):
        published.load_state_dict(legacy)
    DADASharedSearcher(TOY_ENTRIES).load_state_dict(legacy)


def test_registry_names_and_bad_arguments():
    assert isinstance(build_searcher('dada', TOY_ENTRIES), DADASearcher)
    assert isinstance(build_searcher('dada_shared', TOY_ENTRIES), DADASharedSearcher)
    for cfg, match in [(dict(init_prob=1.0), 'init_prob'), (dict(weight_decay=-1), 'weight_decay'),
                       (dict(score_unused=1), 'score_unused'), (dict(lr=0), 'lr'), (dict(top_k=0), 'top_k'),
                       (dict(lr_cv=0.1), 'searcher_cfg')]:
        with pytest.raises(ValueError, match=match):
            build_searcher('dada', TOY_ENTRIES, cfg)


def test_published_dada_raises_the_op_that_helps_validation():
    toy = Toy(DADASearcher(TOY_ENTRIES, lr=0.05))
    before = toy.searcher.op_probs()
    toy.run(60)
    after = toy.searcher.op_probs()
    assert after['FlipLR'] > before['FlipLR'] + 0.1, f'FlipLR did not rise: {before} -> {after}'
    assert after['FlipLR'] > max(after['FlipUD'], after['Invert']), after


def test_search_with_a_torch_search_context_on_the_planted_space_exports_a_policy(tmp_path):
    entries = planted_space()
    searcher = build_searcher('dada', entries)
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)

    def batch() -> dict:
        return dict(inputs=torch.rand(8, 1, 28, 28, generator=gen) * 255,
                    targets=torch.randint(0, 10, (8,), generator=gen))
    ctx = TorchSearchContext(model, torch.nn.functional.cross_entropy, opt, batch, searcher.num_grad_slots, seed=0)
    for step in range(4):
        log_vars = searcher.step(ctx, batch())
        assert torch.isfinite(log_vars['loss'])
        searcher.snapshot(step + 1)
    assert searcher.num_updates == 4 and math.isfinite(searcher.last_stats['hypergrad_f'])
    probs = entry_probs(searcher)  # the planted-harm harness reads DADA through op_probs()
    assert len(probs) == len(entries) and sum(probs) == pytest.approx(1.0)
    scalars, infos = searcher.log_items(3)
    assert {'train/dada_apply_prob', 'train/dada_top1_prob'} <= set(scalars) and 'dada_top1' in infos
    steps, labels, series, apply_probs = searcher.plot_series()
    assert steps == [1, 2, 3, 4] and labels == searcher.op_names and len(series[-1]) == len(labels)

    path = tmp_path / 'dada.json'
    save_policy_file(path, space='planted', meta={'steps': 4}, **searcher.export())
    loaded = load_policy_file(path)
    assert loaded.searcher == 'dada' and len(loaded.subpolicies) == min(25, len(searcher.pairs))
    assert sum(sp.prob for sp in loaded.subpolicies) == pytest.approx(1.0)
    policy = build_policy(path)
    assert isinstance(policy, SearchedPolicy)
    pairs = {tuple(searcher.op_names[o] for o in pair) for pair in searcher.pairs}
    chain_gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        chain = policy.sample_chain(chain_gen)
        assert len(chain) == 2 and tuple(s.op for s in chain) in pairs
