"""Time every op of the table on one real-looking image: our cv2 kernel, mmdet's transform, our torch batch.

Usage::

    python benchmarks/bench_ops.py [--size 640] [--repeat 20] [--batch 32] [--stat min] [--quick]

For each op of :data:`det_autoaug.ops.table.OPS` at level 6 (detection convention,
``OpSpec.magnitude_at(6)``), on ``skimage.data.astronaut`` resized to ``size`` px with five boxes:

- ``ours_cpu_ms``: :func:`det_autoaug.ops.cv2_ops.apply_op_np` per image (validation, copy of
  the input, boxes projected and filtered included; params sampled beforehand; bbox-only ops
  with every box selected, an upper bound);
- ``mmdet_ms``: mmdet 3.3's own transform for the same op where one exists (``prob=1``,
  ``min_mag == max_mag`` = our magnitude in mmdet's unit), called on a prepared results dict
  (``img``, ``gt_bboxes`` as ``HorizontalBoxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``);
  note that mmdet's ``CutOut`` writes into the input image, while ours copies it first;
- ``torch_ms/img``: :func:`det_autoaug.ops.torch_ops.apply_op` on a uint8 batch of ``batch``
  copies on the CPU, divided by the batch size.

A last line times a two-op policy (Rotate then Color at level 6, params sampled per image,
included) per image on the cv2 path.

Targets (reported, never asserted; timings depend on the machine and its load):

- our CPU kernel <= 1.2x mmdet's transform of the same op;
- a two-op policy <= 5 ms per 640 px image on the CPU.

Each timing is the minimum (``--stat min``, default: the least disturbed by other processes on
a shared machine) or the median (``--stat median``) of ``repeat`` calls after one warm-up call
(the torch batch uses at most 3 calls). The per-image paths (ours and mmdet's) run
single-threaded, as in a DataLoader worker under mmengine (``torch.set_num_threads(1)``,
``cv2.setNumThreads(0)``); the torch batch uses torch's default thread count. (With both
thread pools active on a busy 2-core machine, the tiny torch ops on boxes in mmdet's
transforms waited a scheduler tick, ~16 ms, per call.)
``--quick`` (128 px, 3 repeats, batch 4) checks that the script runs.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from det_autoaug.ops.cv2_ops import apply_op_np  # noqa: E402
from det_autoaug.ops.params import sample_params  # noqa: E402
from det_autoaug.ops.table import OPS, OpSpec, get_op  # noqa: E402
from det_autoaug.ops.torch_ops import apply_op  # noqa: E402

LEVEL = 6
# Boxes as fractions of the image side (astronaut: face, flag, patch, arm, helmet area).
BOX_FRACTIONS = np.array([[0.33, 0.03, 0.55, 0.35], [0.0, 0.0, 0.2, 0.55], [0.55, 0.55, 0.98, 0.98],
                          [0.1, 0.6, 0.45, 0.95], [0.7, 0.05, 0.95, 0.3]], np.float32)


def make_image(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark image ``(size, size, 3)`` uint8 RGB and its ``(5, 4)`` boxes."""
    from skimage.data import astronaut
    image = cv2.resize(astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return image, BOX_FRACTIONS * size


STATS: Dict[str, Callable[[List[float]], float]] = {'min': min, 'median': statistics.median}


def time_ms(fn: Callable[..., object], repeat: int, stat: str = 'min',
            setup: Optional[Callable[[], object]] = None) -> float:
    """Wall time of ``fn`` in ms over ``repeat`` calls after a warm-up, reduced by ``STATS[stat]``.

    ``setup()``, when given, runs untimed before each call and its result is passed to ``fn``.
    """
    fn(*([setup()] if setup else []))
    times = []
    for _ in range(repeat):
        args = [setup()] if setup else []
        start = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - start) * 1e3)
    return STATS[stat](times)


@contextlib.contextmanager
def single_threaded():
    """torch and cv2 on one thread, as in a DataLoader worker under mmengine."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)


def mmdet_transform(spec: OpSpec, magnitude: float, size: int):
    """mmdet 3.3's transform doing the same as ``spec`` at ``magnitude``, or ``None``."""
    from mmdet.datasets import transforms as T

    def fixed(value: float) -> dict:
        return dict(prob=1.0, level=LEVEL, min_mag=float(value), max_mag=float(value))

    geometric = dict(reversal_prob=1.0)   # mmdet negates when rand > reversal_prob: never
    name = spec.name
    if name in ('FlipLR', 'FlipUD'):
        return T.RandomFlip(prob=1.0, direction='horizontal' if name == 'FlipLR' else 'vertical')
    if name in ('AutoContrast', 'Equalize', 'Invert'):
        return getattr(T, name)(prob=1.0)
    if name == 'Rotate':
        return T.Rotate(**fixed(magnitude), **geometric)
    if name in ('ShearX', 'ShearY'):   # mmdet's shear magnitude is an angle in degrees
        return getattr(T, name)(**fixed(math.degrees(math.atan(magnitude))), **geometric)
    if name in ('TranslateX', 'TranslateY'):   # a ratio of the image side, as ours
        return getattr(T, name)(**fixed(magnitude), **geometric)
    if name == 'Posterize':   # mmdet's magnitude is the number of bits kept
        return T.Posterize(**fixed(8 - round(magnitude)))
    if name == 'Solarize':    # mmdet's magnitude is the threshold
        return T.Solarize(**fixed(256.0 - magnitude))
    if name == 'SolarizeAdd':
        return T.SolarizeAdd(**fixed(magnitude))
    if name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):   # mmdet's magnitude is the factor
        return getattr(T, name)(**fixed(1.0 + magnitude))
    if name == 'Cutout':
        side = max(1, int(round(magnitude * size)))
        return T.CutOut(n_holes=1, cutout_shape=(side, side), fill_in=(128, 128, 128))
    return None


