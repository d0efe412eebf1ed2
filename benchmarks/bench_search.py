#!/usr/bin/env python
"""Cost of a search step relative to a plain training step, same model, same batches.

Runs a model through mmengine's Runner with ``PolicySearchHook`` (DDAS with K = ``--k``, or
``--searcher dada|daas``), alternating a plain ``train_step`` and a search step on consecutive
batches, so that both are timed under the same machine load. Data loading is excluded, the first
``--warmup`` steps of each kind are dropped, and the search step is broken down into the hook's
phases (``phase_seconds``; "other" is the step's time outside them).

``--model`` picks the model, from small to large:

- ``cnn_small``: two conv blocks and a linear head (20k parameters, the planted-harm CNN with RGB
  input) on Fashion-MNIST (28 x 28), batch 32, the classification search of configs/cls/;
- ``wrn``: a WideResNet on Fashion-MNIST, ``--wrn DEPTH-WIDTH`` (default 40-2, the official DDAS
  CIFAR model, 2.2M parameters; 10-1 is the CPU search config's), batch 32;
- ``retinanet_slim``: the slim RetinaNet of configs/digits/retinanet_slim_digits.py, batch 8.

The floor of a search step is its model passes (batch forwards counted by the hook, each with a
backward for DDAS: the clean copy, the K copies and the validation batch, K + 2; DADA 4; DAAS 3, the
two validation ones without a backward) times a plain step; the table prints step / plain and step
/ floor (the DDAS target: step / floor <= 1.1).

``--copies auto torch cv2`` (any of them) times the search step once per route of its hard
augmented copies (:mod:`det_autoaug.search.batch_augment`; ``auto`` is cv2 on the CPU, torch on
CUDA): the search steps take the routes in turn, each between two plain steps, ``--iters`` timed
and warm-up steps per route.

    python benchmarks/bench_search.py [--model retinanet_slim] [--copies auto] [--iters 12] [--k 3]
        [--batch 8] [--device cpu] [--searcher ddas] [--memory]

``--memory`` adds the peak memory of each kind of step (issue 16 item 5): on CUDA
``torch.cuda.max_memory_allocated`` over the step, reset before it; on the CPU the process's peak
resident set (``VmHWM``, reset through ``/proc/self/clear_refs``, Linux only) minus its resident set
before the step. For the CPU figure the script re-runs itself with ``MALLOC_MMAP_THRESHOLD_=65536``
so that glibc maps every large tensor and returns it when freed (otherwise a step reuses memory an
earlier one left in the heap, and its peak reads as 0); timings in that mode include the page
faults of those mappings and are not the reference ones. Both are medians over the timed steps,
printed against the parameters' own size (one gradient) and against ``K + 2`` plain steps.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
MODELS = ('retinanet_slim', 'cnn_small', 'wrn')
COPIES = ('auto', 'torch', 'cv2')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='retinanet_slim', choices=MODELS)
    parser.add_argument('--wrn', default='40-2', help='DEPTH-WIDTH of --model wrn (depth 6n + 4)')
    parser.add_argument('--copies', nargs='+', default=['auto'], choices=COPIES,
                        help='routes of the hard augmented copies, timed in turn (module doc)')
    parser.add_argument('--iters', type=int, default=12, help='steps of each kind (per route), warm-up included')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--k', type=int, default=3, help='augmented copies per search step')
    parser.add_argument('--batch', type=int, default=None, help='default: 8 for the detector, 32 for the classifiers')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--searcher', default='ddas', choices=('ddas', 'dada', 'daas'))
    parser.add_argument('--memory', action='store_true', help='also measure each step\'s peak memory (module doc)')
    args = parser.parse_args()
    if args.iters <= args.warmup:
        parser.error(f'--iters {args.iters} leaves no timed step after --warmup {args.warmup}')
    if args.batch is None:
        args.batch = 8 if args.model == 'retinanet_slim' else 32
    return args


MMAP_ENV = 'MALLOC_MMAP_THRESHOLD_'


class PeakMemory:
    """Peak memory of a step above the memory in use before it, in bytes (module doc)."""

    def __init__(self, device: str) -> None:
        import torch
        self.cuda = device.startswith('cuda')
        if not self.cuda and not os.path.exists('/proc/self/clear_refs'):
            raise SystemExit('--memory on the CPU reads /proc/self/status and needs Linux\'s /proc/self/clear_refs')
        self.torch = torch
        self.before = 0

    @staticmethod
    def _status_kib(field: str) -> int:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith(field + ':'):
                return int(line.split()[1])
        raise RuntimeError(f'/proc/self/status has no {field}')

    def start(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            self.before = self.torch.cuda.memory_allocated()
        else:
            Path('/proc/self/clear_refs').write_text('5')  # resets VmHWM to the current VmRSS
            self.before = 1024 * self._status_kib('VmRSS')

    def stop(self) -> int:
        if self.cuda:
            self.torch.cuda.synchronize()
            return self.torch.cuda.max_memory_allocated() - self.before
        return 1024 * self._status_kib('VmHWM') - self.before


def run(cfg, copies: List[str], warmup: int, memory: Optional['PeakMemory'] = None):
    """Alternate plain and search steps in one run, so both see the same machine load; the search steps
    take the routes of ``copies`` in turn. Returns per kind (``'plain'``, then each route) the timed
    steps' seconds, phase seconds, model passes and peak memory, and the search hook."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from det_autoaug.search.hook import PolicySearchHook

    class Alternate(Hook):
        priority = 'LOWEST'  # after PolicySearchHook.before_run has installed its search_step

        def before_run(self, runner):
            search = [h for h in runner.hooks if isinstance(h, PolicySearchHook)][0]
            plain_step, search_step = search._original_train_step, search.search_step
            self.stats = {kind: dict(times=[], phases={}, passes=0, peaks=[]) for kind in ['plain', *copies]}

            def step(data, optim_wrapper):
                n = runner.iter // 2
                kind = 'plain' if runner.iter % 2 == 0 else copies[n % len(copies)]
                stats = self.stats[kind]
                timed = n // len(copies) >= warmup
                if kind != 'plain':
                    search.context.copy_backend = kind
                phases, passes = dict(search.phase_seconds), search.model_forwards
                if memory is not None:
                    memory.start()
                start = time.perf_counter()
                out = (plain_step if kind == 'plain' else search_step)(data, optim_wrapper=optim_wrapper)
                seconds = time.perf_counter() - start
                if memory is not None:
                    peak = memory.stop()
                if timed:
                    stats['times'].append(seconds)
                    if memory is not None:
                        stats['peaks'].append(peak)
                    if kind != 'plain':
                        stats['passes'] += search.model_forwards - passes
                        for name, total in search.phase_seconds.items():
                            stats['phases'][name] = stats['phases'].get(name, 0.0) + total - phases.get(name, 0.0)
                return out
            runner.model.train_step = step

    runner = Runner.from_cfg(cfg)
    timer = Alternate()
    runner.register_hook(timer, priority='LOWEST')
    runner.train()
    hook = [h for h in runner.hooks if isinstance(h, PolicySearchHook)][0]
    return timer.stats, hook


