"""DAAS's joint architecture + augmentation search: the single-path supernet, the searcher on a toy
problem whose best candidate is known, exact resume, and a tiny search -> train run through the tools."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import HOOKS
from torch import nn

from det_autoaug.cls.nas import CANDIDATE_NAMES, ChoiceBlock, ChoiceNet, fixed_backbone_cfg
from det_autoaug.ops.spaces import SpaceEntry, get_space
from det_autoaug.policy.policy_file import load_policy_file
from det_autoaug.search.arch_file import arch_from_dict, load_arch_file, save_arch_file
from det_autoaug.search.searchers import SEARCHERS, DAASJointSearcher, TorchSearchContext

from cls_helpers import make_fashion_root
from search_helpers import ToyCheckpoint, assert_same_state

pytestmark = pytest.mark.usefixtures('one_thread')  # tiny tensors (conftest.py)

ROOT = Path(__file__).resolve().parents[1]

ENTRIES = tuple(SpaceEntry(op, 1.0) for op in ('Identity', 'FlipLR', 'FlipUD', 'Invert'))
SIZE, BATCH = 8, 16
CONFIGS = ROOT / 'configs' / 'cls'


def _joint(**kwargs) -> DAASJointSearcher:
    return DAASJointSearcher(ENTRIES, **dict(dict(ops_per_policy=1, lr_alpha=0.05, lr_beta=0.01, baseline_decay=0.8,
                                                  lr_arch=0.1, tau=1.0), **kwargs))


def _context(model: nn.Module, searcher, val, seed: int = 0, lr: float = 0.5) -> TorchSearchContext:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return TorchSearchContext(model, nn.functional.cross_entropy, opt, val, searcher.num_grad_slots, seed=seed)


# ----------------------------------------------------------------------------- the supernet

def test_single_path_forward_runs_only_the_chosen_op_and_gradients_reach_all_logits():
    torch.manual_seed(0)
    net = ChoiceNet(widths=(4, 8), blocks_per_stage=1, num_classes=3)
    assert [len(c) for c in net.block_candidates] == [6, 5]  # 'skip' only where the shape is kept
    calls = {}
    for b, block in enumerate(net.choice_blocks()):
        for name, op in zip(block.candidates, block.ops):
            op.register_forward_hook(lambda m, i, o, key=(b, name): calls.__setitem__(key, calls.get(key, 0) + 1))
    searcher = _joint()
    ctx = _context(net, searcher, val=None)
    searcher.setup(ctx)
    indices, hards = searcher.sample_path(torch.Generator().manual_seed(3))
    x = torch.randn(2, 3, 8, 8)
    searcher._select(indices)
    plain = net(x)
    searcher._select(indices, hards)
    calls.clear()
    gated = net(x)
    chosen = {(b, net.block_candidates[b][k]) for b, k in enumerate(indices)}
    assert calls == {key: 1 for key in chosen}, f'ran {calls}, expected only {chosen}'
    torch.testing.assert_close(gated, plain)  # the gate is 1 in the forward
    (gated ** 2).sum().backward()
    for b, a in enumerate(searcher.logits):
        assert a.grad is not None and bool((a.grad != 0).all()), f'block {b}: gradient {a.grad}'
    assert not any(id(p) in {id(a) for a in searcher.logits} for p in net.parameters())  # not model parameters


def test_gumbel_samples_follow_the_softmax_and_tau_anneals():
    block_net = _ToyNet()
    searcher = _joint(tau=4.0, tau_min=1.0, tau_decay=0.5)
    searcher.setup(_context(block_net, searcher, val=None))
    with torch.no_grad():
        searcher.logits[0].copy_(torch.tensor([1.5, 0.0, -1.0]))
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(3000):
        counts[searcher.sample_path(gen)[0][0]] += 1
    torch.testing.assert_close(counts / 3000, torch.softmax(searcher.logits[0].detach(), 0), atol=0.03, rtol=0)
    taus = []
    for updates in range(4):
        searcher.arch_updates = updates
        taus.append(searcher.tau_now())
    assert taus == [4.0, 2.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- the toy problem

class _Spread(nn.Module):
    """Every pixel becomes the image mean: the blob's position, and so the label, is lost."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True).expand_as(x)


