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
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from det_autoaug.evaluation.planted_harm import (  # noqa: E402
    Setting,
    ground_truth,
    load_data,
    planted_space,
    quick_setting,
    run_search,
    run_tasks,
    summarise,
)
from det_autoaug.utils.json_file import write_json_atomic  # noqa: E402


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
    work_dir.mkdir(parents=True, exist_ok=True)
    out_file = work_dir / 'results.json'
    entries = planted_space()
    labels = [e.label for e in entries]
    data = load_data(setting)
    results = dict(setting=dataclasses.asdict(setting), space=labels)
    searches, nulls = {}, {}
    if args.resume and out_file.is_file():
        previous = json.loads(out_file.read_text())
        results['ground_truth'] = previous['ground_truth']
        searches, nulls = previous.get('searches', {}), previous.get('nulls', {})
        results['setting']['searchers'] = dict(previous['setting']['searchers'], **results['setting']['searchers'])
    else:
        print('# ground truth (test accuracy, effect against none, paired by seed)')
        results['ground_truth'] = ground_truth(setting, data, entries, jobs=args.jobs)
    write_json_atomic(out_file, results, 'planted-harm results', 'results')
    for name, spec in setting.searchers.items():
        # every searcher has its shuffled-reward null (make_null)
        tasks = [(setting, data, entries, spec, s, null) for null, seeds in ((False, setting.seeds),
                                                                             (True, setting.null_seeds)) for s in seeds]
        runs = run_tasks(run_search, tasks, args.jobs)
        searches[name], nulls[name] = runs[:len(setting.seeds)], runs[len(setting.seeds):]
        results.update(searches=searches, nulls=nulls)
        write_json_atomic(out_file, results, 'planted-harm results', 'results')
        print(f'{name}: done ({sum(r["seconds"] for r in runs):.0f} s of search and null runs)', flush=True)
    results['summary'] = summarise(results['ground_truth'], searches, nulls, labels)
    write_json_atomic(out_file, results, 'planted-harm results', 'results')
    print_tables(results, labels)
    print(f'wrote {out_file}')
    return 0


def print_tables(results: dict, labels) -> None:
    gt, summary = results['ground_truth'], results['summary']
    print('\n| entry | test acc (mean over seeds) | effect vs none | se | class |')
    print('|---|---|---|---|---|')
    print(f'| none | {np.mean(gt["none"]):.4f} | | | |')
    for r in gt['entries']:
        se = r['se'] if r['se'] is None else round(r['se'], 4)
        print(f'| {r["entry"]} | {np.mean(r["acc"]):.4f} | {r["effect"]:+.4f} | {se} | {r["class"]} |')
    print(f'\nharmful: {summary["harmful"]} (uniform share {summary["uniform_harmful"]:.3f}); '
          f'helpful: {summary["helpful"]} (uniform share {summary["uniform_helpful"]:.3f})')
    print('\n| searcher | harmful mass per seed | helpful mass per seed | null harmful mass | null 5th pct | '
          'seeds below it |')
    print('|---|---|---|---|---|---|')
    for name, row in summary['searchers'].items():
        fmt = lambda xs: ', '.join(f'{x:.3f}' for x in xs)  # noqa: E731
        null = fmt(row['null_harmful_mass']) if 'null_harmful_mass' in row else 'n/a'
        p05 = f'{row["null_p05"]:.3f}' if 'null_p05' in row else 'n/a'
        sep = f'{row["separated"]}/{len(row["harmful_mass"])}' if 'separated' in row else 'n/a'
        print(f'| {name} | {fmt(row["harmful_mass"])} | {fmt(row["helpful_mass"])} | {null} | {p05} | {sep} |')
    print('\nfinal p per entry (mean over seeds):')
    for name, runs in results['searches'].items():
        mean = np.mean([r['probs'] for r in runs], axis=0)
        print(f'  {name}: ' + ', '.join(f'{lab}={p:.3f}' for lab, p in zip(labels, mean)))


if __name__ == '__main__':
    sys.exit(main())
