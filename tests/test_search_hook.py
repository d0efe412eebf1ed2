"""PolicySearchHook (DDAS) on a real (slim) RetinaNet through mmengine's Runner, on CPU."""
from __future__ import annotations

import copy
import json
import os
import socket
from pathlib import Path

import pytest
import torch
from contextlib import contextmanager

from mmengine.dataset import BaseDataset, Compose
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS, OPTIM_WRAPPERS
from mmengine.runner import Runner

import det_autoaug.mmdet_plugins  # noqa: F401  (registers the hook)
from det_autoaug.policy.policy_file import load_policy_file
from det_autoaug.policy.step import ChainStep
from det_autoaug.search.batch_augment import augment_batch
from det_autoaug.search.hook import PolicySearchHook, default_val_pipeline
from det_autoaug.search.runner_context import get_subset

from det_helpers import make_digits, search_runner_cfg


@pytest.fixture(scope='module')
def digits(tmp_path_factory) -> Path:
    return make_digits(tmp_path_factory.mktemp('digits') / 'd', train=12, val=2, test=2)


@HOOKS.register_module(force=True)
class KillAfterEpoch(Hook):
    """Simulates a search killed right after the checkpoint of ``epoch`` (1-based) was written."""

    priority = 'LOWEST'  # after CheckpointHook

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 == self.epoch:
            raise KeyboardInterrupt('killed by the test')


def _search_hook(runner: Runner) -> PolicySearchHook:
    return next(h for h in runner.hooks if isinstance(h, PolicySearchHook))


@pytest.fixture(scope='module')
def straight(digits, tmp_path_factory):
    """An uninterrupted 2-epoch search: (runner, work dir)."""
    work_dir = tmp_path_factory.mktemp('straight')
    runner = Runner.from_cfg(_cfg(search_runner_cfg(digits, work_dir, max_epochs=2)))
    runner.train()
    return runner, work_dir


def test_search_writes_policy_file_plot_and_logs(straight):
    runner, work_dir = straight
    hook = _search_hook(runner)
    policy = load_policy_file(work_dir / 'policy.json')
    assert len(policy.probs) == len(hook.entries)
    assert [t.epoch for t in policy.trajectory] == [1, 2]
    assert abs(policy.apply_prob - 0.35) > 1e-6, 'beta never moved'
    assert max(policy.probs) - min(policy.probs) > 1e-6, 'alpha never moved'
    assert (work_dir / 'policy_probs.png').stat().st_size > 1000
    scalars = runner.message_hub.log_scalars
    for key in ('train/ddas_apply_prob', 'train/ddas_entropy', 'train/ddas_top1_prob'):
        assert key in scalars, f'{key} was not logged through the MessageHub'
    assert hook.search_steps == 2 * 5  # 9 of 12 images kept for training, batch 2, 2 epochs
    assert runner.model.train_step != hook.search_step, 'train_step was not restored after the run'


def _cfg(d: dict):
    from mmengine.config import Config
    return Config(copy.deepcopy(d))


