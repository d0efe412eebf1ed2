"""Reports of the detection comparison: per-arm summary, the markdown table, the bar chart, results.json.

``results.json`` holds ``settings``, ``runs`` (one per arm and seed), ``searches`` (one per searcher
and seed) and ``summary`` (:func:`summarise`); :func:`write_results` rewrites it after every run
(atomically, with ``results.md`` and ``compare_det.png``), so a killed comparison keeps what it finished.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Sequence

from .compare_det import METRICS


def summarise(runs: List[Dict[str, Any]], arms: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Per arm: n, mean and sample std (ddof=1; 0 for one seed) of each metric, per-seed values.

    Arms without a run are left out; the order is that of ``arms``.
    """
    summary = {}
    for arm in arms:
        rows = sorted((r for r in runs if r['arm'] == arm), key=lambda r: r['seed'])
        if not rows:
            continue
        entry: Dict[str, Any] = dict(n=len(rows), seeds=[r['seed'] for r in rows])
        for m in METRICS:
            values = [r[m] for r in rows]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            entry[m] = dict(mean=mean, std=std, values=values)
        entry['train_seconds_mean'] = sum(r['train_seconds'] for r in rows) / len(rows)
        summary[arm] = entry
    return summary


def markdown_table(summary: Dict[str, Dict[str, Any]], searches: Sequence[Dict[str, Any]]) -> str:
    """The table of :func:`summarise`, one row per arm, then one line per search (cost, top entries)."""
    lines = ['| arm | n | test mAP (mean +- std) | test mAP_50 (mean +- std) | mAP per seed | mAP_50 per seed | '
             'train s / run |', '|---|---|---|---|---|---|---|']
    for arm, s in summary.items():
        a, b = s['bbox_mAP'], s['bbox_mAP_50']
        lines.append(f"| {arm} | {s['n']} | {a['mean']:.4f} +- {a['std']:.4f} | {b['mean']:.4f} +- {b['std']:.4f} | "
                     f"{', '.join(f'{v:.3f}' for v in a['values'])} | {', '.join(f'{v:.3f}' for v in b['values'])} | "
                     f"{s['train_seconds_mean']:.0f} |")
    for s in searches:
        top = ', '.join(f"{e['entry']} {e['ratio']:.2f}x" for e in s['top_entries'][:5])
        lines.append('')
        lines.append(f"{s.get('searcher', 'ddas').upper()} search seed {s['seed']}: {s['epochs']} epochs, "
                     f"{s['search_steps']} steps, {s['model_passes']} model passes (batch forwards), "
                     f"{s['wall_seconds']:.0f} s wall "
                     f"({s['search_seconds']:.0f} s in the hook's steps), final s = {s['apply_prob']:.3f}; "
                     f"top entries (p / uniform): {top}")
    return '\n'.join(lines) + '\n'


def plot(summary: Dict[str, Dict[str, Any]], path: Path) -> None:
    """Bar chart: mean per arm with the sample std as error bars, each seed as a dot."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    arms = list(summary)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 3.6))
    for ax, m in zip(axes, METRICS):
        means = [summary[a][m]['mean'] for a in arms]
        stds = [summary[a][m]['std'] for a in arms]
        ax.bar(range(len(arms)), means, yerr=stds, capsize=4, color='#9ecae1', edgecolor='#3182bd')
        for i, a in enumerate(arms):
            values = summary[a][m]['values']
            ax.plot([i] * len(values), values, 'k.', alpha=0.7)
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=20)
        ax.set_ylabel(f'test {m}')
        ax.set_title(f'{m} (mean +- std over seeds)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(work_dir: Path, doc: Dict[str, Any]) -> None:
    """Summarise ``doc`` (in place) and write ``results.json``, ``results.md`` and ``compare_det.png``."""
    doc['summary'] = summarise(doc['runs'], doc['settings']['arms'])
    tmp = work_dir / 'results.json.tmp'
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, work_dir / 'results.json')
    (work_dir / 'results.md').write_text(markdown_table(doc['summary'], doc['searches']))
    if doc['summary']:
        plot(doc['summary'], work_dir / 'compare_det.png')
