"""Draw a grid of samples of a COCO-format detection split with their boxes and class names.

Example:
    python tools/show_det_data.py --data data/det_digits --split train --out grid.png --n 16
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', required=True, help='dataset folder holding {split}.json and images/')
    parser.add_argument('--split', default='train', help='train, val or test (reads {split}.json)')
    parser.add_argument('--out', required=True, help='output PNG file')
    parser.add_argument('--n', type=int, default=16, help='number of images in the grid')
    parser.add_argument('--seed', type=int, default=0, help='seed of the choice of images')
    parser.add_argument('--img-prefix', default='images/', help="image folder inside --data (default 'images/')")
    return parser.parse_args(argv)


def show(data: Path, split: str, out: Path, n: int = 16, seed: int = 0, img_prefix: str = 'images/') -> Path:
    """Write a PNG grid of ``n`` random images of ``data/{split}.json`` with their boxes."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from PIL import Image

    ann_file = data / f'{split}.json'
    if not ann_file.is_file():
        raise FileNotFoundError(f'{ann_file} not found: expected a COCO json per split in {data} '
                                '(build one with tools/make_det_data.py --out DIR)')
    if n < 1:
        raise ValueError(f'--n must be >= 1, got {n}')
    coco = json.loads(ann_file.read_text())
    if not coco['images']:
        raise ValueError(f'{ann_file} has no images')
    names = {c['id']: c['name'] for c in coco['categories']}
    by_image: dict = {}
    for ann in coco['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann)
    rng = np.random.Generator(np.random.PCG64(seed))
    chosen = rng.choice(len(coco['images']), size=min(n, len(coco['images'])), replace=False)
    cols = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis('off')
    for ax, index in zip(axes.flat, sorted(chosen.tolist())):
        info = coco['images'][index]
        image = np.asarray(Image.open(data / img_prefix / info['file_name']).convert('RGB'))
        ax.imshow(image, interpolation='nearest')
        for ann in by_image.get(info['id'], []):
            x, y, w, h = ann['bbox']
            # imshow puts pixel centres on integers, so the continuous box edge x is at x - 0.5
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor='lime', linewidth=1))
            ax.text(x - 0.5, y - 1.5, names.get(ann['category_id'], str(ann['category_id'])), color='black',
                    fontsize=7, backgroundcolor='lime', va='bottom')
        ax.set_title(info['file_name'], fontsize=6)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        path = show(Path(args.data), args.split, Path(args.out), n=args.n, seed=args.seed, img_prefix=args.img_prefix)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from None
    print(f'wrote {path}')


if __name__ == '__main__':
    main(sys.argv[1:])
