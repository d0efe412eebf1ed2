#!/usr/bin/env python
"""Planted-harm harness on Fashion-MNIST: ground truth per entry, then each searcher against a
shuffled-reward null (see :mod:`det_autoaug.evaluation.planted_harm`).

Full run (about 80 core-minutes: about 40 minutes with --jobs 2 on 2 cores):
    python tools/planted_harm.py --work-dir work_dirs/planted_harm --jobs 2
Quick (the test suite; seconds, no claim on results):
    python tools/planted_harm.py --quick --work-dir /tmp/ph

Writes ``results.json`` (settings, ground truth, every search and null run, the summary) and
prints the tables. ``--resume`` reuses the ground truth and searches already in ``results.json``
and adds the searchers named by ``--searchers``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from det_autoaug.evaluation.planted_harm import Setting, quick_setting  # noqa: E402
from det_autoaug.evaluation.planted_harm_run import print_tables, run_harness  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/planted_harm')
    parser.add_argument('--quick', action='store_true', help='tiny sizes for the test suite')
    parser.add_argument('--steps', type=int, help='training/search steps per run (default: the setting)')
    parser.add_argument('--searchers', nargs='+', help='subset of the setting\'s searchers')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    parser.add_argument('--jobs', type=int, default=1,
                        help='runs in parallel, one process and one torch thread each (the results do not change)')
    parser.add_argument('--resume', action='store_true',
                        help='reuse the ground truth and the searches already in results.json (others are added)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    setting = quick_setting() if args.quick else Setting()
    if args.steps:
        setting.steps = args.steps
    if args.searchers:
        unknown = sorted(set(args.searchers) - set(setting.searchers))
        if unknown:
            parser.error(f'unknown searchers {unknown}: expected some of {sorted(setting.searchers)}')
        setting.searchers = {k: v for k, v in setting.searchers.items() if k in args.searchers}
    work_dir = Path(args.work_dir)
    results = run_harness(setting, work_dir, jobs=args.jobs, resume=args.resume)
    print_tables(results, results['space'])
    print(f'wrote {work_dir / "results.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
