"""Time every op of the table on one real-looking image: our cv2 kernel, mmdet's transform, our torch batch.

Usage::

    python benchmarks/bench_ops.py [--size 640] [--repeat 20] [--batch 32] [--stat min] [--quick]
    python benchmarks/bench_ops.py --many-boxes-only [--many-boxes 300] [--many-size 800]

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
  copies on the CPU, divided by the batch size;
- the fair comparison (issue 16): mmdet's transforms may return a view (flips) or write into
  their input (CutOut), ours return a new contiguous image; mmdet's own ``PackDetInputs`` ends
  every pipeline and copies a non-contiguous image once anyway. ``mmdet+pack`` is mmdet's
  transform then ``PackDetInputs``; ``ours+pack`` is ours on the same results dict (boxes read
  from it, the image, kept boxes as ``HorizontalBoxes``, labels and flags written back, as
  :mod:`det_autoaug.mmdet_plugins.transforms` does) then the same ``PackDetInputs``;
  ``fair`` is their ratio. Both start from a fresh results dict made untimed. A line after the
  table times ``PackDetInputs`` alone on a contiguous image and on a flipped view (measured on a
  loaded 2-core machine, one thread: ~0.68 vs ~0.35 ms at 640 px, its torch ``permute`` copy of
  a contiguous image being the slower branch), which accounts for most of the ``fair`` gap of
  the flips, whose mmdet transform returns a view.

A last line times a two-op policy (Rotate then Color at level 6, params sampled per image,
included) per image on the cv2 path.

A last table times the bbox-only ops with many boxes (issue 15 item 5): ``--many-boxes`` boxes
(default 300) on the image resized to ``--many-size`` px (default 800), centres uniform, sides
log-uniform in [8, 128] px (more small boxes than large, as in detection data), every box
selected, level 6, single-threaded: the cv2 kernel and the torch kernel on a uint8 batch of one
(validation and the float round trip included), their calls interleaved so that all see the
same load, and the ratio torch / cv2. On the CPU without a gradient the torch kernel of the warps
(Rotate, ShearX/Y, TranslateX/Y, Flip) runs as one compiled loop
(:mod:`det_autoaug.ops.box_warp_numba`); ``layout_ms`` is the same call on the batched torch layout
alone (what runs with a gradient or on a GPU), the control. Then, for scale, the torch path with
no op (``Identity``) and ``grid_sample`` alone on exactly the boxes' pixels (the torch layout's
sampling without padding, copies or grid), each in a loop of its own. ``--many-boxes-only`` runs
only that table.

Targets (reported, never asserted; timings depend on the machine and its load):

- our CPU kernel <= 1.2x mmdet's transform of the same op (alone, and followed by ``PackDetInputs``);
- a two-op policy <= 5 ms per 640 px image on the CPU;
- bbox-only ops with 300 boxes at 800 px: torch <= 2x the cv2 kernel.

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
import functools
import math
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from det_autoaug.ops import box_warp_numba  # noqa: E402
from det_autoaug.ops.cv2_ops import apply_op_np  # noqa: E402
from det_autoaug.ops.params import sample_params  # noqa: E402
from det_autoaug.ops.registry import kernels  # noqa: E402
from det_autoaug.ops.table import OPS, OpSpec, get_op  # noqa: E402
from det_autoaug.ops.torch_ops import apply_op  # noqa: E402

LEVEL = 6
# The bbox-only ops that warp each box (their torch kernel runs a compiled loop on the CPU).
WARPS = frozenset(kernels('box_matrix'))
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
    """mmdet 3.3's transform doing the same as ``spec`` at ``magnitude`` (the table's
    ``OpSpec.mmdet`` converter, always applied and never reversed), or ``None``."""
    from mmdet.datasets import transforms as T

    config = spec.mmdet(magnitude) if spec.mmdet is not None else None
    if config is None:
        return None
    config = dict(config)
    transform = getattr(T, config.pop('type'))
    if 'cutout_ratio' in config:   # CutOut has no prob; a square of side m * size, as ours
        side = max(1, int(round(magnitude * size)))
        config.pop('cutout_ratio')
        return transform(cutout_shape=(side, side), **config)
    config['prob'] = 1.0
    if 'min_mag' in config:
        config['level'] = LEVEL
    if 'reversal_prob' in config:   # mmdet negates when rand > reversal_prob: never
        config['reversal_prob'] = 1.0
    return transform(**config)


def mmdet_results(image: np.ndarray, boxes: np.ndarray) -> dict:
    """A fresh mmdet results dict (mmdet's transforms change it, CutOut even its image, in place)."""
    from mmdet.structures.bbox import HorizontalBoxes
    return dict(img=image.copy(), img_shape=image.shape[:2], ori_shape=image.shape[:2],
                gt_bboxes=HorizontalBoxes(torch.from_numpy(boxes.copy())),
                gt_bboxes_labels=np.zeros(len(boxes), np.int64), gt_ignore_flags=np.zeros(len(boxes), bool))


def ours_in_results(op: str, magnitude: float, params) -> Callable[[dict], dict]:
    """Our cv2 kernel as a step on an mmdet results dict (the glue of
    :mod:`det_autoaug.mmdet_plugins.transforms`, without its policy sampling)."""
    from mmdet.structures.bbox import HorizontalBoxes

    def step(results: dict) -> dict:
        out, kept, keep = apply_op_np(op, results['img'], results['gt_bboxes'].numpy(), magnitude, params)
        results['img'] = out
        results['gt_bboxes'] = HorizontalBoxes(torch.from_numpy(kept))
        if not keep.all():
            for key in ('gt_bboxes_labels', 'gt_ignore_flags'):
                results[key] = results[key][keep]
        return results
    return step


def bench(size: int, repeat: int, batch: int, stat: str = 'min') -> List[Dict[str, object]]:
    """One row per table op: ms per image of ours (cv2), mmdet's transform (or None), both followed
    by mmdet's ``PackDetInputs`` (or None), and our torch batch."""
    from mmdet.datasets.transforms import PackDetInputs

    pack = PackDetInputs()
    image, boxes = make_image(size)
    boxes_t = torch.from_numpy(boxes)
    images_t = torch.from_numpy(image).permute(2, 0, 1).contiguous()[None].repeat(batch, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    rows = []
    for spec in OPS:
        magnitude = spec.magnitude_at(LEVEL)
        params = sample_params(spec, 1, size, size, [boxes_t], generator=g, box_prob=1.0).select(0)
        transform = mmdet_transform(spec, magnitude, size)
        theirs = ours_packed = theirs_packed = None
        with single_threaded():
            ours = time_ms(lambda: apply_op_np(spec.name, image, boxes, magnitude, params), repeat, stat)
            if transform is not None:
                fresh = functools.partial(mmdet_results, image, boxes)
                step = ours_in_results(spec.name, magnitude, params)
                theirs = time_ms(transform, repeat, stat, setup=fresh)
                ours_packed = time_ms(lambda r: pack(step(r)), repeat, stat, setup=fresh)
                theirs_packed = time_ms(lambda r: pack(transform(r)), repeat, stat, setup=fresh)
        batch_params = sample_params(spec, batch, size, size, [boxes_t] * batch, generator=g, box_prob=1.0)
        torch_ms = time_ms(lambda: apply_op(spec.name, images_t, [boxes_t] * batch, magnitude, batch_params),
                           min(repeat, 3), stat) / batch
        rows.append(dict(op=spec.name, magnitude=magnitude, ours=ours, mmdet=theirs, torch=torch_ms,
                         ours_packed=ours_packed, mmdet_packed=theirs_packed))
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


def bench_pack(size: int, repeat: int, stat: str = 'min') -> tuple[float, float]:
    """ms of mmdet's ``PackDetInputs`` on the benchmark image, contiguous and as a flipped view:
    its two branches copy differently, which the ``+pack`` columns include."""
    from mmdet.datasets.transforms import PackDetInputs

    pack = PackDetInputs()
    image, boxes = make_image(size)

    def results(img: np.ndarray) -> dict:
        return dict(mmdet_results(image, boxes), img=img)
    with single_threaded():
        return (time_ms(pack, repeat, stat, setup=lambda: results(image.copy())),
                time_ms(pack, repeat, stat, setup=lambda: results(image.copy()[:, ::-1])))


def many_boxes(size: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark image at ``size`` px with ``count`` boxes: centres uniform, sides log-uniform
    in [8, 128] px, clipped to the image."""
    image, _ = make_image(size)
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (count, 2))
    sides = np.exp(rng.uniform(math.log(8), math.log(128), (count, 2)))
    boxes = np.clip(np.concatenate([centres - sides / 2, centres + sides / 2], axis=1), 0, size)
    return image, boxes.astype(np.float32)


def bench_many_boxes(size: int, count: int, repeat: int, stat: str = 'min') -> List[Dict[str, object]]:
    """One row per bbox-only op: ms of the cv2 kernel and of the torch kernel (batch of one), single-threaded."""
    image, boxes = many_boxes(size, count)
    boxes_t = torch.from_numpy(boxes)
    image_t = torch.from_numpy(image).permute(2, 0, 1).contiguous()[None]
    g = torch.Generator().manual_seed(0)
    rows = []
    for spec in (op for op in OPS if op.bbox_only):
        magnitude = spec.magnitude_at(LEVEL)
        params = sample_params(spec, 1, size, size, [boxes_t], generator=g, box_prob=1.0)
        calls = {'cv2': lambda: apply_op_np(spec.name, image, boxes, magnitude, params.select(0)),
                 'torch': lambda: apply_op(spec.name, image_t, [boxes_t], magnitude, params)}
        if spec.name in WARPS:   # the control: the torch layout alone, as with a gradient or on a GPU
            calls['layout'] = lambda: torch_layout(apply_op, spec.name, image_t, [boxes_t], magnitude, params)
        times: Dict[str, List[float]] = {name: [] for name in calls}
        with single_threaded():
            for fn in calls.values():   # warm-up
                fn()
            for _ in range(repeat):    # interleaved: both kernels see the same load
                for name, fn in calls.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - start) * 1e3)
        rows.append({name: STATS[stat](t) for name, t in times.items()} | {'op': spec.name})
    return rows


def torch_layout(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` with the bbox-only warps on the torch layout (their compiled loop off)."""
    with box_warp_numba.switched(False):
        return fn(*args)


def print_many_boxes(size: int, count: int, repeat: int, stat: str) -> None:
    print(f'\nbbox-only ops, {count} boxes (sides 8-128 px, log-uniform, all selected) on a {size} px image, '
          f'level {LEVEL}, single-threaded, {stat} of {repeat}')
    header = f'{"op":24s} {"cv2_ms":>9s} {"torch_ms":>9s} {"torch/cv2":>9s} {"layout_ms":>9s} {"layout/cv2":>10s}'
    print(header)
    print('-' * len(header))
    rows = bench_many_boxes(size, count, repeat, stat)
    for r in rows:
        layout = (f' {r["layout"]:9.2f} {r["layout"] / r["cv2"]:10.2f}' if 'layout' in r else '')
        print(f'{r["op"]:24s} {r["cv2"]:9.2f} {r["torch"]:9.2f} {r["torch"] / r["cv2"]:9.2f}{layout}')
    over = [r['op'] for r in rows if r['torch'] > 2 * r['cv2']]
    print(f'torch > 2x cv2: {over or "none"} (target: none)')
    image, boxes = many_boxes(size, count)
    image_t = torch.from_numpy(image).permute(2, 0, 1).contiguous()[None]
    canvas, grid = box_pixel_grid(image_t, boxes)
    with single_threaded():
        floor = time_ms(lambda: apply_op('Identity', image_t, None, 0.0), repeat, stat)
        sampling = time_ms(lambda: F.grid_sample(canvas, grid, mode='bilinear', padding_mode='zeros',
                                                 align_corners=False), repeat, stat)
    print(f'for scale: the torch path on this image with no op (Identity: checks, uint8 -> float -> uint8) '
          f'takes {floor:.2f} ms; grid_sample alone on exactly the {grid.shape[2]} box pixels (bilinear, '
          f'{image_t.shape[1]} channels, one call: the warps\' sampling, without padding, copies or grid) '
          f'{sampling:.2f} ms')


def box_pixel_grid(image: torch.Tensor, boxes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` as float and a ``(1, 1, P, 2)`` grid for ``grid_sample``: one point per pixel of
    each box (the pixels whose centre lies in it, box by box), moved by (0.3, 0.2) px so that every
    sample interpolates."""
    _, _, height, width = image.shape
    points = []
    for x1, y1, x2, y2 in boxes.tolist():
        cols = np.arange(max(0, math.ceil(x1 - 0.5)), min(width, math.ceil(x2 - 0.5)))
        rows = np.arange(max(0, math.ceil(y1 - 0.5)), min(height, math.ceil(y2 - 0.5)))
        ys, xs = np.meshgrid(rows, cols, indexing='ij')
        points.append(np.stack([xs.ravel() + 0.3, ys.ravel() + 0.2], axis=1))
    xy = np.concatenate(points)
    normalised = (2 * xy + 1) / np.array([width, height]) - 1   # align_corners=False
    return image.float(), torch.from_numpy(normalised).float().view(1, 1, -1, 2)


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, default=640, help='image side in px (default 640)')
    parser.add_argument('--repeat', type=int, default=20, help='timed calls per measurement (default 20)')
    parser.add_argument('--batch', type=int, default=32, help='torch batch size (default 32)')
    parser.add_argument('--stat', choices=sorted(STATS), default='min',
                        help='statistic over the repeats (default min)')
    parser.add_argument('--many-boxes', type=int, default=300, help='boxes of the bbox-only table (default 300)')
    parser.add_argument('--many-size', type=int, default=800, help='image side of the bbox-only table (default 800)')
    parser.add_argument('--many-boxes-only', action='store_true', help='run only the bbox-only table')
    parser.add_argument('--quick', action='store_true',
                        help='128 px, 3 repeats, batch 4, 30 boxes at 128 px: a smoke run')
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.repeat, args.batch, args.many_boxes, args.many_size = 128, 3, 4, 30, 128
    for name in ('size', 'repeat', 'batch', 'many_boxes', 'many_size'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be a positive integer, got {getattr(args, name)}')
    if args.many_boxes_only:
        print_many_boxes(args.many_size, args.many_boxes, args.repeat, args.stat)
        return

    print(f'image {args.size}x{args.size} px, level {LEVEL}, repeat {args.repeat}, torch batch {args.batch}, '
          f'statistic {args.stat}, torch batch threads {torch.get_num_threads()}, per-image paths single-threaded')
    rows = bench(args.size, args.repeat, args.batch, args.stat)
    header = f'{"op":24s} {"magnitude":>9s} {"ours_cpu_ms":>11s} {"mmdet_ms":>9s} {"ours/mmdet":>10s} ' \
             f'{"torch_ms/img":>12s} {"torch/mmdet":>11s} {"ours+pack":>9s} {"mmdet+pack":>10s} {"fair":>5s}'
    print(header)
    print('-' * len(header))
    for r in rows:
        ratio = r['ours'] / r['mmdet'] if r['mmdet'] else None
        t_ratio = r['torch'] / r['mmdet'] if r['mmdet'] else None
        fair = r['ours_packed'] / r['mmdet_packed'] if r['mmdet_packed'] else None
        print(f'{r["op"]:24s} {r["magnitude"]:9.3f} {r["ours"]:11.3f} {_fmt(r["mmdet"]):>9s} '
              f'{_fmt(ratio, 2):>10s} {r["torch"]:12.3f} {_fmt(t_ratio, 2):>11s} '
              f'{_fmt(r["ours_packed"]):>9s} {_fmt(r["mmdet_packed"]):>10s} {_fmt(fair, 2):>5s}')
    compared = [r for r in rows if r['mmdet']]
    slower = [r['op'] for r in compared if r['ours'] > 1.2 * r['mmdet']]
    slower_packed = [r['op'] for r in compared if r['ours_packed'] > 1.2 * r['mmdet_packed']]
    print(f'ops compared with mmdet: {len(compared)}; ours > 1.2x mmdet: {slower or "none"}; '
          f'with PackDetInputs: {slower_packed or "none"} (target: none)')
    contiguous, view = bench_pack(args.size, args.repeat, args.stat)
    print(f'for scale: PackDetInputs on this image takes {contiguous:.3f} ms when it is contiguous (torch '
          f'permute copy) and {view:.3f} ms when it is a flipped view (numpy transpose copy)')
    policy = bench_policy(args.size, args.repeat, args.stat)
    print(f'two-op policy (Rotate then Color, level {LEVEL}) on the cv2 path: {policy:.3f} ms per '
          f'{args.size} px image (target <= 5 ms at 640 px)')
    print_many_boxes(args.many_size, args.many_boxes, args.repeat, args.stat)


if __name__ == '__main__':
    main()
