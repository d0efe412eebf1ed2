"""DADA and DAAS through the search hook on a real (slim) RetinaNet: end to end, the policy file
PolicyAugment applies, ``tools/search_det.py --searcher``, and identical state on 2 DDP ranks."""
from __future__ import annotations

import copy
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.config import Config
from mmengine.registry import HOOKS
from mmengine.runner import Runner

import det_autoaug.mmdet_plugins  # noqa: F401  (registers the hook and transforms)
from det_autoaug.mmdet_plugins.transforms import PolicyAugment
from det_autoaug.policy.policy_file import load_policy_file
from det_autoaug.search.hook import PolicySearchHook

from det_helpers import make_digits, search_runner_cfg


@pytest.fixture(scope='module')
def digits(tmp_path_factory) -> Path:
    return make_digits(tmp_path_factory.mktemp('digits') / 'd', train=8, val=2, test=2)


# The searchers of these tests, by name (what policy files and checkpoints record): their configs. DAAS
# with its one-step paired reward, which updates every step (its default look-ahead has its own test).
CONFIGS = dict(dada=dict(type='DADA'), daas=dict(type='DAAS', reward='paired'))


def _hook(runner: Runner) -> PolicySearchHook:
    return next(h for h in runner.hooks if isinstance(h, PolicySearchHook))


def _run(digits: Path, work_dir: Path, searcher: str, **overrides) -> Runner:
    """A one-epoch search with the searcher of name ``searcher`` (:data:`CONFIGS`)."""
    cfg = search_runner_cfg(digits, work_dir, max_epochs=1, hook=dict(searcher=dict(CONFIGS[searcher])),
                            **overrides)
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    runner.train()
    return runner


@pytest.mark.parametrize('searcher', ['dada', 'daas'])
def test_searcher_runs_through_the_hook_and_writes_an_applicable_policy(digits, tmp_path, searcher):
    torch.set_num_threads(1)
    runner = _run(digits, tmp_path, searcher)
    hook = _hook(runner)
    assert hook.searcher.name == searcher and hook.search_steps == 3  # 6 of 8 images train, batch 2
    policy = load_policy_file(tmp_path / 'policy.json')
    assert policy.searcher == searcher
    assert (tmp_path / 'policy_probs.png').stat().st_size > 1000
    if searcher == 'dada':
        assert policy.subpolicies, 'DADA must export sub-policies'
        assert hook.searcher.num_updates == 3
        moved = (hook.searcher.probabilities.detach() - 0.5).abs().max()
        assert float(moved) > 0, 'the DADA state never moved'
    else:
        assert max(policy.probs) - min(policy.probs) > 1e-6, 'alpha never moved'
    assert f'train/{searcher}_apply_prob' in runner.message_hub.log_scalars
    transform = PolicyAugment(policy=str(tmp_path / 'policy.json'))
    image = np.random.RandomState(0).randint(0, 256, (48, 64, 3)).astype(np.uint8)
    changed = False
    for seed in range(8):
        results = dict(img=image.copy(), img_shape=(48, 64), ori_shape=(48, 64),
                       gt_bboxes=HorizontalBoxes(torch.tensor([[8.0, 8.0, 40.0, 40.0]])),
                       gt_bboxes_labels=np.array([1]), gt_ignore_flags=np.array([False]))
        torch.manual_seed(seed)
        out = transform(results)
        assert out['img'].shape == image.shape and out['img'].dtype == np.uint8
        changed |= not np.array_equal(out['img'], image)
    assert changed, 'the searched policy never changed an image in 8 draws'


@pytest.mark.parametrize('searcher, k', [
    (dict(type='DDAS', num_policies=2, signal='lookahead', lookahead_steps=2, lookahead_val_batches=1,
          lr_alpha=0.1), 2),
    (dict(type='DAAS', reward='lookahead', lookahead_policies=3, ops_per_policy=1, lookahead_steps=2,
          lookahead_val_batches=1, lr_alpha=0.1), 3),
], ids=['ddas', 'daas'])
def test_lookahead_runs_through_the_hook_and_restores_the_main_model(digits, tmp_path, searcher, k):
    torch.set_num_threads(1)
    cfg = search_runner_cfg(digits, tmp_path, max_epochs=1, hook=dict(searcher=searcher))
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    hook = _hook(runner)
    seen = {}
    finish = hook.searcher.lookahead.finish

    def spy(ctx, chains):
        seen['before'] = {k: v.clone() for k, v in hook.module.state_dict().items()}
        out = finish(ctx, chains)
        seen['after'] = {k: v.clone() for k, v in hook.module.state_dict().items()}
        return out
    hook.searcher.lookahead.finish = spy
    with pytest.warns(UserWarning, match=r'makes 1 rounds of 2 steps in this 3-iteration run.*lookahead_steps'):
        runner.train()  # far fewer rounds than the defaults were measured with: the hook says so
    assert hook.search_steps == 3 and hook.searcher.policy.num_updates == 1  # one round of 2 steps
    for key, value in seen['before'].items():  # weights and batch-norm statistics
        assert torch.equal(seen['after'][key], value), key
    # 3 main steps + (K + 1) branches x (2 steps + 1 validation forward)
    assert hook.searcher.num_policies == k and hook.model_forwards == 3 + (k + 1) * 3
    policy = load_policy_file(tmp_path / 'policy.json')
    name = searcher['type'].lower()
    assert policy.searcher == name and max(policy.probs) - min(policy.probs) > 1e-6, 'alpha never moved'


