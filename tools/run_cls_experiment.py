#!/usr/bin/env python
"""Reproduce docs/results.md "Classification": searched policies on reduced Fashion-MNIST vs baselines (CPU).

1. search, once per searcher (``--searchers``, default ``ddas``): tools/search_cls.py
   (configs/cls/wrn_fashion_mnist_ddas.py: WRN-10-1, 2,000 stratified training images, half held
   out by the hook, 2 epochs) with ``--searcher``; DDAS writes to WORK/search (as before),
   the others to WORK/search_<searcher>;
2. train: tools/train_cls.py configs/cls/wrn_fashion_mnist_train.py (WRN-10-1, 500 training images,
   10 epochs, test on a stratified 2,000 of the test set) with each searched policy, none,
   RandAugment, TrivialAugment (``trivialaugment_wide``: torchvision's ``TrivialAugmentWide``,
   ``train_cls.py --policy trivialaugment``; not det_autoaug's ``'trivialaugment'`` policy name,
   which draws from a det_autoaug search space) and the uniform policy (same space and
   apply_prob as the DDAS one), seeds 0-2;
3. summary: mean and std of the test accuracy per policy and each search's cost (wall time,
   steps, model passes counted by the hook), in WORK/summary.json and printed.

Finished searches and runs are skipped on re-run.

Usage: python tools/run_cls_experiment.py [--work-dir work_dirs/cls_experiment] [--seeds 0 1 2]
           [--searchers ddas dada daas]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list) -> None:
    print('$', ' '.join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default=str(ROOT / 'work_dirs' / 'cls_experiment'))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--searchers', nargs='+', default=['ddas'], choices=('ddas', 'dada', 'daas'))
    args = parser.parse_args()
    work = Path(args.work_dir)
    start = time.perf_counter()
    searched, costs = {}, {}
    for searcher in dict.fromkeys(['ddas', *args.searchers]):  # DDAS: the uniform control's reference
        search_dir = work / ('search' if searcher == 'ddas' else f'search_{searcher}')
        policy = search_dir / 'policy.json'
        if not policy.is_file():
            began = time.perf_counter()
            run(['tools/search_cls.py', '--device', 'cpu', '--seed', '0', '--searcher', searcher,
                 '--work-dir', str(search_dir)])
            (search_dir / 'wall_seconds.txt').write_text(f'{time.perf_counter() - began:.1f}\n')
        meta = json.loads(policy.read_text())['meta']
        wall = search_dir / 'wall_seconds.txt'
        costs[searcher] = dict(steps=meta['iterations'], search_seconds=meta['search_seconds'],
                               model_passes=meta.get('model_forwards'),
                               wall_seconds=float(wall.read_text()) if wall.is_file() else None)
        searched[searcher] = str(policy)
        print(f'{searcher} search done after {time.perf_counter() - start:.0f} s: {costs[searcher]}', flush=True)
    policies = {name: [searched[name]] for name in args.searchers}
    policies.update({'none': ['none'], 'randaugment': ['randaugment'], 'trivialaugment_wide': ['trivialaugment'],
                     'uniform': ['uniform', '--reference-policy', searched['ddas']]})
    results = {name: [] for name in policies}
    for seed in args.seeds:
        for name, spec in policies.items():
            out = work / f'{name}_seed{seed}'
            if not (out / 'result.json').is_file():
                run(['tools/train_cls.py', 'configs/cls/wrn_fashion_mnist_train.py', '--policy', *spec,
                     '--device', 'cpu', '--seed', str(seed), '--work-dir', str(out)])
            acc = json.loads((out / 'result.json').read_text())['metrics']['accuracy/top1']
            results[name].append(acc)
            print(f'{name} seed {seed}: {acc:.4f} ({time.perf_counter() - start:.0f} s)', flush=True)
    summary = {name: dict(accuracies=accs, mean=statistics.mean(accs),
                          std=statistics.stdev(accs) if len(accs) > 1 else 0.0, search=costs.get(name))
               for name, accs in results.items()}
    (work / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    print('| policy | test accuracy (mean ± std) | per seed |\n|---|---|---|')
    for name, s in summary.items():
        print(f"| {name} | {s['mean']:.4f} ± {s['std']:.4f} | {', '.join(f'{a:.4f}' for a in s['accuracies'])} |")
    for name, c in costs.items():
        print(f"{name} search: {c['steps']} steps, {c['model_passes']} model passes, "
              f"{c['search_seconds']} s in the hook's steps, {c['wall_seconds']} s wall")
    print(f'total {time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
    main()
