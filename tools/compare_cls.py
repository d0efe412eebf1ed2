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
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from det_autoaug.evaluation.compare_cls import (  # noqa: E402
    BASELINE_ARMS,
    CompareSetting,
    baseline_policy,
    quick_setting,
    search,
    summarise,
    train_with_policy,
)
from det_autoaug.evaluation.planted_harm import load_data  # noqa: E402
from det_autoaug.policy.policy import build_policy  # noqa: E402
from det_autoaug.utils.json_file import write_json_atomic  # noqa: E402


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
    (work_dir / 'policies').mkdir(parents=True, exist_ok=True)
    out_file = work_dir / 'results.json'
    settings = dataclasses.asdict(setting)
    results = dict(settings=settings, runs={}, searches={})
    if args.resume and out_file.is_file():
        previous = json.loads(out_file.read_text())
        # what a run depends on must match; the arms, seeds and searchers may grow
        fixed = [k for k in settings if k not in ('seeds', 'searchers')]
        changed = [k for k in fixed if previous['settings'].get(k) != settings[k]]
        changed += [k for k, v in settings['searchers'].items() if previous['settings']['searchers'].get(k, v) != v]
        if changed:
            parser.error(f'--resume: settings {changed} differ from {out_file}; use another --work-dir')
        results['runs'], results['searches'] = previous['runs'], previous['searches']
        results['settings']['searchers'] = dict(previous['settings']['searchers'], **settings['searchers'])
    data = load_data(setting, seed=setting.data_seed)

    def save() -> None:
        results['arms'] = collect(results['runs'], results['settings']['seeds'])
        results['summary'] = summarise(results['arms'])
        write_json_atomic(out_file, results, 'classification comparison results', 'results')

    for arm in arms:
        for seed in setting.seeds:
            key = f'{arm}/{seed}'
            if key in results['runs']:
                continue
            if arm in BASELINE_ARMS:
                policy = baseline_policy(arm, setting)
            else:
                if key not in results['searches']:
                    path = work_dir / 'policies' / f'{arm}_seed{seed}.json'
                    results['searches'][key] = search(setting, data, setting.searchers[arm], seed, path)
                    found = results['searches'][key]
                    print(f'search {key}: {found["model_passes"]} model passes, {found["seconds"]:.0f} s, '
                          f's = {found["apply_prob"]:.3f}, top {found["top"]}', flush=True)
                    save()
                policy = build_policy(results['searches'][key]['policy_file'])
            results['runs'][key] = run = train_with_policy(setting, data, policy, seed)
            print(f'{key}: test acc {run["acc"]:.4f}, train acc {run["train_acc"]:.4f}, {run["seconds"]:.0f} s',
                  flush=True)
            save()
    save()
    print_table(results)
    print(f'wrote {out_file}')
    return 0


def collect(runs: dict, seeds) -> dict:
    """``arm -> {"acc": [...], "train_acc": [...]}`` over the seeds it has, in seed order."""
    arms: dict = {}
    for key, run in runs.items():
        arms.setdefault(key.rsplit('/', 1)[0], {})[int(key.rsplit('/', 1)[1])] = run
    return {arm: dict(acc=[by_seed[s]['acc'] for s in sorted(by_seed)],
                      train_acc=[by_seed[s]['train_acc'] for s in sorted(by_seed)], seeds=sorted(by_seed))
            for arm, by_seed in arms.items()}


def print_table(results: dict) -> None:
    def units(value):
        return 'n/a' if value is None else f'{value:+.1f}'
    print('\n| arm | test acc (mean +- std) | per seed | train acc | vs none (pooled std) | vs uniform (pooled std) |')
    print('|---|---|---|---|---|---|')
    for row in results['summary']:
        arm = results['arms'][row['arm']]
        seeds = ', '.join(f'{a:.4f}' for a in arm['acc'])
        train = sum(arm['train_acc']) / len(arm['train_acc'])
        none = f'{row["vs_none"]:+.4f} ({units(row["vs_none_pooled_std"])})' if 'vs_none' in row else 'n/a'
        uni = f'{row["vs_uniform"]:+.4f} ({units(row["vs_uniform_pooled_std"])})' if 'vs_uniform' in row else 'n/a'
        print(f'| {row["arm"]} | {row["mean"]:.4f} +- {row["std"]:.4f} | {seeds} | {train:.4f} | {none} | {uni} |')
    for key, found in results['searches'].items():
        print(f'search {key}: {found["model_passes"]} passes, {found["seconds"]:.0f} s, s = {found["apply_prob"]:.3f}, '
              f'top {found["top"]}')


if __name__ == '__main__':
    sys.exit(main())