def test_dada_resume_from_a_checkpoint_restores_the_searcher(digits, tmp_path):
    torch.set_num_threads(1)
    runner = _run(digits, tmp_path / 'a', 'dada')
    state = _hook(runner).searcher.state_dict()
    ckpt = torch.load(tmp_path / 'a' / 'epoch_1.pth', weights_only=False)
    assert ckpt['ddas_search']['searcher'] == 'dada'
    torch.testing.assert_close(ckpt['ddas_search']['policy']['weights'], state['weights'], rtol=0, atol=0)
    fresh = HOOKS.build(dict(type='PolicySearchHook', searcher=dict(type='DDAS')))
    with pytest.raises(ValueError, match="'dada' search state"):
        fresh.after_load_checkpoint(None, ckpt)


def test_bad_searcher_arguments_fail_at_build_time():
    with pytest.raises(ValueError, match="searcher='nope' is unknown"):
        HOOKS.build(dict(type='PolicySearchHook', searcher=dict(type='nope')))
    for key in ('bogus', 'temperature'):  # published DADA has no temperature (DADAShared has)
        with pytest.raises(ValueError, match=rf"the searcher config \['{key}'\] does not fit searcher 'DADA'"):
            HOOKS.build(dict(type='PolicySearchHook', searcher={'type': 'DADA', key: 1}))
    with pytest.raises(ValueError, match='temperature must'):
        HOOKS.build(dict(type='PolicySearchHook', searcher=dict(type='DADAShared', temperature=0)))


def test_search_det_tool_sets_the_searcher(monkeypatch):
    import search_det  # tools/ (conftest.py)
    assert search_det.parse_args(['--searcher', 'dada']).searcher == 'dada'
    assert search_det.parse_args([]).searcher is None
    with pytest.raises(SystemExit):
        search_det.parse_args(['--searcher', 'nope'])
    cfg = Config(dict(custom_hooks=[dict(type='PolicySearchHook', space='det_default'), dict(type='Other')]))
    assert search_det.hook_searcher(cfg) == 'ddas'
    search_det.set_searcher(cfg, 'daas')
    assert cfg.custom_hooks[0]['searcher'] == dict(type='DAAS') and 'searcher' not in cfg.custom_hooks[1]
    assert search_det.hook_searcher(cfg) == 'daas'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data_root: str, work_dir: str, searcher: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    cfg = search_runner_cfg(Path(data_root), Path(work_dir), max_epochs=1, launcher='pytorch',
                            hook=dict(searcher=dict(CONFIGS[searcher])),
                            model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None,
                                                   broadcast_buffers=False))
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    runner.train()
    hook = _hook(runner)
    torch.save(dict(state=hook.searcher.state_dict(), steps=hook.search_steps), Path(work_dir) / f'rank{rank}.pt')
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize('searcher', ['dada', 'daas'])
def test_ddp_two_processes_keep_identical_searcher_state(digits, tmp_path, searcher):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(digits), str(tmp_path), searcher), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1))
    assert r0['steps'] == r1['steps'] > 0
    s0 = r0['state'] if searcher == 'dada' else r0['state']['policy']
    s1 = r1['state'] if searcher == 'dada' else r1['state']['policy']
    keys = ('weights', 'probabilities', 'magnitudes') if searcher == 'dada' else ('alpha', 'beta')
    for key in keys:
        assert torch.equal(s0[key], s1[key]), f'{key} differs between the ranks'
    assert s0['num_updates'] == s1['num_updates'] == r0['steps']
    moved = s0['probabilities'] - 0.5 if searcher == 'dada' else s0['alpha']
    assert not torch.equal(moved, torch.zeros_like(moved)), 'the searcher never moved'
