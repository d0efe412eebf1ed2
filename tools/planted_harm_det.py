#!/usr/bin/env python
"""Planted-harm harness for detection: the slim CenterNet on the embedded digits (issue 12 item 5).

The detection half of :mod:`det_autoaug.evaluation.planted_harm`, in the comparison's regime
(``tools/compare_det.py``: ``configs/digits/centernet_slim_digits.py``, 1,500 training images at
96 px, 24 epochs, test mAP on test.json), over the 5-entry space ``det_planted`` (FlipLR, FlipUD,
Rotate@10, TranslateX@3, Brightness@7):

1. **Ground truth.** Train with each entry alone (a policy file with that entry only, applied to
   an image with probability ``--gt-prob``) and with none, 3 seeds; an entry's effect is its test
   mAP minus none's, paired by seed; harmful / helpful beyond Student's two-sided 95% bound
   (:func:`det_autoaug.evaluation.planted_harm.classify`).
2. **Searches.** Each searcher searches with ``PolicySearchHook`` over ``det_planted`` while the
   detector trains for ``--search-epochs`` epochs of the same schedule (the comparison's search),
   5 seeds; its final per-entry probabilities give the harmful mass.
3. **Null.** Each search also runs with its rewards shuffled, 10 seeds
   (:func:`det_autoaug.evaluation.planted_harm.make_null`: DDAS's K rewards permuted across each
   step's proposals; DAAS's and DADA's taken from a step drawn from the last 50). A searcher
   separates when its harmful mass is below the null's 5th percentile.

Every run writes ``<work_dir>/runs/<name>.json`` and is skipped when that file exists, so a killed
run resumes where it stopped, and the summary (``results.json``, the tables) is rebuilt from
whatever runs exist (``--summary-only``). ``--jobs N`` runs N at once, one process and one torch
thread each.

Full run (about 200 core-minutes as measured on the busy 2-core development machine: 18 trainings of 5-13
minutes and 60 searches of 0.5-2 minutes):
    python tools/planted_harm_det.py --work-dir work_dirs/planted_harm_det --jobs 2
Quick (the test suite; tiny sizes, no claim on results):
    python tools/planted_harm_det.py --quick --work-dir /tmp/phd
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

CHECKOUT = Path(__file__).resolve().parents[1]
if str(CHECKOUT) not in sys.path:
    sys.path.insert(0, str(CHECKOUT))  # run from a checkout without installing the package

from det_autoaug.evaluation import compare_det  # noqa: E402
from det_autoaug.utils.device import select_device  # noqa: E402

SPACE = 'det_planted'
# name -> (searcher of PolicySearchHook, searcher_cfg on top of the search config's)
SEARCHERS = {
    'ddas_lookahead': compare_det.SEARCHED_ARMS['ddas_lookahead'],
    'ddas': ('ddas', {}),  # the shipped defaults of configs/_base_/ddas_search.py
    'daas': ('daas', {}),
    'dada': ('dada', {}),
}
FULL = dict(sizes=compare_det.FULL_SIZES, scale=96, epochs=24, search_epochs=2, seeds=[0, 1, 2],
            search_seeds=[0, 1, 2, 3, 4], null_seeds=list(range(10)), num_workers=0)
QUICK = dict(sizes=compare_det.QUICK_SIZES, scale=48, epochs=1, search_epochs=1, seeds=[0, 1],
             search_seeds=[0], null_seeds=[0, 1], num_workers=0)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/planted_harm_det')
    parser.add_argument('--quick', action='store_true', help='tiny sizes for the test suite')
    parser.add_argument('--data', default=None, help='dataset folder (default: work_dir/data; quick: a temporary one)')
    parser.add_argument('--searchers', nargs='+', default=list(SEARCHERS), choices=list(SEARCHERS))
    parser.add_argument('--gt-prob', type=float, default=0.5,
                        help='probability that a ground-truth run augments an image (default 0.5)')
    parser.add_argument('--search-epochs', type=int, default=None,
                        help='epochs each search (and null) trains while it searches (default 2; quick: 1)')
    parser.add_argument('--skip-ground-truth', action='store_true', help='run the searches only')
    parser.add_argument('--jobs', type=int, default=1, help='runs at once, one process and one torch thread each')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'auto'")
    parser.add_argument('--summary-only', action='store_true', help='rebuild results.json from the runs so far')
    args = parser.parse_args(argv)
    if not 0.0 < args.gt_prob <= 1.0:
        parser.error(f'--gt-prob {args.gt_prob}: expected a probability in (0, 1]')
    if args.search_epochs is not None and args.search_epochs < 1:
        parser.error(f'--search-epochs {args.search_epochs}: expected a positive integer')
    if args.jobs < 1:
        parser.error(f'--jobs {args.jobs}: expected a positive integer')
    return args


def _entries():
    from det_autoaug.ops.spaces import get_space
    return get_space(SPACE)


def entry_policy(path: Path, label: str, gt_prob: float) -> str:
    """A policy file over ``det_planted`` that applies the entry ``label`` alone, with probability ``gt_prob``."""
    from det_autoaug.policy.policy_file import save_policy_file

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

    from det_autoaug.evaluation.planted_harm import entry_probs, make_null
    from det_autoaug.search.hook import PolicySearchHook
    from det_autoaug.search.hook_cfg import search_hooks, set_hook_searcher

    kind, searcher_cfg = SEARCHERS[searcher]
    cfg = Config.fromfile(setting['search_config'])
    hooks = search_hooks(cfg)
    if not hooks:
        raise SystemExit(f'search config {setting["search_config"]} has no search hook (PolicySearchHook)')
    searcher_cfg = dict(searcher_cfg)
    if setting['quick'] and searcher_cfg.get('signal') == 'lookahead':  # rounds of 2 so that one completes
        searcher_cfg.update(lookahead_steps=2, lookahead_val_batches=1)
    hooks[0]['space'] = SPACE
    set_hook_searcher(hooks[0], kind, searcher_cfg)
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
    import det_autoaug.mmdet_plugins  # noqa: F401  (registers PolicyAugment and the search hook)


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
    from det_autoaug.evaluation.planted_harm import paired_effects, summarise

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


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    device = select_device(args.device)
    _init_worker(device)
    from det_autoaug.evaluation.compare_det_run import prepare_data
    from det_autoaug.utils.json_file import write_json_atomic

    base = dict(QUICK if args.quick else FULL)
    if args.search_epochs is not None:
        base['search_epochs'] = args.search_epochs
    work_dir = Path(args.work_dir).resolve()
    (work_dir / 'runs').mkdir(parents=True, exist_ok=True)
    data_root, n_train, tmp_data = prepare_data(args.data, work_dir, args.quick, base['sizes'])
    setting = dict(base, quick=args.quick, gt_prob=args.gt_prob, data_root=data_root, device=device,
                   config=str(compare_det.DEFAULT_CONFIG), search_config=str(compare_det.DEFAULT_SEARCH_CONFIG),
                   iters_per_epoch=max(1, math.ceil(n_train / 8)), searchers=args.searchers,
                   searcher_cfgs={k: SEARCHERS[k] for k in args.searchers})
    if not args.summary_only:
        tasks = [t for t in tasks_for(setting, args.searchers, not args.skip_ground_truth, str(work_dir))
                 if not (work_dir / 'runs' / f'{t[1]}.json').is_file()]
        print(f'planted_harm_det: {len(tasks)} runs to do in {work_dir} ({args.jobs} at once)', flush=True)
        t0 = time.perf_counter()
        if args.jobs == 1:
            done = map(_run, tasks)
        else:
            pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context('spawn'),
                                       initializer=_init_worker, initargs=(device,))
            done = pool.map(_run, tasks)
        for name in done:
            print(f'[{time.perf_counter() - t0:7.0f} s] {name}', flush=True)
        if args.jobs > 1:
            pool.shutdown()
    results = summarise_runs(work_dir, setting['seeds'])
    results['setting'] = {k: v for k, v in setting.items() if k != 'data_root'}
    write_json_atomic(work_dir / 'results.json', results, 'planted-harm results', 'results')
    print_tables(results)
    print(f'wrote {work_dir / "results.json"}')
    if tmp_data is not None:
        tmp_data.cleanup()
    return results


if __name__ == '__main__':
    main()
