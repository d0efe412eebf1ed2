"""PolicySearchHook: the searcher from a registry by type, the Searcher interface as the only thing the
hook calls, the deprecated DDASSearchHook searching identically, and the config helpers of the tools."""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import HOOKS
from mmengine.runner import Runner

import det_autoaug.mmdet_plugins  # noqa: F401  (registers the hooks and transforms)
from det_autoaug.ops.spaces import get_space
from det_autoaug.policy.policy_file import load_policy_file
from det_autoaug.search.hook import DDASSearchHook, PolicySearchHook
from det_autoaug.search.hook_cfg import hook_searcher, is_search_hook, search_hooks, set_hook_searcher
from det_autoaug.search.searchers import (SEARCHER_TYPES, SEARCHERS, DAASSearcher, DDASSearcher, Searcher,
                                          build_searcher, register_searcher)
from det_autoaug.search.searchers.base import record_snapshot

from det_helpers import make_digits, search_runner_cfg
from search_helpers import assert_same_state

pytestmark = pytest.mark.usefixtures('one_thread')  # tiny tensors (conftest.py)

ENTRIES = get_space('det_default')


@pytest.fixture(scope='module')
def digits(tmp_path_factory) -> Path:
    return make_digits(tmp_path_factory.mktemp('digits') / 'd', train=8, val=2, test=2)


def _run(digits: Path, work_dir: Path, hook: dict) -> Runner:
    cfg = search_runner_cfg(digits, work_dir, max_epochs=1)
    base = {k: v for k, v in cfg['custom_hooks'][0].items() if k not in ('type', 'searcher')}
    cfg['custom_hooks'] = [dict(base, **hook)]
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    runner.train()
    return runner


# ----------------------------------------------------------------------------- the registry

def test_searchers_build_from_a_config_a_type_or_a_name():
    assert set(SEARCHER_TYPES) == {'DDAS', 'DADA', 'DADAShared', 'DAAS', 'DAASJoint'}
    assert {cls.name for cls in SEARCHER_TYPES.values()} == set(SEARCHERS)
    daas = build_searcher(dict(type='DAAS', lr_alpha=0.01), ENTRIES)
    assert isinstance(daas, DAASSearcher) and daas.policy.opt_alpha.param_groups[0]['lr'] == 0.01
    assert type(build_searcher('DDAS', ENTRIES)) is type(build_searcher('ddas', ENTRIES)) is DDASSearcher
    with pytest.raises(ValueError, match="'Nope'.*'DDAS'"):
        build_searcher(dict(type='Nope'), ENTRIES)
    with pytest.raises(ValueError, match='no type'):
        build_searcher(dict(lr_alpha=0.01), ENTRIES)
    with pytest.raises(ValueError, match=r"\['bogus'\].*'DADA'"):
        build_searcher(dict(type='DADA', bogus=1), ENTRIES)
    with pytest.raises(ValueError, match='not both'):
        build_searcher(dict(type='DDAS'), ENTRIES, dict(num_policies=2))


def test_register_searcher_refuses_taken_names_and_non_searchers():
    with pytest.raises(ValueError, match="'DDAS'"):
        register_searcher('DDAS')(type('Other', (DDASSearcher,), {'name': 'other'}))
    with pytest.raises(ValueError, match='not a Searcher'):
        register_searcher('Plain')(dict)
    assert 'Plain' not in SEARCHER_TYPES and 'other' not in SEARCHERS


def test_a_searcher_must_implement_the_interface():
    class Partial(Searcher):
        name = 'partial'

        def step(self, ctx, data):
            return {}
    with pytest.raises(TypeError, match='abstract'):
        Partial()


# ----------------------------------------------------------------------------- the hook's arguments

