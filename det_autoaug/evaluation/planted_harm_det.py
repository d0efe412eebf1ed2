"""The detection planted-harm harness (issue 12 item 5): its settings, its runs, the pool that runs them, its summary.

The detection half of :mod:`det_autoaug.evaluation.planted_harm`, in the comparison's regime
(:mod:`det_autoaug.evaluation.compare_det`: the slim CenterNet on the embedded digits), over the
5-entry space ``det_planted``:

1. **Ground truth** (:func:`train_run`): train with each entry alone (:func:`entry_policy`) and with
   none, per seed; an entry's effect is its test mAP minus none's, paired by seed
   (:func:`det_autoaug.evaluation.planted_harm.paired_effects`).
2. **Searches** (:func:`search_run`): each searcher of :data:`SEARCHERS` searches with
   ``PolicySearchHook`` over ``det_planted`` while the detector trains; its final per-entry
   probabilities give the harmful mass.
3. **Null**: the same searches with their rewards shuffled
   (:func:`det_autoaug.evaluation.planted_harm.make_null`).

:func:`run_harness` runs what :func:`tasks_for` lists and has no result file yet, each run writing
``<work_dir>/runs/<name>.json`` (:func:`_run`; with ``jobs > 1`` in spawned worker processes, which is
why the runs are module-level functions), then rebuilds the summary from every run file there
(:func:`summarise_runs`, ``results.json``, :func:`print_tables`). The command line, and the sizes and
costs of a full run: ``tools/planted_harm_det.py``.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..ops.spaces import get_space
from ..policy.policy_file import save_policy_file
from ..utils.device import select_device
from ..utils.json_file import write_json_atomic
from . import compare_det
from .compare_det_run import prepare_data
from .planted_harm import entry_probs, make_null, paired_effects, summarise

SPACE = 'det_planted'
# name -> (searcher of PolicySearchHook, searcher_cfg on top of the search config's): the detection
# comparison's searched arms (ddas, daas: their defaults; ddas's are those of configs/_base_/ddas_search.py)
SEARCHERS = {name: compare_det.SEARCHED_ARMS[name]
             for name in ('ddas', 'ddas_one_step', 'ddas_lookahead', 'daas', 'daas_paired', 'dada')}
#: what the harness runs unless told otherwise: the shipped searchers
DEFAULT_SEARCHERS = ('ddas', 'daas', 'dada')
FULL = dict(sizes=compare_det.FULL_SIZES, scale=96, epochs=24, search_epochs=2, seeds=[0, 1, 2],
            search_seeds=[0, 1, 2, 3, 4], null_seeds=list(range(10)), num_workers=0)
QUICK = dict(sizes=compare_det.QUICK_SIZES, scale=48, epochs=1, search_epochs=1, seeds=[0, 1],
             search_seeds=[0], null_seeds=[0, 1], num_workers=0)


def _entries():
    return get_space(SPACE)


def entry_policy(path: Path, label: str, gt_prob: float) -> str:
    """A policy file over ``det_planted`` that applies the entry ``label`` alone, with probability ``gt_prob``."""
    entries = _entries()
    labels = [e.label for e in entries]
    if label not in labels:
        raise ValueError(f'entry {label!r} is not in {SPACE}: expected one of {labels}')
    probs = [float(lab == label) for lab in labels]
    save_policy_file(path, searcher='planted_ground_truth', space=SPACE, entries=entries, probs=probs,
                     apply_prob=gt_prob, ops_per_policy=1, meta=dict(note=f'{label} alone, tools/planted_harm_det.py'))
    return str(path)


def train_run(name: str, label: Optional[str], seed: int, setting: Dict[str, Any], work_dir: str) -> Dict[str, Any]:
    """Train the comparison's detector with entry ``label`` alone (None: no augmentation); its test mAPs."""
    out = Path(work_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    policy = None if label is None else entry_policy(out / 'policy.json', label, setting['gt_prob'])
    result = compare_det.train_and_test(
        setting['config'], 'none' if label is None else 'uniform', policy_path=policy, data_root=setting['data_root'],
        scale=setting['scale'], epochs=setting['epochs'], seed=seed, work_dir=out, num_workers=setting['num_workers'],
        iters_per_epoch=setting['iters_per_epoch'])
    return dict(kind='ground_truth', entry=label or 'none', seed=seed, **result)


def search_run(name: str, searcher: str, seed: int, null: bool, setting: Dict[str, Any],
               work_dir: str) -> Dict[str, Any]:
    """Search over ``det_planted`` with ``searcher`` (:data:`SEARCHERS`) while the detector trains
    ``search_epochs`` epochs; ``null``: its rewards shuffled (``make_null``)."""
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    from ..search.hook import PolicySearchHook
    from ..search.hook_cfg import search_hooks, set_hook_searcher

    kind, searcher_cfg = SEARCHERS[searcher]
    cfg = Config.fromfile(setting['search_config'])
    hooks = search_hooks(cfg)
    if not hooks:
        raise SystemExit(f'search config {setting["search_config"]} has no search hook (PolicySearchHook)')
    hooks[0]['space'] = SPACE
    set_hook_searcher(hooks[0], kind, searcher_cfg)
    if setting['quick']:
        compare_det.quick_rounds(hooks[0])
    out = Path(work_dir) / name
    compare_det.configure_run(cfg, data_root=setting['data_root'], scale=setting['scale'],
                              epochs=setting['search_epochs'], seed=seed, work_dir=out,
                              num_workers=setting['num_workers'], name=name, iters_per_epoch=setting['iters_per_epoch'])
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, PolicySearchHook))
    if null:
        make_null(hook.searcher, torch.Generator().manual_seed(seed + 77))
    start = time.perf_counter()
    runner.train()
    return dict(kind='null' if null else 'search', searcher=searcher, seed=seed, probs=entry_probs(hook.searcher),
                labels=[e.label for e in hook.entries], wall_seconds=round(time.perf_counter() - start, 1),
                search_steps=hook.search_steps, model_passes=hook.model_forwards)