def _quiet(cfg, args: argparse.Namespace, tmp: str) -> None:
    """What both kinds of model share: an iteration loop of ``2 * iters`` steps per route, no
    validation, test, checkpoints or logs."""
    cfg.train_dataloader.batch_size = args.batch
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    steps = 2 * args.iters * len(args.copies)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=steps, val_interval=steps + 1)
    cfg.param_scheduler = []
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 6, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10 ** 6)
    cfg.default_hooks.pop('visualization', None)
    cfg.log_level = 'WARNING'
    cfg.work_dir = tmp
    cfg.randomness = dict(seed=0)


def _searcher(args: argparse.Namespace) -> dict:
    return dict(type=args.searcher, **(dict(num_policies=args.k) if args.searcher == 'ddas' else {}))


def det_config(args: argparse.Namespace, tmp: str):
    """The slim RetinaNet on the digits set (det_default space)."""
    from mmengine.config import Config

    import det_autoaug.mmdet_plugins  # noqa: F401  (registers the search hook)
    from det_autoaug.data.det_digits import ensure_det_digits

    cfg = Config.fromfile(str(ROOT / 'configs' / 'digits' / 'retinanet_slim_digits.py'))
    cfg.train_dataloader.dataset.data_root = str(ensure_det_digits()) + '/'
    _quiet(cfg, args, tmp)
    cfg.custom_hooks = [dict(type='PolicySearchHook', searcher=_searcher(args), space='det_default', val_fraction=0.2,
                             snapshot_interval=args.iters)]
    return cfg, 'slim RetinaNet'


def cls_config(args: argparse.Namespace, tmp: str):
    """A classifier on Fashion-MNIST: the classification search config (ddas_cifar space), its
    backbone replaced by the small CNN or the WideResNet of ``--wrn``."""
    from mmengine.config import Config
    from mmengine.registry import MODELS as REGISTRY
    from torch import nn

    import det_autoaug.cls  # noqa: F401  (registers the models, datasets and the search hook)

    class BenchSmallCNN(nn.Module):
        """The planted-harm CNN (det_autoaug/evaluation/planted_harm.py) on RGB input."""

        def __init__(self, num_classes: int = 10) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Linear(32 * 7 * 7, num_classes)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))

    REGISTRY.register_module(name='BenchSmallCNN', module=BenchSmallCNN, force=True)
    cfg = Config.fromfile(str(ROOT / 'configs' / 'cls' / 'wrn_fashion_mnist_ddas.py'))
    if args.model == 'cnn_small':
        cfg.model.backbone = dict(type='BenchSmallCNN', num_classes=10)
        name = 'small CNN'
    else:
        try:
            depth, width = (int(v) for v in args.wrn.split('-'))
        except ValueError:
            raise SystemExit(f'--wrn {args.wrn!r} is invalid: expected DEPTH-WIDTH such as 40-2') from None
        cfg.model.backbone = dict(type='DAWideResNet', depth=depth, widen_factor=width, num_classes=10, dropout=0.0)
        name = f'WRN-{depth}-{width}'
    _quiet(cfg, args, tmp)
    hook = cfg.custom_hooks[0]
    hook.searcher = dict(hook.searcher, **_searcher(args)) if args.searcher == 'ddas' else _searcher(args)
    hook.snapshot_interval = args.iters
    return cfg, name


