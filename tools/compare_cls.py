#!/usr/bin/env python
"""Classification comparison in a regime that overfits (Fashion-MNIST, small CNN): none, a hand-picked
policy, RandAugment, TrivialAugment, uniform p and the searchers, over seeds (see
:mod:`det_autoaug.evaluation.compare_cls`).

Full run (one process, one thread; about 35 minutes on a busy core):
    OMP_NUM_THREADS=1 python tools/compare_cls.py --work-dir work_dirs/compare_cls --resume
Quick (the test suite; seconds, no claim on results):
    python tools/compare_cls.py --quick --work-dir /tmp/cc
Sizing (only some arms, other sizes):
    python tools/compare_cls.py --arms none handpicked --per-class 20 --steps 1500 --work-dir work_dirs/size

Writes ``results.json`` after every run: ``settings``, ``runs`` (one per arm and seed),
``searches`` (one per searcher and seed: cost and what it learned, its policy file under
``policies/``), ``arms`` (arm -> ``{"acc": [per seed], "train_acc": [...]}``, seeds in order) and
``summary``. ``--resume`` keeps the runs and searches already there (the settings must match), so
a killed run loses only the run in progress.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from det_autoaug.evaluation.compare_cls import CompareSetting, quick_setting  # noqa: E402
from det_autoaug.evaluation.compare_cls_run import print_table, run_comparison  # noqa: E402


def build_setting(args, parser) -> CompareSetting:
    setting = quick_setting() if args.quick else CompareSetting()
    for name in ('per_class', 'steps', 'search_steps'):
        if getattr(args, name) is not None:
            setattr(setting, name, getattr(args, name))
    if args.steps is not None and args.search_steps is None:
        setting.search_steps = args.steps
    if args.seeds is not None:
        setting.seeds = tuple(args.seeds)
    if args.arms:
        unknown = sorted(set(args.arms) - set(setting.arms))
        if unknown:
            parser.error(f'unknown arms {unknown}: expected some of {list(setting.arms)}')
        setting.searchers = {k: v for k, v in setting.searchers.items() if k in args.arms}
    return setting


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/compare_cls')
    parser.add_argument('--quick', action='store_true', help='tiny sizes for the test suite')
    parser.add_argument('--arms', nargs='+', help='subset of the arms (default: all)')
    parser.add_argument('--seeds', nargs='+', type=int)
    parser.add_argument('--per-class', type=int, help='training images per class')
    parser.add_argument('--steps', type=int, help='training steps (and search steps unless --search-steps)')
    parser.add_argument('--search-steps', type=int)
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    parser.add_argument('--resume', action='store_true', help='keep the runs already in results.json')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    setting = build_setting(args, parser)
    arms = [a for a in setting.arms if not args.arms or a in args.arms]
    work_dir = Path(args.work_dir)
    try:
        results = run_comparison(setting, arms, work_dir, resume=args.resume)
    except ValueError as err:
        if str(err).startswith('--resume'):
            parser.error(str(err))
        raise
    print_table(results)
    print(f'wrote {work_dir / "results.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
