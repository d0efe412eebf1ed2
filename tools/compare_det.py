#!/usr/bin/env python
"""Does the search help detection? Train the same detector with each augmentation arm.

Every arm trains the same detector (the CONFIG, default the slim CenterNet
``configs/digits/centernet_slim_digits.py``, the regime of docs/results.md "Sizing", where
augmentation matters; the slim RetinaNet configs still work) on the same embedded digits data, at the same image
scale, for the same epochs and seeds, and is evaluated with mmdet's ``CocoMetric`` (bbox mAP and
mAP_50) on the TEST split (``test.json``). Only the augmentation inserted after ``Resize`` in
the training pipeline differs. The arms (what each inserts: ``det_autoaug/evaluation/compare_det.py``):
``none``, ``handpicked`` (mmdet's RandomAffine jitter and PhotoMetricDistortion), ``randaugment``
(mmdet's), ``trivialaugment``, ``autoaug_v0`` (the published detection policy), ``uniform`` (uniform
p over the search space, with the DDAS policy's final s of the same seed) and the searched ones,
``ddas`` (DDAS's defaults: the look-ahead), ``ddas_one_step``, ``ddas_paper``, ``ddas_lookahead``, ``dada``,
``daas`` (DAAS's defaults: the look-ahead), ``daas_paired``
(det_autoaug/evaluation/arms.py says what each is): a ``PolicySearchHook`` search per
seed (the search config, default ``configs/digits/centernet_slim_digits_ddas.py``, for
``--search-epochs`` epochs; ``--search-once``: seed 0 only), whose policy file the arm trains with.

Every search's cost is reported: wall time of the search run, the hook's own
``search_seconds`` and ``search_steps``, and model passes (batch forwards through the
detector, with or without a backward, counted by the hook: look-ahead DDAS 1 per step plus
``(K + 1)(L + V)`` per round of L steps, one-step DDAS ``num_policies + 2`` per step, DADA 4, DAAS 3
with its paired reward).

Schedule (all arms and the search): SGD from the config, linear warm-up over the first
``min(200, iterations / 4)`` iterations, then cosine annealing per epoch to 1% of the lr. No
validation during training; no checkpoints.

Outputs in ``--work-dir`` (default ``./work_dirs/compare_det`` in the current directory):
``results.json`` (settings, every run, per-arm mean/std, search cost; rewritten after each run, so
a killed run keeps what it finished; ``--resume`` skips the runs already in it), ``results.md``
(the table) and ``compare_det.png`` (bar chart of the mean with the sample std as error bars,
per-seed dots).

Modes:
    --quick: 24/4/4 images of 48 px in a temporary folder, 1 epoch, seed 0, all 13 arms, a
        1-epoch search (3 search steps), one torch thread. Sized for the test suite: 39 s on the
        busy 2-core development machine.
    full (default): 1500/100/300 images (train/val/test; val is unused: the search holds out
        20% of the training images itself) of the embedded builder (96-128 px) in
        ``work_dir/data``, Resize scale 96, 28 epochs (5,264 iterations of batch 8; 24 until
        2026-12-05, where ``none`` stayed under 0.15 mAP), seeds 0 1 2, a 2-epoch search per seed
        (``--search-once``: seed 0 only). One slim CenterNet training run took 174-228 s on one
        core of the 2-core development machine with ``--threads 1`` and another run on the other
        core, a search 35-91 s (docs/results.md, "Detection comparison at 28 epochs"): the issue's
        10 arms x 3 seeds is about 1 hour 50 minutes on one core. The
        earlier RetinaNet comparison (docs/results.md, "Detection") used
        ``configs/digits/retinanet_slim_digits.py``, 1000 images, scale 80 and 6 epochs.

Comparisons run side by side (one process per core or GPU, each with its own ``--arms`` or
``--seeds`` and ``--work-dir``, the same ``--data``) are joined with ``--merge DIR ... --work-dir OUT``.

Examples:
    python tools/compare_det.py --quick
    nohup python tools/compare_det.py --device cpu > compare.log 2>&1 &
    python tools/compare_det.py --arms none ddas --seeds 0 --epochs 2
    python tools/compare_det.py --merge work_dirs/cmp_a work_dirs/cmp_b --work-dir work_dirs/cmp
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

CHECKOUT = Path(__file__).resolve().parents[1]
if str(CHECKOUT) not in sys.path:
    sys.path.insert(0, str(CHECKOUT))  # run from a checkout without installing the package

from det_autoaug.evaluation.compare_det import (  # noqa: E402
    ARMS,
    DEFAULT_CONFIG,
    DEFAULT_SEARCH_CONFIG,
    FULL_SIZES,
    QUICK_SIZES,
    ROOT,
)
from det_autoaug.utils.device import select_device  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', default=None,
                        help=f'training config of the detector (default: {DEFAULT_CONFIG.relative_to(ROOT)})')
    parser.add_argument('--search-config', default=None,
                        help=f'config with a search hook (default: {DEFAULT_SEARCH_CONFIG.relative_to(ROOT)})')
    parser.add_argument('--quick', action='store_true', help='tiny run for the test suite (see the module doc)')
    parser.add_argument('--seeds', type=int, nargs='+', default=None, help='training seeds (default 0 1 2; quick: 0)')
    parser.add_argument('--arms', nargs='+', default=list(ARMS), choices=ARMS, help='arms to run, in this order')
    parser.add_argument('--work-dir', default=None, help='output folder (default work_dirs/compare_det)')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto'")
    parser.add_argument('--data', default=None,
                        help='dataset folder (built there by ensure_det_digits when missing; '
                             'default: the cache folder, quick: a temporary folder)')
    parser.add_argument('--epochs', type=int, default=None, help='training epochs per run (default 28; quick: 1)')
    parser.add_argument('--search-epochs', type=int, default=None, help='search epochs (default 2; quick: 1)')
    parser.add_argument('--policy-seed', type=int, default=None,
                        help='train every seed with the policies searched with this seed (searched once; with '
                             '--resume, a search already in results.json is reused: runs of more seeds in parallel '
                             'work dirs share one search)')
    parser.add_argument('--search-once', action='store_true',
                        help='search with the first seed only and train every seed with that policy')
    parser.add_argument('--scale', type=int, default=None, help='Resize scale, px (default 96; quick: 48)')
    parser.add_argument('--num-workers', type=int, default=None, help='dataloader workers (default 1; quick: 0)')
    parser.add_argument('--sizes', type=int, nargs=3, default=None, metavar=('TRAIN', 'VAL', 'TEST'),
                        help='split sizes of the embedded set, built in work_dir/data unless --data '
                             '(default 1000 100 300; quick: 40 8 8 in a temporary folder)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s choice; quick: 1, far faster on a busy machine)')
    parser.add_argument('--score-thr', type=float, default=0.001,
                        help='test score threshold (default 0.001: an undertrained detector from scratch '
                             'scores below the configs\' 0.05 and would get mAP 0 without a box)')
    parser.add_argument('--uniform-apply-prob', type=float, default=None,
                        help="the uniform arm's apply_prob s (default: the ddas search's final s of the same seed "
                             "when the ddas arm runs, else DDAS's initial 0.35), e.g. another searcher's s")
    parser.add_argument('--uniform-ops-per-policy', type=int, default=None,
                        help="the uniform arm's entries per policy (default: the ddas search's when the ddas arm "
                             'runs, else 2)')
    parser.add_argument('--resume', action='store_true', help='skip the runs already in work_dir/results.json')
    parser.add_argument('--merge', nargs='+', default=None, metavar='DIR',
                        help='train nothing: join the results.json of these work dirs (comparisons run side by '
                             'side, each with some arms or seeds, same detector, data and schedule) into --work-dir')
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Dict[str, Any]:
    """Fill the defaults of the chosen mode."""
    quick = args.quick
    pick = lambda value, full, small: value if value is not None else (small if quick else full)  # noqa: E731
    settings = dict(
        quick=quick,
        config=str(Path(args.config or DEFAULT_CONFIG)),
        search_config=str(Path(args.search_config or DEFAULT_SEARCH_CONFIG)),
        seeds=list(pick(args.seeds, [0, 1, 2], [0])),
        arms=list(dict.fromkeys(args.arms)),
        epochs=pick(args.epochs, 28, 1),
        search_epochs=pick(args.search_epochs, 2, 1),
        search_once=args.search_once, policy_seed=args.policy_seed,
        scale=pick(args.scale, 96, 48),
        num_workers=pick(args.num_workers, 1, 0),
        sizes=QUICK_SIZES if quick else FULL_SIZES,
        threads=pick(args.threads, None, 1),
        score_thr=args.score_thr,
        uniform_apply_prob=args.uniform_apply_prob,
        uniform_ops_per_policy=args.uniform_ops_per_policy,
    )
    if args.sizes is not None:
        if min(args.sizes) < 1:
            raise SystemExit(f'--sizes {args.sizes}: expected three positive integers')
        settings['sizes'] = dict(zip(('train', 'val', 'test'), args.sizes))
    for key in ('epochs', 'search_epochs', 'scale'):
        if settings[key] < 1:
            raise SystemExit(f'--{key.replace("_", "-")} {settings[key]}: expected a positive integer')
    s = settings['uniform_apply_prob']
    if s is not None and not 0.0 < s <= 1.0:
        raise SystemExit(f'--uniform-apply-prob {s}: expected a probability in (0, 1]')
    ops = settings['uniform_ops_per_policy']
    if ops is not None and ops < 1:
        raise SystemExit(f'--uniform-ops-per-policy {ops}: expected a positive integer')
    if settings['num_workers'] < 0:
        raise SystemExit(f'--num-workers {settings["num_workers"]}: expected >= 0')
    return settings


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.merge is not None:
        if args.work_dir is None:
            raise SystemExit('--merge: give the output folder with --work-dir')
        from det_autoaug.evaluation.compare_det_report import markdown_table, merge_results
        doc = merge_results([Path(d) for d in args.merge], Path(args.work_dir).resolve())
        print(markdown_table(doc['summary'], doc['searches']), flush=True)
        return doc
    settings = _settings(args)
    settings['device'] = select_device(args.device)  # hides CUDA for 'cpu' before anything initialises it
    if settings['threads'] is not None:
        import torch
        torch.set_num_threads(settings['threads'])
    import det_autoaug.mmdet_plugins  # noqa: F401  (registers PolicyAugment and the search hook)
    from det_autoaug.evaluation.compare_det_run import run_comparison

    work_dir = Path(args.work_dir or Path('work_dirs') / 'compare_det').resolve()  # relative to the current directory
    return run_comparison(settings, work_dir=work_dir, data=args.data, resume=args.resume, command=' '.join(sys.argv))


if __name__ == '__main__':
    main()
