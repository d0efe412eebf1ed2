"""Reports of the detection comparison: per-arm summary, the markdown table, the bar chart, results.json.

``results.json`` holds ``settings``, ``runs`` (one per arm and seed), ``searches`` (one per searcher
and seed), ``summary`` (:func:`summarise`) and ``arms`` (:func:`arm_values`: per arm, the per-seed
``map`` and ``map50``, the shape of ``docs/results/compare_det.json``); :func:`write_results` rewrites
it after every run (atomically, with ``results.md`` and ``compare_det.png``), so a killed comparison
keeps what it finished. :func:`merge_results` joins the results of comparisons run side by side
(one process per core or GPU, each with its own arms or seeds) into one.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

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


def search_key(search: Dict[str, Any]) -> Tuple[str, int]:
    """``(searcher, seed)`` of a search entry (results.json of earlier versions held DDAS searches
    without a ``searcher`` field)."""
    return search.get('searcher', 'ddas'), search['seed']


def arm_values(summary: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, List[float]]]:
    """Per arm of :func:`summarise`: ``{"map": [...], "map50": [...], "seeds": [...]}``, in seed order."""
    return {arm: dict(map=s['bbox_mAP']['values'], map50=s['bbox_mAP_50']['values'], seeds=s['seeds'])
            for arm, s in summary.items()}


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
        lines.append(f"{search_key(s)[0].upper()} search seed {s['seed']}: {s['epochs']} epochs, "
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
    doc['arms'] = arm_values(doc['summary'])
    tmp = work_dir / 'results.json.tmp'
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, work_dir / 'results.json')
    (work_dir / 'results.md').write_text(markdown_table(doc['summary'], doc['searches']))
    if doc['summary']:
        plot(doc['summary'], work_dir / 'compare_det.png')


# Settings that decide what a run measures: results that differ in one of them are not one comparison.
# (arms, seeds, search_once, policy_seed, threads, num_workers and device may differ between the parts.)
MERGE_KEYS = ('quick', 'config', 'search_config', 'epochs', 'search_epochs', 'scale', 'sizes', 'score_thr',
              'data_root', 'n_train', 'uniform_apply_prob', 'uniform_ops_per_policy')

# Per results.json list: what identifies an item, and what it measured (to tell two copies apart).
_IDENTITY: Dict[str, Tuple[Callable[[Dict[str, Any]], Any], Callable[[Dict[str, Any]], Any]]] = {
    'runs': (lambda run: (run['arm'], run['seed']), lambda run: tuple(run[m] for m in METRICS)),
    'searches': (search_key, lambda search: (search['apply_prob'], [e['entry'] for e in search['top_entries']])),
}


def merge_results(sources: Sequence[Path], work_dir: Path) -> Dict[str, Any]:
    """Join the ``results.json`` of several comparison work dirs into ``work_dir`` (table, JSON and plot).

    Args:
        sources: work dirs (or their ``results.json``) of comparisons of the same detector, data and
            schedule (the settings of :data:`MERGE_KEYS` equal), each with some of the arms and seeds.
        work_dir: output folder; may be one of the sources (its ``results.json`` is replaced).

    Returns:
        The merged document: the runs and searches of every source (one copy of a run or search that
        two sources hold alike), settings of the first source with the arms in order of appearance and
        the seeds sorted, ``merged_from`` (each source's path and command).

    Raises:
        FileNotFoundError: a source without ``results.json``.
        ValueError: fewer than two sources, a setting of :data:`MERGE_KEYS` that differs (named with both
            values and files), or one arm and seed (or searcher and seed) with different results in two sources.
    """
    if len(sources) < 2:
        raise ValueError(f'merge: {len(sources)} source(s) given, expected two or more work dirs')
    files = [Path(s) if Path(s).suffix == '.json' else Path(s) / 'results.json' for s in sources]
    docs = []
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f'merge: {f} does not exist (expected the results.json of a compare_det work dir)')
        docs.append(json.loads(f.read_text()))
    first = docs[0]['settings']
    for f, doc in zip(files[1:], docs[1:]):
        for key in MERGE_KEYS:
            if doc['settings'].get(key) != first.get(key):
                raise ValueError(f'merge: setting {key!r} is {first.get(key)!r} in {files[0]} but '
                                 f'{doc["settings"].get(key)!r} in {f}: not one comparison')
    joined: Dict[str, Dict[Any, Dict[str, Any]]] = {field: {} for field in _IDENTITY}
    for f, doc in zip(files, docs):
        for field, (key, outcome) in _IDENTITY.items():
            items = joined[field]
            for item in doc[field]:
                k = key(item)
                if k in items and outcome(items[k]) != outcome(item):
                    raise ValueError(f'merge: {field[:-1]} {k} differs between two sources ({f} gives '
                                     f'{outcome(item)}, an earlier one {outcome(items[k])})')
                items.setdefault(k, item)
    settings = dict(first)
    settings['arms'] = list(dict.fromkeys(a for doc in docs for a in doc['settings']['arms']))
    settings['seeds'] = sorted({s for doc in docs for s in doc['settings']['seeds']})
    merged = dict(settings=settings, **{field: list(items.values()) for field, items in joined.items()},
                  merged_from=[dict(path=str(f), command=doc.get('command')) for f, doc in zip(files, docs)])
    work_dir.mkdir(parents=True, exist_ok=True)
    write_results(work_dir, merged)
    return merged