def test_hook_builds_its_searcher_from_the_searcher_argument():
    hook = HOOKS.build(dict(type='PolicySearchHook', searcher=dict(type='DAAS', lr_alpha=0.01, baseline_decay=0.5)))
    assert hook.searcher.name == 'daas' and hook.searcher.baseline_decay == 0.5 and hook.policy is hook.searcher.policy
    assert HOOKS.build(dict(type='PolicySearchHook')).searcher.name == 'ddas'  # DDAS by default
    assert HOOKS.build(dict(type='PolicySearchHook', searcher='DADA')).searcher.name == 'dada'
    mine = DDASSearcher(get_space('ddas_cifar'), num_policies=2)
    hook = PolicySearchHook(searcher=mine, space='ddas_cifar')
    assert hook.searcher is mine and hook.num_policies == 2
    with pytest.raises(ValueError, match='other entries'):
        PolicySearchHook(searcher=mine, space='det_default')
    with pytest.raises(ValueError, match=r"PolicySearchHook\(searcher=\{'type': 'DDAS', 'num_policies': 0\}\).*"
                                         'num_policies'):
        HOOKS.build(dict(type='PolicySearchHook', searcher=dict(type='DDAS', num_policies=0)))
    with pytest.raises(ValueError, match="searcher=3"):
        PolicySearchHook(searcher=3)
    with pytest.raises(ValueError, match='val_fraction'):
        PolicySearchHook(val_fraction=1.5)


def test_the_former_name_still_builds_and_says_it_is_deprecated():
    with pytest.warns(DeprecationWarning, match="PolicySearchHook"):
        hook = HOOKS.build(dict(type='DDASSearchHook', searcher='daas', lr_alpha=0.01,
                                searcher_cfg=dict(baseline_decay=0.5)))
    assert isinstance(hook, PolicySearchHook) and type(hook).__name__ == 'DDASSearchHook'
    assert HOOKS.get('DDASSearchHook') is DDASSearchHook  # registered by det_autoaug.mmdet_plugins
    assert hook.searcher.name == 'daas' and hook.searcher.baseline_decay == 0.5
    assert hook.searcher.policy.opt_alpha.param_groups[0]['lr'] == 0.01


# ----------------------------------------------------------------------------- through the runner

def _policy_doc(path: Path) -> Dict[str, Any]:
    doc = json.loads(path.read_text())
    for key in ('created', 'search_seconds', 'config'):
        doc['meta'].pop(key, None)
    return doc


@pytest.mark.parametrize('old, new', [
    (dict(searcher='ddas', num_policies=2), dict(type='DDAS', signal='one_step', num_policies=2)),
    (dict(searcher='daas', lr_alpha=0.05, searcher_cfg=dict(baseline_decay=0.5)),
     dict(type='DAAS', reward='paired', lr_alpha=0.05, baseline_decay=0.5)),
    (dict(searcher='dada'), dict(type='DADA')),
], ids=['ddas', 'daas', 'dada'])
def test_the_former_name_and_arguments_search_identically(digits, tmp_path, old, new):
    a = _run(digits, tmp_path / 'old', dict(type='DDASSearchHook', **old))
    b = _run(digits, tmp_path / 'new', dict(type='PolicySearchHook', searcher=new))
    assert _policy_doc(tmp_path / 'old' / 'policy.json') == _policy_doc(tmp_path / 'new' / 'policy.json')
    states = [torch.load(r / 'epoch_1.pth', weights_only=False) for r in (tmp_path / 'old', tmp_path / 'new')]
    for state in states:
        state['ddas_search'].pop('search_seconds')
    assert_same_state(states[0]['ddas_search'], states[1]['ddas_search'])
    assert_same_state(states[0]['state_dict'], states[1]['state_dict'])
    hooks = [next(h for h in r.hooks if isinstance(h, PolicySearchHook)) for r in (a, b)]
    assert hooks[0].model_forwards == hooks[1].model_forwards > 0


class CountingSearcher(Searcher):
    """A searcher with nothing but the interface: plain training steps, a uniform policy."""

    name = 'counting'

    def __init__(self, entries) -> None:
        self.entries = tuple(entries)
        self.trajectory: List[Dict[str, Any]] = []
        self.steps = 0
        self.calls: List[str] = []

    def _uniform(self) -> List[float]:
        return [1.0 / len(self.entries)] * len(self.entries)

    def setup(self, ctx) -> None:
        self.calls.append('setup')

    def step(self, ctx, data: dict) -> Dict[str, torch.Tensor]:
        self.steps += 1
        return ctx.train_step(data)

    def log_items(self, top: int = 5):
        return {'train/counting_steps': float(self.steps)}, {'counting_top1': f'{self.entries[0].label}=0.0'}

    def snapshot(self, epoch: int) -> None:
        record_snapshot(self.trajectory, dict(epoch=epoch, probs=self._uniform(), apply_prob=0.0))

    def export(self) -> Dict[str, Any]:
        return dict(searcher=self.name, entries=self.entries, probs=self._uniform(), apply_prob=0.0,
                    ops_per_policy=1, trajectory=self.trajectory)

    def state_dict(self) -> Dict[str, Any]:
        self.calls.append('state_dict')
        return {'steps': self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state['steps'])

    def plot_series(self):
        return ([t['epoch'] for t in self.trajectory], [e.label for e in self.entries],
                [t['probs'] for t in self.trajectory], [t['apply_prob'] for t in self.trajectory])