def test_resume_after_kill_gives_the_same_policy(digits, straight, tmp_path):
    straight_runner, straight_dir = straight
    killed_cfg = search_runner_cfg(digits, tmp_path / 'b', max_epochs=2,
                                   extra_hooks=[dict(type='KillAfterEpoch', epoch=1)])
    with pytest.raises(KeyboardInterrupt):
        Runner.from_cfg(_cfg(killed_cfg)).train()
    assert (tmp_path / 'b' / 'epoch_1.pth').is_file()
    resumed_cfg = search_runner_cfg(digits, tmp_path / 'b', max_epochs=2, resume=True)
    resumed = Runner.from_cfg(_cfg(resumed_cfg))
    resumed.train()
    a, b = _search_hook(straight_runner).policy, _search_hook(resumed).policy
    assert _search_hook(resumed).search_steps == _search_hook(straight_runner).search_steps
    torch.testing.assert_close(b.alpha, a.alpha, rtol=0, atol=1e-6)
    torch.testing.assert_close(b.beta, a.beta, rtol=0, atol=1e-6)
    pa = json.loads((straight_dir / 'policy.json').read_text())
    pb = json.loads((tmp_path / 'b' / 'policy.json').read_text())
    assert [t['epoch'] for t in pa['trajectory']] == [t['epoch'] for t in pb['trajectory']] == [1, 2]
    for ta, tb in zip(pa['trajectory'], pb['trajectory']):
        torch.testing.assert_close(torch.tensor(tb['probs']), torch.tensor(ta['probs']), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(pb['probs']), torch.tensor(pa['probs']), rtol=0, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data_root: str, work_dir: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    cfg = search_runner_cfg(Path(data_root), Path(work_dir), max_epochs=1, launcher='pytorch',
                            model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None,
                                                   broadcast_buffers=False))
    runner = Runner.from_cfg(_cfg(cfg))
    runner.train()
    policy = _search_hook(runner).policy
    torch.save(dict(alpha=policy.alpha.detach(), beta=policy.beta.detach(), steps=_search_hook(runner).search_steps),
               Path(work_dir) / f'rank{rank}.pt')
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_keep_identical_policies(digits, tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(digits), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt') for r in (0, 1))
    assert r0['steps'] == r1['steps'] > 0
    assert not torch.equal(r0['alpha'], torch.zeros_like(r0['alpha'])), 'the policy never moved'
    assert torch.equal(r0['alpha'], r1['alpha']) and torch.equal(r0['beta'], r1['beta'])


@pytest.mark.parametrize('kwargs, match', [
    (dict(val_fraction=1.5), 'val_fraction'),
    # the searcher's own message (the hook's names the searcher config, its arguments included)
    (dict(searcher=dict(type='DDAS', num_policies=0)), 'num_policies must'),
    (dict(searcher=dict(type='DDAS', init_apply_prob=1.0)), 'init_tp'),
    (dict(snapshot_interval='often'), 'snapshot_interval'),
    (dict(searcher=dict(type='DDAS', explore_ratio=2.0)), 'explore_ratio must'),
    (dict(val_dataloader='val'), 'val_dataloader'),
])
def test_bad_hook_arguments_fail_at_build_time(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HOOKS.build(dict(type='PolicySearchHook', **kwargs))


def test_unknown_space_fails_at_build_time():
    with pytest.raises(KeyError, match='nope'):
        HOOKS.build(dict(type='PolicySearchHook', space='nope'))


def test_default_val_pipeline_drops_random_transforms():
    pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5),
                dict(type='PolicyAugment', policy='autoaug_det_v0'), dict(type='Resize', scale=(8, 8)),
                dict(type='PackDetInputs')]
    assert [t['type'] for t in default_val_pipeline(pipeline)] == ['LoadImageFromFile', 'Resize', 'PackDetInputs']


def _batch(n_boxes: int = 3, x1: float = 4.0, step: float = 1.0):
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmengine.structures import InstanceData
    samples, inputs = [], []
    for i in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(40, 48), ori_shape=(40, 48), pad_shape=(40, 48),
                                        scale_factor=(1.0, 1.0)))
        boxes = torch.tensor([[x1 + step * j, 6.0, x1 + 8 + step * j, 30.0] for j in range(n_boxes)])
        s.gt_instances = InstanceData(bboxes=HorizontalBoxes(boxes), labels=torch.arange(n_boxes) + i)
        samples.append(s)
        inputs.append(torch.randint(0, 255, (3, 40, 48), dtype=torch.uint8))
    return dict(inputs=inputs, data_samples=samples)


def test_copy_with_every_box_pushed_out_trains_with_labels_in_sync():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from det_helpers import slim_retinanet
    register_all_modules(init_default_scope=True)
    # 8 px wide boxes at the centre of a 48 px image; a shift of 0.546 * 48 = 26 px either way
    # leaves at most 2.15 px (27%) of each inside: all are dropped (min_visible 0.3).
    batch = _batch(x1=20.0, step=0.2)
    out = augment_batch(batch, [ChainStep('TranslateX', 0.546)], torch.Generator().manual_seed(0))
    for before, after in zip(batch['data_samples'], out['data_samples']):
        assert len(before.gt_instances) == 3, 'the input batch was modified'
        assert len(after.gt_instances) == 0
        assert len(after.gt_instances.labels) == len(after.gt_instances.bboxes) == 0
    model = MODELS.build(slim_retinanet())
    losses = model(**model.data_preprocessor(out, training=True), mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v) for v in losses.values())
    assert torch.isfinite(total), f'losses of a copy without boxes are not finite: {losses}'


def test_partly_dropped_boxes_keep_labels_in_sync():
    batch = _batch(x1=2.0, step=12.0)
    out = augment_batch(batch, [ChainStep('TranslateX', 0.4)], torch.Generator().manual_seed(3))
    for before, after in zip(batch['data_samples'], out['data_samples']):
        kept = after.gt_instances
        assert len(kept.labels) == len(kept.bboxes)
        # labels are a subsequence of the original ones, in order
        original = before.gt_instances.labels.tolist()
        assert all(label in original for label in kept.labels.tolist())
        assert kept.labels.tolist() == sorted(kept.labels.tolist())


