#!/usr/bin/env python
"""Reproduce docs/results.md "Classification": DDAS on reduced Fashion-MNIST vs baselines (CPU).

1. search: tools/search_cls.py (configs/cls/wrn_fashion_mnist_ddas.py: WRN-10-1, 2,000 stratified
   training images, half held out by the hook, 2 epochs);
2. train: tools/train_cls.py configs/cls/wrn_fashion_mnist_train.py (WRN-10-1, 500 training images,
   10 epochs, test on a stratified 2,000 of the test set) with the searched policy, none,
   RandAugment and the uniform policy (same space and apply_prob as the searched one), seeds 0-2;
3. summary: mean and std of the test accuracy per policy, in WORK/summary.json and printed.

Usage: python tools/run_cls_experiment.py [--work-dir work_dirs/cls_experiment] [--seeds 0 1 2]
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
    args = parser.parse_args()
    work = Path(args.work_dir)
    policy = work / 'search' / 'policy.json'
    start = time.perf_counter()
    if not policy.is_file():
        run(['tools/search_cls.py', '--device', 'cpu', '--seed', '0', '--work-dir', str(work / 'search')])
    print(f'search done after {time.perf_counter() - start:.0f} s', flush=True)
    policies = {'ddas': [str(policy)], 'none': ['none'], 'randaugment': ['randaugment'],
                'uniform': ['uniform', '--reference-policy', str(policy)]}
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
                          std=statistics.stdev(accs) if len(accs) > 1 else 0.0) for name, accs in results.items()}
    (work / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    print('| policy | test accuracy (mean ± std) | per seed |\n|---|---|---|')
    for name, s in summary.items():
        print(f"| {name} | {s['mean']:.4f} ± {s['std']:.4f} | {', '.join(f'{a:.4f}' for a in s['accuracies'])} |")
    print(f'total {time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
    main()
