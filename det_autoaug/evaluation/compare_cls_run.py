"""The classification comparison's loop: every arm and seed, resumable, and its table.

The arms, their policies, the search and the training run are in
:mod:`det_autoaug.evaluation.compare_cls`; the command line is ``tools/compare_cls.py``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ..policy.policy import build_policy
from ..utils.json_file import write_json_atomic
from .compare_cls import BASELINE_ARMS, CompareSetting, baseline_policy, search, summarise, train_with_policy
from .planted_harm import load_data


def run_comparison(setting: CompareSetting, arms: Sequence[str], work_dir: Path,
                   resume: bool = False) -> Dict[str, Any]:
    """Train every arm of ``arms`` for every seed of ``setting`` (searching first for a searched arm)
    and write ``work_dir/results.json`` after each run.

    Args:
        setting: sizes, schedule, seeds and searchers.
        arms: the arms to run, in order (each in ``setting.arms``).
        work_dir: output folder; searched policies go to ``work_dir/policies``.
        resume: keep the runs and searches already in ``results.json``.

    Returns:
        The results document (``settings``, ``runs``, ``searches``, ``arms``, ``summary``).

    Raises:
        ValueError: ``resume`` with settings that differ from the file's (other than seeds and
            added searchers).
    """
    (work_dir / 'policies').mkdir(parents=True, exist_ok=True)
    out_file = work_dir / 'results.json'
    settings = dataclasses.asdict(setting)
    results: Dict[str, Any] = dict(settings=settings, runs={}, searches={})
    if resume and out_file.is_file():
        previous = json.loads(out_file.read_text())
        # what a run depends on must match; the arms, seeds and searchers may grow
        fixed = [k for k in settings if k not in ('seeds', 'searchers')]
        changed = [k for k in fixed if previous['settings'].get(k) != settings[k]]
        changed += [k for k, v in settings['searchers'].items() if previous['settings']['searchers'].get(k, v) != v]
        if changed:
            raise ValueError(f'--resume: settings {changed} differ from {out_file}; use another --work-dir')
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
    return results


def collect(runs: dict, seeds: Optional[Sequence[int]] = None) -> dict:
    """``arm -> {"acc": [...], "train_acc": [...]}`` over the seeds it has, in seed order."""
    arms: dict = {}
    for key, run in runs.items():
        arms.setdefault(key.rsplit('/', 1)[0], {})[int(key.rsplit('/', 1)[1])] = run
    return {arm: dict(acc=[by_seed[s]['acc'] for s in sorted(by_seed)],
                      train_acc=[by_seed[s]['train_acc'] for s in sorted(by_seed)], seeds=sorted(by_seed))
            for arm, by_seed in arms.items()}


def print_table(results: dict) -> None:
    """The markdown table of the arms against ``none`` and ``uniform``, and the searches' cost."""
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