def test_the_hook_needs_nothing_but_the_searcher_interface(digits, tmp_path, monkeypatch):
    monkeypatch.setitem(SEARCHER_TYPES, 'Counting', CountingSearcher)  # registered for this test only
    monkeypatch.setitem(SEARCHERS, 'counting', CountingSearcher)
    runner = _run(digits, tmp_path, dict(type='PolicySearchHook', searcher=dict(type='Counting')))
    hook = next(h for h in runner.hooks if isinstance(h, PolicySearchHook))
    searcher = hook.searcher
    assert isinstance(searcher, CountingSearcher) and searcher.steps == hook.search_steps == 3
    assert searcher.calls == ['setup', 'state_dict'] and hook.model_forwards == 3
    policy = load_policy_file(tmp_path / 'policy.json')
    assert policy.searcher == 'counting' and [s.epoch for s in policy.trajectory] == [1]
    assert runner.message_hub.get_scalar('train/counting_steps').current() == 3.0


# ----------------------------------------------------------------------------- config helpers of the tools

def test_config_helpers_read_and_switch_the_searcher_of_either_hook():
    new = dict(type='PolicySearchHook', searcher=dict(type='DDAS', num_policies=3, lr_alpha=0.01), space='ddas_cifar')
    old = dict(type='DDASSearchHook', lr_alpha=0.01)
    cfg = dict(custom_hooks=[dict(type='EMAHook'), new, old])
    assert search_hooks(cfg) == [new, old] and not is_search_hook(dict(type='EMAHook'))
    assert is_search_hook(dict(type=PolicySearchHook)) and is_search_hook(dict(type='mmengine.DDASSearchHook'))
    assert hook_searcher(new) == hook_searcher(old) == hook_searcher(dict(type='PolicySearchHook')) == 'ddas'
    set_hook_searcher(new, 'daas', dict(baseline_decay=0.5))  # DDAS -> DAAS: DDAS's arguments go
    assert new['searcher'] == dict(type='DAAS', baseline_decay=0.5) and new['space'] == 'ddas_cifar'
    set_hook_searcher(new, 'DAAS', dict(lr_beta=0.002))  # same searcher: everything stays
    assert new['searcher'] == dict(type='DAAS', baseline_decay=0.5, lr_beta=0.002)
    set_hook_searcher(old, 'dada')
    assert old == dict(type='DDASSearchHook', lr_alpha=0.01, searcher='dada')
    set_hook_searcher(old, 'ddas', dict(estimator='paper'))
    assert old['searcher'] == 'ddas' and old['searcher_cfg'] == dict(estimator='paper')
    with pytest.raises(ValueError, match="'nope'"):
        set_hook_searcher(new, 'nope')
    for hook in (new, old):
        assert isinstance(HOOKS.build(copy.deepcopy(hook)).searcher, DDASSearcher if hook is old else DAASSearcher)


def test_the_hook_warns_only_outside_the_measured_rounds():
    hook = PolicySearchHook(searcher=dict(type='DDAS', lookahead_steps=25))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        hook._check_rounds(450)  # 18 rounds, as make search
        hook._check_rounds(150)  # 6 rounds, half the measured minimum
        PolicySearchHook(searcher=dict(type='DDAS', signal='one_step'))._check_rounds(90000)  # no rounds
    with pytest.warns(UserWarning, match=r'3600 rounds of 25 steps.*lookahead_steps to about 6000'):
        hook._check_rounds(90000)  # a COCO 1x schedule
    with pytest.warns(UserWarning, match='4 rounds'):
        PolicySearchHook(searcher=dict(type='DAAS', lookahead_steps=25))._check_rounds(100)
