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

    python benchmarks/bench_search.py [--iters 12] [--k 3] [--batch 8] [--device cpu] [--searcher ddas]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iters', type=int, default=12)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--k', type=int, default=3, help='augmented copies per search step')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--searcher', default='ddas', choices=('ddas', 'dada', 'daas'))
    return parser.parse_args()


def run(cfg, iters: int, warmup: int):
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

            def step(data, optim_wrapper):
                kind = 'plain' if runner.iter % 2 == 0 else 'search'
                if kind == 'search' and len(self.times['search']) == warmup:
                    search.phase_seconds.clear()  # the breakdown covers the timed steps only
                start = time.perf_counter()
                out = (plain_step if kind == 'plain' else search_step)(data, optim_wrapper=optim_wrapper)
                self.times[kind].append(time.perf_counter() - start)
                return out
            runner.model.train_step = step

    runner = Runner.from_cfg(cfg)
    timer = Alternate()
    runner.register_hook(timer, priority='LOWEST')
    runner.train()
    hook = [h for h in runner.hooks if isinstance(h, PolicySearchHook)][0]
    return timer.times['plain'][warmup:], timer.times['search'][warmup:], hook


def main() -> None:
    args = parse_args()
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
        plain_times, search_times, hook = run(base, 2 * args.iters, args.warmup)
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


if __name__ == '__main__':
    sys.exit(main())
