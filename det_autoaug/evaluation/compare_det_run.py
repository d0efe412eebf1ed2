"""The detection comparison's loop: the data, then per seed the searches and every arm's training run.

:func:`run_comparison` is what ``tools/compare_det.py`` runs once it has parsed its arguments into
``settings`` (the arms and their runs: :mod:`det_autoaug.evaluation.compare_det`; the reports:
:mod:`det_autoaug.evaluation.compare_det_report`).
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

from .compare_det import INIT_APPLY_PROB, SEARCHED_ARMS, run_search, train_and_test, write_uniform_policy
from .compare_det_report import markdown_table, search_key, write_results

#: The digits configs' batch size, for the warm-up length only.
BATCH = 8


def prepare_data(data: Optional[str], work_dir: Path, quick: bool, sizes: Dict[str, int]):
    """The embedded digits set for the comparison, built when missing.

    Args:
        data: its folder; None: ``work_dir/data``, or a temporary folder when ``quick``.
        work_dir: the comparison's output folder.
        quick: whether this is the test-suite run.
        sizes: ``{'train', 'val', 'test'}`` image counts of a set built here.

    Returns:
        ``(data_root, n_train, tmp)``: the folder with a trailing ``/``, its training images, and the
        ``TemporaryDirectory`` to clean up afterwards (None when the folder is kept).
    """
    from ..data.det_digits import ensure_det_digits

    tmp = None
    if data is None and quick:
        tmp = tempfile.TemporaryDirectory(prefix='compare_det_data_')
        data = str(Path(tmp.name) / 'digits')
    elif data is None:
        data = str(work_dir / 'data')
    data_root = str(ensure_det_digits(data, seed=0, sizes=sizes)) + '/'
    n_train = len(json.loads(Path(data_root, 'train.json').read_text())['images'])
    return data_root, n_train, tmp


def run_comparison(settings: Dict[str, Any], *, work_dir: Path, data: Optional[str] = None, resume: bool = False,
                   command: str = '') -> Dict[str, Any]:
    """Run every arm of ``settings['arms']`` for every seed, searching first where an arm needs it.

    Args:
        settings: ``quick``, ``config``, ``search_config``, ``seeds``, ``arms``, ``epochs``,
            ``search_epochs``, ``search_once``, ``policy_seed``, ``scale``, ``num_workers``, ``sizes``,
            ``score_thr`` and ``device`` (as ``tools/compare_det.py`` fills them); written to results.json
            with ``data_root`` and ``n_train`` added.
        work_dir: output folder (created); every run and search gets a folder in it.
        data: dataset folder (see :func:`prepare_data`).
        resume: keep the runs and searches of ``work_dir/results.json`` and skip those runs.
        command: the command line, recorded in results.json.

    Returns:
        The results document as written to ``results.json``.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    data_root, n_train, tmp_data = prepare_data(data, work_dir, settings['quick'], settings['sizes'])
    iters_per_epoch = max(1, math.ceil(n_train / BATCH))
    settings.update(data_root=data_root, n_train=n_train)

    doc: Dict[str, Any] = dict(settings=settings, runs=[], searches=[], command=command)
    if resume and (work_dir / 'results.json').is_file():
        old = json.loads((work_dir / 'results.json').read_text())
        doc['runs'], doc['searches'] = old.get('runs', []), old.get('searches', [])
    done = {(r['arm'], r['seed']) for r in doc['runs']}
    print(f'compare_det: arms {settings["arms"]}, seeds {settings["seeds"]}, {settings["epochs"]} epochs at '
          f'{settings["scale"]} px, {n_train} training images, device {settings["device"]}, work dir {work_dir}',
          flush=True)
    t0 = time.perf_counter()
    searchers = [a for a in settings['arms'] if a in SEARCHED_ARMS]
    searches = {search_key(s): s for s in doc['searches']}
    for seed in settings['seeds']:
        if settings.get('policy_seed') is not None:
            policy_seed = settings['policy_seed']
        else:
            policy_seed = settings['seeds'][0] if settings['search_once'] else seed
        policies = {}
        for searcher in searchers:
            search = searches.get((searcher, policy_seed))
            if search is None:
                print(f'[{time.perf_counter() - t0:7.0f} s] {searcher} search seed {policy_seed} ...', flush=True)
                search = run_search(settings['search_config'], searcher=searcher, data_root=data_root,
                                    scale=settings['scale'], epochs=settings['search_epochs'], seed=policy_seed,
                                    work_dir=work_dir / f'search_{searcher}_seed{policy_seed}',
                                    num_workers=settings['num_workers'], iters_per_epoch=iters_per_epoch,
                                    quick=settings['quick'])
                doc['searches'].append(search)
                searches[searcher, policy_seed] = search
                write_results(work_dir, doc)
                print(f"[{time.perf_counter() - t0:7.0f} s] {searcher} search seed {policy_seed}: "
                      f"{search['search_steps']} steps, {search['model_passes']} model passes, "
                      f"{search['wall_seconds']:.0f} s, s = {search['apply_prob']:.3f}, "
                      f"top {[e['entry'] for e in search['top_entries'][:3]]}", flush=True)
            policies[searcher] = search['policy']
        ddas = searches.get(('ddas', policy_seed))
        if 'uniform' in settings['arms']:
            if settings.get('uniform_apply_prob') is not None:
                apply_prob = settings['uniform_apply_prob']
            else:
                apply_prob = ddas['apply_prob'] if ddas is not None else INIT_APPLY_PROB
            ops = settings.get('uniform_ops_per_policy')
            if ops is None:
                ops = json.loads(Path(ddas['policy']).read_text())['ops_per_policy'] if ddas is not None else 2
            policies['uniform'] = write_uniform_policy(work_dir / f'uniform_seed{seed}.json', apply_prob, ops)
        for arm in settings['arms']:
            if (arm, seed) in done:
                continue
            policy_path = policies.get(arm)
            result = train_and_test(settings['config'], arm, policy_path=policy_path, data_root=data_root,
                                    scale=settings['scale'], epochs=settings['epochs'], seed=seed,
                                    work_dir=work_dir / f'{arm}_seed{seed}', num_workers=settings['num_workers'],
                                    iters_per_epoch=iters_per_epoch, score_thr=settings['score_thr'])
            doc['runs'].append(dict(arm=arm, seed=seed, policy=policy_path, **result))
            write_results(work_dir, doc)
            print(f"[{time.perf_counter() - t0:7.0f} s] {arm:<12} seed {seed}: mAP {result['bbox_mAP']:.4f} "
                  f"mAP_50 {result['bbox_mAP_50']:.4f} (train {result['train_seconds']:.0f} s)", flush=True)
    doc['total_seconds'] = round(time.perf_counter() - t0, 1)
    write_results(work_dir, doc)
    print('\n' + markdown_table(doc['summary'], doc['searches']), flush=True)
    print(f'written: {work_dir / "results.md"}, {work_dir / "results.json"}, {work_dir / "compare_det.png"} '
          f'({doc["total_seconds"]:.0f} s)', flush=True)
    if tmp_data is not None:
        tmp_data.cleanup()
    return doc
