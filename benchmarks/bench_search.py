#!/usr/bin/env python
"""Cost of a DDAS search step relative to a plain training step, same detector, same batches.

Runs the slim RetinaNet of configs/digits/retinanet_slim_digits.py through mmengine's Runner
with ``PolicySearchHook`` (K = ``--k``), alternating a plain ``train_step`` and a search step on
consecutive batches (``--iters`` of each), so that both are timed under the same machine load.
Data loading is excluded, the first ``--warmup`` steps of each kind are dropped, and the search
step is broken down into the hook's phases.

The unavoidable work of a DDAS search step is K + 2 forward/backward passes (clean copy, K
copies, validation batch) against 1 for a plain step; the target is a ratio <= 1.1 x (K + 2).
``--searcher dada|daas`` times the other searchers behind the same hook; their passes per step
(batch forwards counted by the hook: DADA 4, each with a backward; DAAS 3, the two validation ones
without) are printed beside the ratio, and the DDAS target does not apply to them.

    python benchmarks/bench_search.py [--iters 12] [--k 3] [--batch 8] [--device cpu] [--searcher ddas] [--memory]

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
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iters', type=int, default=12)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--k', type=int, default=3, help='augmented copies per search step')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--searcher', default='ddas', choices=('ddas', 'dada', 'daas'))
    parser.add_argument('--memory', action='store_true', help='also measure each step\'s peak memory (module doc)')
    return parser.parse_args()


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


def run(cfg, iters: int, warmup: int, memory: Optional['PeakMemory'] = None):
    """Alternate plain and search steps in one run, so both see the same machine load."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from det_autoaug.search.hook import PolicySearchHook

    class Alternate(Hook):
        priority = 'LOWEST'  # after PolicySearchHook.before_run has installed its search_step

        def before_run(self, runner):
            search = [h for h in runner.hooks if isinstance(h, PolicySearchHook)][0]
            plain_step, search_step = search._original_train_step, search.search_step
            self.times = {'plain': [], 'search': []}
            self.peaks = {'plain': [], 'search': []}

            def step(data, optim_wrapper):
                kind = 'plain' if runner.iter % 2 == 0 else 'search'
                if kind == 'search' and len(self.times['search']) == warmup:
                    search.phase_seconds.clear()  # the breakdown covers the timed steps only
                if memory is not None:
                    memory.start()
                start = time.perf_counter()
                out = (plain_step if kind == 'plain' else search_step)(data, optim_wrapper=optim_wrapper)
                self.times[kind].append(time.perf_counter() - start)
                if memory is not None:
                    self.peaks[kind].append(memory.stop())
                return out
            runner.model.train_step = step

    runner = Runner.from_cfg(cfg)
    timer = Alternate()
    runner.register_hook(timer, priority='LOWEST')
    runner.train()
    hook = [h for h in runner.hooks if isinstance(h, PolicySearchHook)][0]
    return timer.times['plain'][warmup:], timer.times['search'][warmup:], hook, timer.peaks


