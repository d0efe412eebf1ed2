#!/usr/bin/env python
"""Draw training samples next to their augmented versions, with boxes and labels, into a PNG.

Each augmented panel names the ops that ran on it (``Rotate(±12) + Color(0.4)``), or says
``no op applied``.

The target is one of:
- a config (``.py``): its training dataset and pipeline (with its PolicyAugment / DA<op>
  transforms), compared with the same pipeline without them. The config's own data is read
  (``--data DIR`` replaces its ``data_root``); when it is missing the tool stops with the path.
  Only the digits configs (``configs/digits/``) fall back to the embedded digits (built on first use);
- a policy: a published name (``autoaug_det_v0`` .. ``autoaug_det_v3``) or a policy file,
  applied with ``PolicyAugment`` to samples of the embedded digits dataset;
- ``--op NAME --level L`` (no target needed): one op of the table at one level, always applied.

Examples:
    python tools/browse_policy.py autoaug_det_v0 --out v0.png
    python tools/browse_policy.py configs/digits/retinanet_slim_digits_autoaug_v0.py --out cfg.png
    python tools/browse_policy.py --op Rotate --level 10 --out rotate.png
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
AUGMENT_PREFIXES = ('PolicyAugment', 'DA')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('target', nargs='?', default=None, help='config file, policy name or policy file')
    parser.add_argument('--out', required=True, help='PNG to write')
    parser.add_argument('--data', default=None,
                        help="a config's data_root, or the embedded dataset folder (default: the cache folder)")
    parser.add_argument('--n', type=int, default=12, help='number of samples (default 12)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the sample choice and the augmentation')
    parser.add_argument('--op', default=None, help='apply this single op (table name or TF alias)')
    parser.add_argument('--level', type=float, default=10.0, help='level of --op, 0..14 (default 10)')
    parser.add_argument('--split', default='train', choices=('train', 'val', 'test'), help='digits split')
    args = parser.parse_args(argv)
    if (args.target is None) == (args.op is None):
        parser.error('give exactly one of TARGET (config, policy name or file) and --op NAME')
    if args.n < 1:
        parser.error(f'--n {args.n}: expected a positive number')
    return args


def _is_augment(t: dict) -> bool:
    return str(t.get('type', '')).startswith(AUGMENT_PREFIXES)


def _without_pack(pipeline: List[dict]) -> List[dict]:
    return [copy.deepcopy(t) for t in pipeline if t.get('type') != 'PackDetInputs']


def digits_root(data: Optional[str]) -> Path:
    """``data`` when it already holds a COCO-style digits set, else the (built on first use) cache."""
    from det_autoaug.data.det_digits import ensure_det_digits
    if data is not None and (Path(data) / 'train.json').is_file():
        return Path(data)
    return ensure_det_digits(data)


def digits_dataset_cfg(data: Optional[str], split: str, pipeline: List[dict]) -> dict:
    from det_autoaug.data.det_digits import CLASSES
    root = digits_root(data)
    return dict(type='CocoDataset', data_root=str(root) + '/', ann_file=f'{split}.json',
                data_prefix=dict(img='images/'), metainfo=dict(classes=CLASSES),
                filter_cfg=dict(filter_empty_gt=False), pipeline=pipeline)


def _data_path(root: str, path: str) -> str:
    """``path`` as the dataset reads it: joined to ``data_root`` unless absolute (mmengine's rule)."""
    return path if not root or os.path.isabs(path) else os.path.join(root, path)


def resolve_config_data(dataset: dict, target: str, data: Optional[str]) -> dict:
    """``dataset`` (a config's training dataset) with its data located; exits naming a missing path.

    A digits config (the embedded set's classes '0'..'9') reads the digits cache, built on first
    use, when its ``data_root`` does not exist or ``data`` is given, as its base config documents.
    Any other config reads its own data, ``data`` replacing its ``data_root``: the annotation
    file and the image folder must exist.
    """
    from det_autoaug.data.det_digits import CLASSES
    if tuple((dataset.get('metainfo') or {}).get('classes', ())) == CLASSES:
        if data is not None or not Path(dataset.get('data_root') or '.').exists():
            dataset['data_root'] = str(digits_root(data)) + '/'
        return dataset
    if data is not None:
        dataset['data_root'] = str(Path(data)) + '/'
    root = str(dataset.get('data_root') or '')
    wanted = [(_data_path(root, str(dataset.get('ann_file') or '')), 'annotation file', os.path.isfile),
              (_data_path(root, str((dataset.get('data_prefix') or {}).get('img', ''))), 'image folder', os.path.isdir)]
    for path, what, exists in wanted:
        if '://' not in path and not exists(path):  # remote storage is not checked
            raise SystemExit(f'{target}: the training data is missing: the {what} {path} does not exist '
                             f'(data_root={root!r}). Put the dataset there or pass --data DIR, the folder that holds '
                             f'{dataset.get("ann_file")!r} and the images; to see a policy on the embedded digits '
                             'instead: browse_policy.py POLICY_NAME_OR_FILE --out PNG')
    return dataset


def build_pair(args: argparse.Namespace) -> Tuple[dict, dict, str]:
    """Dataset configs ``(clean, augmented)`` and a title."""
    load = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)]
    if args.op is not None:
        from det_autoaug.mmdet_plugins.transforms import PREFIX
        from det_autoaug.ops.table import get_op
        name = get_op(args.op).name
        aug = dict(type=PREFIX + name, level=args.level, prob=1.0)
        return (digits_dataset_cfg(args.data, args.split, load),
                digits_dataset_cfg(args.data, args.split, load + [aug]), f'{name} at level {args.level:g}')
    target = args.target
    if target.endswith('.py'):
        from mmengine.config import Config
        if not Path(target).is_file():
            raise SystemExit(f'config {target} does not exist')
        cfg = Config.fromfile(target)
        dataset = copy.deepcopy(cfg.train_dataloader.dataset)
        if 'pipeline' not in dataset:
            raise SystemExit(f'{target}: train_dataloader.dataset ({dataset.get("type")}) has no pipeline: '
                             'browse_policy reads the pipeline of a plain dataset, not of a dataset wrapper')
        dataset = resolve_config_data(dataset, target, args.data)
        pipeline = _without_pack(dataset.pop('pipeline'))
        if not any(_is_augment(t) for t in pipeline):
            raise SystemExit(f'{target}: the training pipeline has no PolicyAugment or DA<op> transform')
        dataset.pop('filter_cfg', None)
        clean = dict(dataset, pipeline=[t for t in pipeline if not _is_augment(t)])
        return clean, dict(dataset, pipeline=pipeline), f'{Path(target).name}'
    aug = dict(type='PolicyAugment', policy=target)
    return (digits_dataset_cfg(args.data, args.split, load),
            digits_dataset_cfg(args.data, args.split, load + [aug]), f'policy {target}')


