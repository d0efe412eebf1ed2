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
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

CHECKOUT = Path(__file__).resolve().parents[1]
if str(CHECKOUT) not in sys.path:
    sys.path.insert(0, str(CHECKOUT))  # run from a checkout without installing the package

from det_autoaug.evaluation.planted_harm_det import DEFAULT_SEARCHERS, SEARCHERS, run_harness  # noqa: E402
from det_autoaug.utils.device import select_device  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/planted_harm_det')
    parser.add_argument('--quick', action='store_true', help='tiny sizes for the test suite')
    parser.add_argument('--data', default=None, help='dataset folder (default: work_dir/data; quick: a temporary one)')
    parser.add_argument('--searchers', nargs='+', default=list(DEFAULT_SEARCHERS), choices=list(SEARCHERS))
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


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    device = select_device(args.device)  # hides CUDA for 'cpu' before anything initialises it
    return run_harness(work_dir=Path(args.work_dir).resolve(), device=device, quick=args.quick, data=args.data,
                       searchers=args.searchers, gt_prob=args.gt_prob, search_epochs=args.search_epochs,
                       ground_truth=not args.skip_ground_truth, jobs=args.jobs, summary_only=args.summary_only)


if __name__ == '__main__':
    main()