def main() -> None:
    args = parse_args()
    if args.memory and not args.device.startswith('cuda') and os.environ.get(MMAP_ENV) != '65536':
        os.environ[MMAP_ENV] = '65536'  # read by glibc at process start: run again with it
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    from mmengine.config import Config

    import det_autoaug.mmdet_plugins  # noqa: F401  (registers the search hook)
    from det_autoaug.data.det_digits import ensure_det_digits

    data_root = str(ensure_det_digits()) + '/'
    base = Config.fromfile(str(ROOT / 'configs' / 'digits' / 'retinanet_slim_digits.py'))
    base.train_dataloader.dataset.data_root = data_root
    base.train_dataloader.batch_size = args.batch
    base.train_dataloader.num_workers = 0
    base.train_dataloader.persistent_workers = False
    base.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2 * args.iters, val_interval=2 * args.iters + 1)
    base.param_scheduler = []
    base.val_cfg = base.val_dataloader = base.val_evaluator = None
    base.test_cfg = base.test_dataloader = base.test_evaluator = None
    base.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 6, save_last=False)
    base.default_hooks.logger = dict(type='LoggerHook', interval=10 ** 6)
    base.default_hooks.pop('visualization', None)
    base.log_level = 'WARNING'
    with tempfile.TemporaryDirectory() as tmp:
        base.work_dir = tmp
        searcher = dict(type=args.searcher, **(dict(num_policies=args.k) if args.searcher == 'ddas' else {}))
        base.custom_hooks = [dict(type='PolicySearchHook', searcher=searcher, space='det_default', val_fraction=0.2,
                                  snapshot_interval=args.iters)]
        base.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
        memory = PeakMemory(args.device) if args.memory else None
        plain_times, search_times, hook, peaks = run(base, 2 * args.iters, args.warmup, memory)
    t_plain, t_search = statistics.median(plain_times), statistics.median(search_times)
    passes = hook.model_forwards / hook.search_steps
    print(f'\nslim RetinaNet, batch {args.batch}, device {args.device}, searcher {args.searcher}, K = {args.k}, '
          f'{len(plain_times)} timed steps of each kind (medians)')
    print(f"{'step':<28}{'ms / iter':>12}{'x plain':>10}")
    print(f"{'plain train_step':<28}{1000 * t_plain:>12.1f}{1.0:>10.2f}")
    print(f"{args.searcher.upper() + ' search_step':<28}{1000 * t_search:>12.1f}{t_search / t_plain:>10.2f}")
    if args.searcher == 'ddas':
        print(f"{'target: 1.1 x (K + 2)':<28}{'':>12}{1.1 * (args.k + 2):>10.2f}")
    timed = len(search_times)
    print(f"\nbreakdown of the search step (mean over the {timed} timed search steps)")
    total = sum(hook.phase_seconds.values())
    for name, seconds in sorted(hook.phase_seconds.items(), key=lambda kv: -kv[1]):
        per_iter = seconds / timed
        print(f'{name:<28}{1000 * per_iter:>12.1f}{per_iter / t_plain:>10.2f}  ({100 * seconds / total:.0f}%)')
    target = ' (target <= 1.10)' if args.searcher == 'ddas' else ''
    print(f"\nsearch step / plain step = {t_search / t_plain:.2f}; model passes per step (counted) = {passes:g}; "
          f"ratio per pass = {t_search / t_plain / passes:.2f}{target}")
    if args.memory:
        print_memory(peaks, hook, args)


def print_memory(peaks: dict, hook, args: argparse.Namespace) -> None:
    """The peak-memory table of ``--memory`` (module doc)."""
    mib = 2.0 ** 20
    grad = sum(p.numel() * p.element_size() for p in hook.context.params)
    plain = statistics.median(peaks['plain'][args.warmup:])
    search = statistics.median(peaks['search'][args.warmup:])
    where = 'CUDA max_memory_allocated' if args.device.startswith('cuda') else 'CPU peak resident set'
    print(f'\npeak memory above the memory in use before the step ({where}; medians)')
    print(f"{'step':<28}{'MiB':>12}{'x plain':>10}")
    print(f"{'plain train_step':<28}{plain / mib:>12.1f}{1.0:>10.2f}")
    print(f"{args.searcher.upper() + ' search_step':<28}{search / mib:>12.1f}{search / max(plain, 1):>10.2f}")
    if args.searcher == 'ddas':
        print(f"{'reference: K + 2 plain steps':<28}{(args.k + 2) * plain / mib:>12.1f}{args.k + 2:>10.2f}")
    print(f"{'one gradient (parameters)':<28}{grad / mib:>12.1f}{grad / max(plain, 1):>10.2f}")
    buffers = getattr(hook.context, 'buffers', None)
    if buffers is not None:  # allocated once at setup: part of the memory in use before every step
        held = buffers.buffers.numel() * buffers.buffers.element_size()
        print(f"{f'gradient buffers held ({buffers.num_slots})':<28}{held / mib:>12.1f}{held / max(plain, 1):>10.2f}")


if __name__ == '__main__':
    sys.exit(main())