def _draw(ax, image_bgr: np.ndarray, boxes: np.ndarray, labels: np.ndarray, classes: Sequence[str],
          title: str) -> None:
    from matplotlib.patches import Rectangle
    ax.imshow(image_bgr[:, :, ::-1])
    for (x1, y1, x2, y2), label in zip(boxes, labels):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor='lime', linewidth=1.2))
        ax.text(x1, y1, str(classes[int(label)]), color='black', fontsize=7, va='bottom',
                bbox=dict(facecolor='lime', edgecolor='none', pad=0.5))
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


@contextmanager
def recording_applied_ops() -> Iterator[list]:
    """The steps that run while det_autoaug's transforms (PolicyAugment, DA<op>) augment, in order.

    Those transforms apply their chains through ``run_chain_np`` of their module; inside the block
    that name is :func:`det_autoaug.policy.run_chain_traced` (the same draws and result), which
    also says which steps ran.
    """
    from det_autoaug.mmdet_plugins import transforms
    from det_autoaug.policy import run_chain_traced
    applied: list = []
    original = transforms.run_chain_np

    def traced(*args, **kwargs):
        *result, steps = run_chain_traced(*args, **kwargs)
        applied.extend(steps)
        return tuple(result)

    transforms.run_chain_np = traced
    try:
        yield applied
    finally:
        transforms.run_chain_np = original


def _results(dataset, index: int, seed: int) -> dict:
    # Transforms seed their generator from numpy's global one: same seed, same augmentation.
    np.random.seed(seed)
    import random
    random.seed(seed)
    out = dataset[index]
    boxes = out['gt_bboxes']
    boxes = boxes.tensor.numpy() if hasattr(boxes, 'tensor') else np.asarray(boxes)
    return dict(img=out['img'], boxes=boxes.reshape(-1, 4), labels=np.asarray(out['gt_bboxes_labels']))


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    import det_autoaug.mmdet_plugins  # noqa: F401  (registers PolicyAugment and the DA<op> transforms)
    from det_autoaug.policy import describe_steps
    register_all_modules(init_default_scope=True)

    clean_cfg, aug_cfg, title = build_pair(args)
    clean_cfg['pipeline'] = _without_pack(clean_cfg['pipeline'])
    aug_cfg['pipeline'] = _without_pack(aug_cfg['pipeline'])
    clean, augmented = DATASETS.build(clean_cfg), DATASETS.build(aug_cfg)
    classes = clean.metainfo['classes']
    rng = np.random.default_rng(args.seed)
    indices = rng.choice(len(clean), size=min(args.n, len(clean)), replace=False)

    pairs_per_row = 3
    rows = math.ceil(len(indices) / pairs_per_row)
    fig, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(2.2 * 2 * pairs_per_row, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, index in enumerate(indices):
        seed = args.seed * 100003 + k
        before = _results(clean, int(index), seed)
        with recording_applied_ops() as applied:
            after = _results(augmented, int(index), seed)
        row, col = divmod(k, pairs_per_row)
        _draw(axes[row, 2 * col], before['img'], before['boxes'], before['labels'], classes, f'#{index} original')
        _draw(axes[row, 2 * col + 1], after['img'], after['boxes'], after['labels'], classes,
              '\n'.join(textwrap.wrap(describe_steps(applied), 34, break_long_words=False)
                        + [f'({len(after["boxes"])}/{len(before["boxes"])} boxes kept)']))
    fig.suptitle(f'{title} (seed {args.seed}): each original, then the ops that ran on it', fontsize=10)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f'wrote {out} ({len(indices)} samples)')


if __name__ == '__main__':
    main()