def main() -> None:
    args = parse_args()
    if args.memory and not args.device.startswith('cuda') and os.environ.get(MMAP_ENV) != '65536':
        os.environ[MMAP_ENV] = '65536'  # read by glibc at process start: run again with it
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    memory = PeakMemory(args.device) if args.memory else None
    with tempfile.TemporaryDirectory() as tmp:
        cfg, name = (det_config if args.model == 'retinanet_slim' else cls_config)(args, tmp)
        stats, hook = run(cfg, args.copies, args.warmup, memory)
    report(stats, hook, name, args)
    if args.memory:
        print_memory(stats, hook, args)


def report(stats: Dict[str, dict], hook, name: str, args: argparse.Namespace) -> None:
    """The step table and, per route, the phase breakdown of the search step."""
    params = sum(p.numel() for p in hook.context.params)
    t_plain = statistics.median(stats['plain']['times'])
    timed = len(stats['plain']['times'])
    print(f'\n{name} ({params / 1e6:.3g}M parameters), batch {args.batch}, device {args.device}, searcher '
          f'{args.searcher}, K = {args.k}; medians of {timed} timed plain steps and {args.iters - args.warmup} '
          'search steps per route; floor = counted model passes x plain step')
    print(f"{'step':<30}{'ms / iter':>11}{'x plain':>9}{'passes':>8}{'x floor':>9}")
    print(f"{'plain train_step':<30}{1000 * t_plain:>11.1f}{1.0:>9.2f}{1:>8g}{1.0:>9.2f}")
    for route in args.copies:
        t = statistics.median(stats[route]['times'])
        passes = stats[route]['passes'] / len(stats[route]['times'])
        label = f'{args.searcher.upper()} search_step, {route}'
        print(f'{label:<30}{1000 * t:>11.1f}{t / t_plain:>9.2f}{passes:>8g}{t / t_plain / passes:>9.2f}')
    if args.searcher == 'ddas':
        print(f"{'target: 1.1 x floor':<30}{'':>11}{1.1 * (args.k + 2):>9.2f}{args.k + 2:>8g}{1.1:>9.2f}")
    for route in args.copies:
        steps = len(stats[route]['times'])
        phases = dict(stats[route]['phases'])
        phases['other'] = max(sum(stats[route]['times']) - sum(phases.values()), 0.0)
        total = sum(phases.values())
        print(f'\nsearch step with {route} copies: phases (means over {steps} timed steps; x plain: of the median)')
        print(f"{'phase':<30}{'ms / iter':>11}{'x plain':>9}{'share':>8}")
        for phase, seconds in sorted(phases.items(), key=lambda kv: -kv[1]):
            per_iter = seconds / steps
            print(f'{phase:<30}{1000 * per_iter:>11.1f}{per_iter / t_plain:>9.2f}{100 * seconds / total:>7.0f}%')


def print_memory(stats: Dict[str, dict], hook, args: argparse.Namespace) -> None:
    """The peak-memory table of ``--memory`` (module doc)."""
    mib = 2.0 ** 20
    grad = sum(p.numel() * p.element_size() for p in hook.context.params)
    plain = statistics.median(stats['plain']['peaks'])
    where = 'CUDA max_memory_allocated' if args.device.startswith('cuda') else 'CPU peak resident set'
    print(f'\npeak memory above the memory in use before the step ({where}; medians)')
    print(f"{'step':<30}{'MiB':>11}{'x plain':>9}")
    print(f"{'plain train_step':<30}{plain / mib:>11.1f}{1.0:>9.2f}")
    for route in args.copies:
        search = statistics.median(stats[route]['peaks'])
        label = f'{args.searcher.upper()} search_step, {route}'
        print(f'{label:<30}{search / mib:>11.1f}{search / max(plain, 1):>9.2f}')
    if args.searcher == 'ddas':
        print(f"{'reference: K + 2 plain steps':<30}{(args.k + 2) * plain / mib:>11.1f}{args.k + 2:>9.2f}")
    print(f"{'one gradient (parameters)':<30}{grad / mib:>11.1f}{grad / max(plain, 1):>9.2f}")
    buffers = getattr(hook.context, 'buffers', None)
    if buffers is not None:  # allocated once at setup: part of the memory in use before every step
        held = buffers.buffers.numel() * buffers.buffers.element_size()
        print(f"{f'gradient buffers held ({buffers.num_slots})':<30}{held / mib:>11.1f}{held / max(plain, 1):>9.2f}")


if __name__ == '__main__':
    sys.exit(main())