def test_colour_copy_keeps_every_box_and_label():
    batch = _batch()
    out = augment_batch(batch, [ChainStep('Color', 0.8), ChainStep('Equalize', 1.0)], torch.Generator().manual_seed(0))
    for before, after in zip(batch['data_samples'], out['data_samples']):
        assert torch.equal(before.gt_instances.labels, after.gt_instances.labels)
        assert torch.equal(before.gt_instances.bboxes.tensor, after.gt_instances.bboxes.tensor)
    assert not torch.equal(out['inputs'][0], batch['inputs'][0])


@OPTIM_WRAPPERS.register_module(force=True)
class ScaledLossOptimWrapper(OptimWrapper):
    """What AmpOptimWrapper does, on the CPU: optional bfloat16 autocast, a static loss scale
    applied in ``backward`` and removed in ``step`` (mmengine's own refuses to run without a GPU)."""

    def __init__(self, scale: float = 1024.0, autocast: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale, self.autocast = scale, autocast

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16, enabled=self.autocast):
            yield

    def backward(self, loss, **kwargs) -> None:
        (loss * self.scale).backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        for group in self.optimizer.param_groups:
            for p in group['params']:
                if p.grad is not None:
                    p.grad.div_(self.scale)
        super().step(**kwargs)


def _one_epoch(digits, work_dir, optim_wrapper):
    runner = Runner.from_cfg(_cfg(search_runner_cfg(digits, work_dir, max_epochs=1, optim_wrapper=optim_wrapper)))
    runner.train()
    return _search_hook(runner)


def test_loss_scaling_as_in_amp_does_not_change_the_search(digits, tmp_path):
    sgd = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
    plain = _one_epoch(digits, tmp_path / 'plain', dict(type='OptimWrapper', optimizer=sgd))
    scaled = _one_epoch(digits, tmp_path / 'scaled', dict(type='ScaledLossOptimWrapper', scale=1024.0, optimizer=sgd))
    torch.testing.assert_close(scaled.policy.alpha, plain.policy.alpha, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(scaled.policy.beta, plain.policy.beta, rtol=1e-3, atol=1e-5)


def test_search_runs_under_mixed_precision_autocast(digits, tmp_path):
    hook = _one_epoch(digits, tmp_path, dict(type='ScaledLossOptimWrapper', scale=1024.0, autocast=True,
                                             optimizer=dict(type='SGD', lr=0.01, momentum=0.9)))
    assert hook.search_steps > 0
    assert torch.isfinite(hook.policy.alpha).all() and torch.isfinite(hook.policy.beta).all()
    assert max(hook.policy.probs().tolist()) > min(hook.policy.probs().tolist()), 'the policy never moved'


def test_copy_backend_reaches_the_context_and_bad_values_are_named(digits, tmp_path, monkeypatch):
    import det_autoaug.search.context as context_module

    routes = []
    original = context_module.augment_batch

    def spy(*args, **kwargs):
        routes.append(kwargs.get('backend'))
        return original(*args, **kwargs)

    monkeypatch.setattr(context_module, 'augment_batch', spy)
    cfg = search_runner_cfg(digits, tmp_path, max_epochs=1, hook=dict(copy_backend='torch'))
    runner = Runner.from_cfg(_cfg(cfg))
    runner.train()
    assert _search_hook(runner).context.copy_backend == 'torch'
    assert routes and set(routes) == {'torch'}
    with pytest.raises(ValueError, match="copy_backend='gpu'"):
        PolicySearchHook(copy_backend='gpu')


class _Numbers(BaseDataset):
    """Three data infos, no files."""

    def load_data_list(self):
        return [dict(value=i) for i in range(3)]


def test_held_out_split_is_immune_to_mmengine_s_shared_subset_memo():
    # mmengine's get_subset deep-copies through one memo for the whole process, keyed by ids of
    # datasets that may be freed since: an entry left at the id of this dataset's pipeline (what
    # a freed dataset at the same address leaves) makes mmengine return it as the "copy".
    dataset = _Numbers(pipeline=[dict(type='LoadImageFromFile')])
    memo = BaseDataset._copy_without_annotation.__defaults__[0]
    stale = object()
    memo[id(dataset.pipeline)] = stale
    assert dataset.get_subset([0, 2]).pipeline is stale   # the bug, reproduced
    memo[id(dataset.pipeline)] = stale
    subset = get_subset(dataset, [0, 2])
    assert isinstance(subset.pipeline, Compose) and subset.pipeline is not dataset.pipeline
    assert [subset.get_data_info(i)['value'] for i in range(2)] == [0, 2]
    assert memo == {}   # nor does it keep the copies alive