def _run(task: tuple) -> str:
    """Run one task and write its result file; returns the file's name."""
    fn, name, args, work_dir = task
    result = fn(name, *args, work_dir=work_dir)
    path = Path(work_dir) / 'runs' / f'{name}.json'
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    return name


def _init_worker(device: str) -> None:
    import torch
    torch.set_num_threads(1)
    select_device(device)  # hides CUDA for 'cpu' before torch initialises it
    from .. import mmdet_plugins  # noqa: F401  (registers PolicyAugment and the search hook)


def tasks_for(setting: Dict[str, Any], searchers: Sequence[str], ground: bool, work_dir: str) -> List[tuple]:
    """Every run of the harness in the order it is worth having: the ground truth, then each searcher's
    seeds and nulls."""
    tasks = []
    if ground:
        for label in [None, *[e.label for e in _entries()]]:
            for seed in setting['seeds']:
                tasks.append((train_run, f'gt_{label or "none"}_seed{seed}', (label, seed, setting), work_dir))
    for name in searchers:
        for seed in setting['search_seeds']:
            tasks.append((search_run, f'search_{name}_seed{seed}', (name, seed, False, setting), work_dir))
        for seed in setting['null_seeds']:
            tasks.append((search_run, f'null_{name}_seed{seed}', (name, seed, True, setting), work_dir))
    return tasks


def summarise_runs(work_dir: Path, seeds: Sequence[int]) -> Dict[str, Any]:
    """The ground-truth table and the searcher-vs-null summary from the run files so far."""
    runs = [json.loads(p.read_text()) for p in sorted((work_dir / 'runs').glob('*.json'))]
    labels = [e.label for e in _entries()]
    gt_runs = {(r['entry'], r['seed']): r for r in runs if r['kind'] == 'ground_truth'}
    out: Dict[str, Any] = dict(space=SPACE, labels=labels)
    complete = all((lab, s) in gt_runs for lab in ['none', *labels] for s in seeds)
    if complete:
        value = lambda lab, m: [gt_runs[lab, s][m] for s in seeds]  # noqa: E731
        rows = paired_effects(value('none', 'bbox_mAP'), {lab: value(lab, 'bbox_mAP') for lab in labels}, 'map',
                              log=lambda _: None)
        for row in rows:
            row['map50'] = value(row['entry'], 'bbox_mAP_50')
        out['ground_truth'] = dict(none=value('none', 'bbox_mAP'), none_map50=value('none', 'bbox_mAP_50'),
                                   entries=rows, rule='effect on test mAP beyond t(0.975, seeds - 1) * se')
    else:
        out['ground_truth_partial'] = sorted(f'{lab}/{s}' for lab, s in gt_runs)
    searches: Dict[str, List[dict]] = {}
    nulls: Dict[str, List[dict]] = {}
    for r in runs:
        if r['kind'] in ('search', 'null'):
            (searches if r['kind'] == 'search' else nulls).setdefault(r['searcher'], []).append(r)
    for group in (searches, nulls):
        for rs in group.values():
            rs.sort(key=lambda r: r['seed'])
    out['searches'], out['nulls'] = searches, nulls
    if complete:
        out['summary'] = summarise(out['ground_truth'], searches, nulls, labels)
    return out


