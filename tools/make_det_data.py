"""Build the embedded detection dataset (real MNIST digits pasted on real photographs).

Writes DIR/train.json, DIR/val.json, DIR/test.json (COCO), DIR/images/*.png and DIR/meta.json.
The same seed gives byte-identical files. See det_autoaug/data/det_digits.py for the content,
sizes and licences.

Example:
    python tools/make_det_data.py --out data/det_digits --seed 0
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from det_autoaug.data.det_digits import DEFAULT_SIZES, build_det_digits  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--seed', type=int, default=0, help='dataset seed (default 0)')
    for split, size in DEFAULT_SIZES.items():
        parser.add_argument(f'--{split}', type=int, default=size, help=f'{split} images (default {size})')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    sizes = {split: getattr(args, split) for split in DEFAULT_SIZES}
    start = time.perf_counter()
    try:
        build_det_digits(args.out, seed=args.seed, sizes=sizes)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise SystemExit(str(err)) from None
    print(f'wrote {sum(sizes.values())} images {sizes} to {args.out} in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main(sys.argv[1:])