def mmdet_results(image: np.ndarray, boxes: np.ndarray) -> dict:
    """A fresh mmdet results dict (mmdet's transforms change it, CutOut even its image, in place)."""
    from mmdet.structures.bbox import HorizontalBoxes
    return dict(img=image.copy(), img_shape=image.shape[:2], ori_shape=image.shape[:2],
                gt_bboxes=HorizontalBoxes(torch.from_numpy(boxes.copy())),
                gt_bboxes_labels=np.zeros(len(boxes), np.int64), gt_ignore_flags=np.zeros(len(boxes), bool))


def bench(size: int, repeat: int, batch: int, stat: str = 'min') -> List[Dict[str, object]]:
    """One row per table op: ms per image of ours (cv2), mmdet's transform (or None) and our torch batch."""
    image, boxes = make_image(size)
    boxes_t = torch.from_numpy(boxes)
    images_t = torch.from_numpy(image).permute(2, 0, 1).contiguous()[None].repeat(batch, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    rows = []
    for spec in OPS:
        magnitude = spec.magnitude_at(LEVEL)
        params = sample_params(spec, 1, size, size, [boxes_t], generator=g, box_prob=1.0).select(0)
        transform = mmdet_transform(spec, magnitude, size)
        theirs = None
        with single_threaded():
            ours = time_ms(lambda: apply_op_np(spec.name, image, boxes, magnitude, params), repeat, stat)
            if transform is not None:
                theirs = time_ms(transform, repeat, stat, setup=lambda: mmdet_results(image, boxes))
        batch_params = sample_params(spec, batch, size, size, [boxes_t] * batch, generator=g, box_prob=1.0)
        torch_ms = time_ms(lambda: apply_op(spec.name, images_t, [boxes_t] * batch, magnitude, batch_params),
                           min(repeat, 3), stat) / batch
        rows.append(dict(op=spec.name, magnitude=magnitude, ours=ours, mmdet=theirs, torch=torch_ms))
    return rows


def bench_policy(size: int, repeat: int, stat: str = 'min') -> float:
    """ms per image of Rotate then Color at level 6 on the cv2 path, params sampled per image."""
    image, boxes = make_image(size)
    g = torch.Generator().manual_seed(1)
    ops = [(name, get_op(name).magnitude_at(LEVEL)) for name in ('Rotate', 'Color')]

    def policy():
        img, bxs = image, boxes
        for name, magnitude in ops:
            params = sample_params(name, 1, size, size, [torch.from_numpy(bxs)], generator=g)
            img, bxs, _ = apply_op_np(name, img, bxs, magnitude, params)
        return img, bxs
    with single_threaded():
        return time_ms(policy, repeat, stat)


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, default=640, help='image side in px (default 640)')
    parser.add_argument('--repeat', type=int, default=20, help='timed calls per measurement (default 20)')
    parser.add_argument('--batch', type=int, default=32, help='torch batch size (default 32)')
    parser.add_argument('--stat', choices=sorted(STATS), default='min',
                        help='statistic over the repeats (default min)')
    parser.add_argument('--quick', action='store_true', help='128 px, 3 repeats, batch 4: a smoke run')
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.repeat, args.batch = 128, 3, 4
    for name in ('size', 'repeat', 'batch'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be a positive integer, got {getattr(args, name)}')

    print(f'image {args.size}x{args.size} px, level {LEVEL}, repeat {args.repeat}, torch batch {args.batch}, '
          f'statistic {args.stat}, torch batch threads {torch.get_num_threads()}, per-image paths single-threaded')
    rows = bench(args.size, args.repeat, args.batch, args.stat)
    header = f'{"op":24s} {"magnitude":>9s} {"ours_cpu_ms":>11s} {"mmdet_ms":>9s} {"ours/mmdet":>10s} ' \
             f'{"torch_ms/img":>12s} {"torch/mmdet":>11s}'
    print(header)
    print('-' * len(header))
    for r in rows:
        ratio = r['ours'] / r['mmdet'] if r['mmdet'] else None
        t_ratio = r['torch'] / r['mmdet'] if r['mmdet'] else None
        print(f'{r["op"]:24s} {r["magnitude"]:9.3f} {r["ours"]:11.3f} {_fmt(r["mmdet"]):>9s} '
              f'{_fmt(ratio, 2):>10s} {r["torch"]:12.3f} {_fmt(t_ratio, 2):>11s}')
    compared = [r for r in rows if r['mmdet']]
    slower = [r['op'] for r in compared if r['ours'] > 1.2 * r['mmdet']]
    print(f'ops compared with mmdet: {len(compared)}; ours > 1.2x mmdet: {slower or "none"} (target: none)')
    policy = bench_policy(args.size, args.repeat, args.stat)
    print(f'two-op policy (Rotate then Color, level {LEVEL}) on the cv2 path: {policy:.3f} ms per '
          f'{args.size} px image (target <= 5 ms at 640 px)')


if __name__ == '__main__':
    main()