def print_tables(results: Dict[str, Any]) -> None:
    labels = results['labels']
    gt = results.get('ground_truth')
    if gt is None:
        print(f'ground truth incomplete: {len(results["ground_truth_partial"])} runs so far')
    else:
        print('\n| entry | test mAP per seed | mean | effect vs none | se | class |')
        print('|---|---|---|---|---|---|')
        print(f'| none | {", ".join(f"{v:.3f}" for v in gt["none"])} | {np.mean(gt["none"]):.4f} | | | |')
        for r in gt['entries']:
            se = 'n/a' if r['se'] is None else f'{r["se"]:.4f}'
            print(f'| {r["entry"]} | {", ".join(f"{v:.3f}" for v in r["map"])} | {np.mean(r["map"]):.4f} | '
                  f'{r["effect"]:+.4f} | {se} | {r["class"]} |')
    summary = results.get('summary')
    if summary is not None:
        print(f'\nharmful: {summary["harmful"]} (uniform share {summary["uniform_harmful"]:.3f}); '
              f'helpful: {summary["helpful"]} (uniform share {summary["uniform_helpful"]:.3f})')
        print('\n| searcher | harmful mass per seed | null harmful mass | null 5th pct | seeds below it | '
              'helpful mass per seed | null helpful mass | null 95th pct | seeds above it |')
        print('|---|---|---|---|---|---|---|---|---|')
        fmt = lambda xs: ', '.join(f'{x:.3f}' for x in xs)  # noqa: E731
        for name, row in summary['searchers'].items():
            n = len(row['harmful_mass'])
            null = [fmt(row[k]) if k in row else 'n/a' for k in ('null_harmful_mass', 'null_helpful_mass')]
            pct = [f'{row[k]:.3f}' if k in row else 'n/a' for k in ('null_p05', 'null_helpful_p95')]
            sep = [f'{row[k]}/{n}' if k in row else 'n/a' for k in ('separated', 'helpful_separated')]
            print(f'| {name} | {fmt(row["harmful_mass"])} | {null[0]} | {pct[0]} | {sep[0]} | '
                  f'{fmt(row["helpful_mass"])} | {null[1]} | {pct[1]} | {sep[1]} |')
    print('\nfinal p per entry (mean over seeds; uniform ' + f'{1 / len(labels):.3f}):')
    for group in ('searches', 'nulls'):
        for name, runs in results[group].items():
            mean = np.mean([r['probs'] for r in runs], axis=0)
            cost = np.mean([r['wall_seconds'] for r in runs])
            print(f'  {dict(searches="search", nulls="null")[group]} {name} ({len(runs)} runs, {cost:.0f} s each): '
                  + ', '.join(f'{lab}={p:.3f}' for lab, p in zip(labels, mean)))


def run_harness(*, work_dir: Path, device: str, quick: bool = False, data: Optional[str] = None,
                searchers: Sequence[str] = tuple(SEARCHERS), gt_prob: float = 0.5,
                search_epochs: Optional[int] = None, ground_truth: bool = True, jobs: int = 1,
                summary_only: bool = False) -> Dict[str, Any]:
    """Run the harness's runs that have no result file in ``work_dir/runs`` yet, then summarise every run there.

    Args:
        work_dir: output folder (created): ``runs/<name>.json``, a folder per run, ``results.json``.
        device: the device to run on, as :func:`det_autoaug.utils.device.select_device` returned it.
        quick: the test suite's tiny sizes (:data:`QUICK`; else :data:`FULL`).
        data: the dataset folder (:func:`det_autoaug.evaluation.compare_det_run.prepare_data`).
        searchers: names of :data:`SEARCHERS` to run.
        gt_prob: probability that a ground-truth run augments an image.
        search_epochs: epochs each search trains (None: the mode's).
        ground_truth: run the ground-truth trainings too.
        jobs: runs at once, in spawned processes of one torch thread each.
        summary_only: run nothing; rebuild ``results.json`` from the runs so far.

    Returns:
        The results as written to ``results.json`` (:func:`summarise_runs` plus ``setting``).
    """
    _init_worker(device)
    base = dict(QUICK if quick else FULL)
    if search_epochs is not None:
        base['search_epochs'] = search_epochs
    work_dir = Path(work_dir).resolve()
    (work_dir / 'runs').mkdir(parents=True, exist_ok=True)
    data_root, n_train, tmp_data = prepare_data(data, work_dir, quick, base['sizes'])
    setting = dict(base, quick=quick, gt_prob=gt_prob, data_root=data_root, device=device,
                   config=str(compare_det.DEFAULT_CONFIG), search_config=str(compare_det.DEFAULT_SEARCH_CONFIG),
                   iters_per_epoch=max(1, math.ceil(n_train / 8)), searchers=list(searchers),
                   searcher_cfgs={k: SEARCHERS[k] for k in searchers})
    if not summary_only:
        tasks = [t for t in tasks_for(setting, searchers, ground_truth, str(work_dir))
                 if not (work_dir / 'runs' / f'{t[1]}.json').is_file()]
        print(f'planted_harm_det: {len(tasks)} runs to do in {work_dir} ({jobs} at once)', flush=True)
        t0 = time.perf_counter()
        if jobs == 1:
            done = map(_run, tasks)
        else:
            pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context('spawn'),
                                       initializer=_init_worker, initargs=(device,))
            done = pool.map(_run, tasks)
        for name in done:
            print(f'[{time.perf_counter() - t0:7.0f} s] {name}', flush=True)
        if jobs > 1:
            pool.shutdown()
    results = summarise_runs(work_dir, setting['seeds'])
    results['setting'] = {k: v for k, v in setting.items() if k != 'data_root'}
    write_json_atomic(work_dir / 'results.json', results, 'planted-harm results', 'results')
    print_tables(results)
    print(f'wrote {work_dir / "results.json"}')
    if tmp_data is not None:
        tmp_data.cleanup()
    return results

