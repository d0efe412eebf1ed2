"""The Fashion-MNIST planted-harm harness's run: ground truth, then each searcher and its null,
resumable, and its tables (the pieces are in :mod:`det_autoaug.evaluation.planted_harm`; the
command line is ``tools/planted_harm.py``)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np

from ..utils.json_file import write_json_atomic
from .planted_harm import Setting, ground_truth, load_data, planted_space, run_search, run_tasks, summarise


def run_harness(setting: Setting, work_dir: Path, jobs: int = 1, resume: bool = False) -> Dict[str, Any]:
    """Measure the ground truth (or keep it, ``resume``), then run every searcher of ``setting`` and its
    shuffled-reward null over their seeds; write ``work_dir/results.json`` after each step.

    Returns:
        The results document (``setting``, ``space``, ``ground_truth``, ``searches``, ``nulls``,
        ``summary``).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    out_file = work_dir / 'results.json'
    entries = planted_space()
    labels = [e.label for e in entries]
    data = load_data(setting)
    results: Dict[str, Any] = dict(setting=dataclasses.asdict(setting), space=labels)
    searches: Dict[str, list] = {}
    nulls: Dict[str, list] = {}
    if resume and out_file.is_file():
        previous = json.loads(out_file.read_text())
        results['ground_truth'] = previous['ground_truth']
        searches, nulls = previous.get('searches', {}), previous.get('nulls', {})
        results['setting']['searchers'] = dict(previous['setting']['searchers'], **results['setting']['searchers'])
    else:
        print('# ground truth (test accuracy, effect against none, paired by seed)')
        results['ground_truth'] = ground_truth(setting, data, entries, jobs=jobs)
    write_json_atomic(out_file, results, 'planted-harm results', 'results')
    for name, spec in setting.searchers.items():
        # every searcher has its shuffled-reward null (make_null)
        tasks = [(setting, data, entries, spec, s, null) for null, seeds in ((False, setting.seeds),
                                                                             (True, setting.null_seeds)) for s in seeds]
        runs = run_tasks(run_search, tasks, jobs)
        searches[name], nulls[name] = runs[:len(setting.seeds)], runs[len(setting.seeds):]
        results.update(searches=searches, nulls=nulls)
        write_json_atomic(out_file, results, 'planted-harm results', 'results')
        print(f'{name}: done ({sum(r["seconds"] for r in runs):.0f} s of search and null runs)', flush=True)
    results['summary'] = summarise(results['ground_truth'], searches, nulls, labels)
    write_json_atomic(out_file, results, 'planted-harm results', 'results')
    return results


def print_tables(results: dict, labels: Sequence[str]) -> None:
    """The ground-truth table, the searcher-vs-null table and each searcher's mean final p."""
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