class _RowMean(nn.Module):
    """Every row becomes the mean row: the blob's column is kept, its row (the label) lost."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(2, keepdim=True).expand_as(x)


class _ToyNet(nn.Module):
    """One choice block and a linear head: only 'keep' lets the head see where the blob is."""

    def __init__(self) -> None:
        super().__init__()
        self.block = ChoiceBlock({'keep': nn.Identity(), 'spread': _Spread(), 'rowmean': _RowMean()})
        self.head = nn.Linear(SIZE * SIZE, 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def choice_blocks(self):
        return [self.block]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x / 255.0).flatten(1))


def _images(n: int, gen: torch.Generator):
    """8x8 grey images with a bright 3x3 blob; the label says whether it is in the bottom half."""
    x = torch.rand(n, 1, SIZE, SIZE, generator=gen) * 20
    y = torch.randint(0, 2, (n,), generator=gen)
    for i in range(n):
        row = int(torch.randint(0, SIZE // 2 - 2, (1,), generator=gen)) + (SIZE // 2 if y[i] else 0)
        col = int(torch.randint(0, SIZE - 2, (1,), generator=gen))
        x[i, :, row:row + 3, col:col + 3] = 220.0
    return x, y


class Toy(ToyCheckpoint):
    """Toy net, optimiser, data and context, all seeded."""

    def __init__(self, searcher: DAASJointSearcher, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model, self.searcher = _ToyNet(), searcher
        self.data_gen = torch.Generator().manual_seed(seed + 7)
        self.ctx = _context(self.model, searcher, self._val, seed=seed, lr=2.0)
        self.opt = self.ctx.optimizer

    def _val(self) -> dict:
        x, y = _images(BATCH, self.data_gen)
        return dict(inputs=x, targets=y)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.searcher.step(self.ctx, self._val())


def test_joint_search_raises_the_probability_of_the_op_that_helps_validation():
    # A candidate that outputs zeros is deliberately absent: its gate gradient <op(x), dL/dout> is
    # always 0, so under this estimator it only ever gains from the others' losses.
    toy = Toy(_joint(lr_arch=0.05))
    toy.run(100)
    probs = dict(zip(toy.searcher.candidates[0], toy.searcher.probs()[0].tolist()))
    assert probs['keep'] > 0.6 and probs['keep'] > max(probs['spread'], probs['rowmean']), probs
    assert toy.searcher.arch() == ['keep'] and toy.model.block.index == 0 and toy.model.block.gate is None
    assert toy.searcher.policy.num_updates == 100 and toy.searcher.arch_updates == 100
    scalars, infos = toy.searcher.log_items()
    assert scalars['train/daas_joint_arch_entropy'] < np.log(3) - 0.1 and infos['daas_joint_arch'] == 'keep'
    assert 'train/daas_joint_reward' in scalars and scalars['train/daas_joint_tau'] == 1.0


@pytest.mark.parametrize('reward', ['paired', 'val_loss'])
def test_joint_reward_takes_one_validation_batch_along_the_sampled_path(reward):
    toy = Toy(_joint(reward=reward))
    toy.run(5)  # the head learns: validation batches now differ in loss
    toy.opt.param_groups[0]['lr'] = 0.0  # the step changes no weight, so a paired reward is 0
    drawn, forwards = [], []
    val_batches, forward_loss = toy.ctx.val_batches, toy.ctx.forward_loss
    toy.ctx.val_batches = lambda: drawn.append(val_batches()) or drawn[-1]
    toy.ctx.forward_loss = lambda batch: forwards.append(batch) or forward_loss(batch)
    for step in range(1, 4):
        toy.searcher.step(toy.ctx, toy._val())
        assert len(drawn) == step and len(forwards) == step * (3 if reward == 'paired' else 2)
        stats = toy.searcher.last_stats
        assert stats['val_loss'] != pytest.approx(np.log(2), abs=1e-3), stats
        if reward == 'paired':
            assert forwards[-3] is forwards[-1] is drawn[-1]  # before the step, the training batch, after
            assert abs(stats['reward']) < 1e-6, stats
        else:
            assert stats['reward'] == -stats['val_loss']


@pytest.mark.parametrize('set_up_first', [False, True], ids=['load-before-setup', 'load-after-setup'])
def test_state_dict_round_trip_mid_search_continues_identically(set_up_first):
    straight = Toy(_joint(tau=2.0, tau_min=0.5, tau_decay=0.9))
    straight.run(4)
    straight.searcher.snapshot(1)
    straight.run(4)
    first = Toy(_joint(tau=2.0, tau_min=0.5, tau_decay=0.9))
    first.run(4)
    first.searcher.snapshot(1)
    blob = first.state()
    resumed = Toy(_joint(tau=2.0, tau_min=0.5, tau_decay=0.9), seed=123)  # everything must come from the state
    if set_up_first:
        resumed.searcher.setup(resumed.ctx)
    resumed.load(blob)
    resumed.run(4)
    assert [t['epoch'] for t in resumed.searcher.arch_trajectory] == [1]
    flat = assert_same_state(straight.searcher.state_dict(), resumed.searcher.state_dict())
    assert any(k.startswith('arch.logits') for k in flat)


# ----------------------------------------------------------------------------- bad arguments

def test_bad_arguments_fail_with_clear_errors():
    with pytest.raises(ValueError, match="'conv7x7' is unknown"):
        ChoiceNet(candidates=('conv3x3', 'conv7x7'))
    with pytest.raises(ValueError, match='without a candidate'):
        ChoiceNet(candidates=('skip',))
    with pytest.raises(ValueError, match=r"arch\[2\]='skip' is not a candidate of block 2"):
        ChoiceNet(widths=(4, 8), blocks_per_stage=2, arch=['skip', 'conv3x3', 'skip', 'skip'])
    with pytest.raises(ValueError, match='expected 2 entries'):
        ChoiceNet(widths=(4, 8), blocks_per_stage=1, arch=['conv3x3'])
    with pytest.raises(ValueError, match='blocks_per_stage'):
        ChoiceNet(widths=(4, 8), blocks_per_stage=(1, 0))
    for kwargs, match in ((dict(tau=0), 'tau must be'), (dict(tau='1'), 'tau must be'),
                          (dict(tau=1.0, tau_min=2.0), 'tau_min=2.0 must not exceed'),
                          (dict(tau_decay=1.5), 'tau_decay'), (dict(lr_arch=-1), 'lr_arch'),
                          (dict(arch_file=''), 'arch_file')):
        with pytest.raises(ValueError, match=match):
            _joint(**kwargs)
    with pytest.raises(ValueError, match='tau must be'):
        HOOKS.build(dict(type='PolicySearchHook', searcher=dict(type='DAASJoint', tau=-1.0)))
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    fixed = ChoiceNet(widths=(4,), blocks_per_stage=1, arch=['conv3x3'])
    for model in (plain, fixed):
        searcher = _joint()
        with pytest.raises(ValueError, match='has no choice blocks'):
            searcher.setup(_context(model, searcher, val=None))
    with pytest.raises(ValueError, match="no 'arch' entry"):
        _joint().load_state_dict(SEARCHERS['daas'](ENTRIES, ops_per_policy=1).state_dict())
    searcher = _joint()
    searcher.setup(_context(_ToyNet(), searcher, val=None))
    other = _joint()
    other.setup(_context(ChoiceNet(widths=(4,), blocks_per_stage=1), other, val=None))
    with pytest.raises(ValueError, match='candidates'):
        searcher.load_state_dict(other.state_dict())


def test_arch_file_round_trip_and_validation(tmp_path):
    net = ChoiceNet(widths=(4, 8), blocks_per_stage=1)
    probs = [[0.1, 0.5, 0.1, 0.1, 0.1, 0.1], [0.6, 0.1, 0.1, 0.1, 0.1]]
    written = save_arch_file(tmp_path / 'arch.json', searcher='daas_joint', candidates=net.block_candidates,
                             probs=probs, network=net.arch_config(), trajectory=[dict(epoch=1, probs=probs)])
    loaded = load_arch_file(tmp_path)  # a work dir holding arch.json
    assert loaded == written and loaded.arch == ('conv5x5', 'conv3x3')
    cfg = fixed_backbone_cfg(loaded, dict(type='DAWideResNet', depth=10, num_classes=7))
    assert cfg['arch'] == ['conv5x5', 'conv3x3'] and cfg['num_classes'] == 7 and cfg['widths'] == [4, 8]
    wider = fixed_backbone_cfg(loaded, dict(type='DAChoiceNet', widths=(6, 12), blocks_per_stage=1))
    assert wider['widths'] == (6, 12) and wider['residual'] is True
    assert ChoiceNet(**{k: v for k, v in wider.items() if k != 'type'}).choice_blocks() == []  # fixed
    with pytest.raises(ValueError, match='blocks_per_stage'):
        fixed_backbone_cfg(loaded, dict(type='DAChoiceNet', blocks_per_stage=2))
    doc = json.loads((tmp_path / 'arch.json').read_text())
    for change, match in ((dict(arch=['conv3x3', 'skip']), r"arch\[1\]='skip'"),
                          (dict(probs=[[1.0], [1.0]]), r'probs\[0\]'), (dict(version=2), 'version mismatch'),
                          (dict(schema='det_autoaug.policy'), 'schema')):
        with pytest.raises(ValueError, match=match):
            arch_from_dict(dict(doc, **change))
    with pytest.raises(FileNotFoundError, match='daas_joint search writes arch.json'):
        load_arch_file(tmp_path / 'missing')


# ----------------------------------------------------------------------------- through the hook and the tools

@pytest.fixture(scope='module')
def fashion_root(tmp_path_factory) -> Path:
    return make_fashion_root(tmp_path_factory.mktemp('fmnist'))


def test_tiny_joint_search_writes_arch_and_policy_then_trains_the_found_arch(fashion_root, tmp_path):
    import search_cls
    import train_cls
    assert search_cls.parse_args(['--searcher', 'daas_joint']).searcher == 'daas_joint'
    data = [f'{key}.dataset.data_root={fashion_root}' for key in ('train_dataloader', 'test_dataloader')]
    work = tmp_path / 'search'
    policy_path = search_cls.main([
        str(CONFIGS / 'choicenet_fashion_mnist_daas_joint.py'), '--device', 'cpu', '--work-dir', str(work),
        '--cfg-options', data[0], 'train_dataloader.dataset.subset=64', 'train_cfg.max_epochs=1'])
    scalars = MessageHub.get_current_instance().log_scalars
    assert 'train/daas_joint_arch_entropy' in scalars and 'train/daas_joint_tau' in scalars
    arch = load_arch_file(work / 'arch.json')
    policy = load_policy_file(policy_path)
    assert policy.searcher == 'daas_joint' and policy.meta['iterations'] == 1
    assert policy.meta['arch'] == list(arch.arch) and policy.meta['arch_file'] == 'arch.json'
    assert len(arch.arch) == 6 and arch.network['type'] == 'DAChoiceNet'
    assert [t['epoch'] for t in arch.trajectory] == [1] and arch.meta['arch_updates'] == 1
    assert any(max(p) > min(p) for p in arch.probs), 'one architecture update moved no logit'
    ckpt = torch.load(work / 'epoch_1.pth', weights_only=False)['ddas_search']
    assert ckpt['searcher'] == 'daas_joint' and ckpt['policy']['arch']['updates'] == 1
    restored = DAASJointSearcher(get_space('ddas_cifar'), ops_per_policy=2)
    restored.load_state_dict(ckpt['policy'])
    restored.setup(_context(ChoiceNet(**{k: v for k, v in arch.network.items() if k != 'type'}), restored, None))
    for restored_probs, saved_probs in zip(restored.probs(), arch.probs):
        assert restored_probs.tolist() == pytest.approx(saved_probs)

    config = str(CONFIGS / 'choicenet_fashion_mnist_train.py')
    tiny = [*data, 'train_dataloader.dataset.subset=20', 'test_dataloader.dataset.subset=10',
            'train_cfg.max_epochs=1', 'train_dataloader.batch_size=20']
    result = train_cls.main([config, '--arch', str(work), '--policy', str(policy_path), '--device', 'cpu',
                             '--work-dir', str(tmp_path / 'train'), '--cfg-options', *tiny])
    assert 0.0 <= result['metrics']['accuracy/top1'] <= 1.0 and result['arch_ops'] == list(arch.arch)
    assert json.loads((tmp_path / 'train' / 'result.json').read_text())['arch'] == str(work)
    with pytest.raises(SystemExit, match='needs|give --arch'):
        train_cls.main([config, '--device', 'cpu', '--work-dir', str(tmp_path / 'bad'), '--cfg-options', *tiny])
    with pytest.raises(SystemExit, match='--arch'):
        train_cls.main([config, '--arch', str(tmp_path / 'nowhere'), '--device', 'cpu', '--work-dir',
                        str(tmp_path / 'bad'), '--cfg-options', *tiny])


def test_joint_search_on_a_model_without_choice_blocks_fails_before_training(fashion_root, tmp_path):
    import search_cls
    with pytest.raises(ValueError, match='has no choice blocks'):
        search_cls.main(['--device', 'cpu', '--searcher', 'daas_joint', '--work-dir', str(tmp_path),
                         '--cfg-options', f'train_dataloader.dataset.data_root={fashion_root}',
                         'train_dataloader.dataset.subset=64', 'train_cfg.max_epochs=1'])


def test_gpu_configs_load_and_build_their_supernet():
    from mmengine.config import Config
    from mmengine.registry import MODELS
    search = Config.fromfile(str(CONFIGS / 'choicenet_cifar10_daas_joint.py'))
    train = Config.fromfile(str(CONFIGS / 'choicenet_cifar10_train.py'))
    assert search.custom_hooks[0]['searcher']['type'] == 'DAASJoint'
    assert search.custom_hooks[0]['searcher']['tau_decay'] ** 19550 == pytest.approx(0.01, rel=0.01)
    net = MODELS.build(search.model.backbone)
    assert len(net.choice_blocks()) == 9 and tuple(net.candidate_names) == CANDIDATE_NAMES
    assert train.model.backbone['type'] == 'DAChoiceNet' and 'arch' not in train.model.backbone


def _ddp_worker(rank: int, world: int, port: int, data_root: str, work_dir: str) -> None:
    import os

    from mmengine.config import Config
    from mmengine.runner import Runner

    import det_autoaug.cls  # noqa: F401  (registers the datasets, models and the hook in the child)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    cfg = Config.fromfile(str(CONFIGS / 'choicenet_fashion_mnist_daas_joint.py'))
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': data_root, 'train_dataloader.dataset.subset': 64,
                         'train_dataloader.batch_size': 8, 'train_cfg.max_epochs': 1, 'log_level': 'WARNING'})
    cfg.work_dir = work_dir
    cfg.launcher = 'pytorch'
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    # the candidates off the sampled path get no gradient in the weights' backward
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, find_unused_parameters=True,
                                 broadcast_buffers=False)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if type(h).__name__ == 'PolicySearchHook')
    torch.save(dict(state=hook.searcher.state_dict(), steps=hook.search_steps), Path(work_dir) / f'rank{rank}.pt')
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_keep_identical_architecture_and_policy(fashion_root, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(fashion_root), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1))
    assert r0['steps'] == r1['steps'] > 0
    for key in ('alpha', 'beta'):
        assert torch.equal(r0['state']['policy'][key], r1['state']['policy'][key]), f'{key} differs between the ranks'
    a0, a1 = r0['state']['arch'], r1['state']['arch']
    assert a0['updates'] == a1['updates'] == r0['steps']
    for b, (l0, l1) in enumerate(zip(a0['logits'], a1['logits'])):
        assert torch.equal(l0, l1), f'architecture logits of block {b} differ between the ranks'
    assert any(not torch.equal(l0, torch.zeros_like(l0)) for l0 in a0['logits']), 'the architecture never moved'
