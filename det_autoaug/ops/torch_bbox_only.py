"""Batched region kernels: the cutouts and the ops that act only inside boxes.

A pixel belongs to a rectangle ``[x1, x2) x [y1, y2)`` when its centre ``(j + 0.5, i + 0.5)``
does, so an empty rectangle (magnitude 0, degenerate box) covers no pixel. Boxes never move.

Bbox-only ops follow the TensorFlow reference: each selected box is processed in index order
(a later box sees what an earlier overlapping one wrote), the op sees the box content with
everything outside the box replaced by the fill value 128, and the result is pasted back inside
the box only.

:func:`bbox_crops` computes exactly that on the boxes' crops, batched over the boxes of every
image (one full-image pass per box cost seconds for hundreds of boxes on an 800 px image). A box
reads and writes only its own pixels, so it waits only for the earlier boxes it overlaps: the
boxes run in levels (:func:`_levels`; a box's level is one more than that of the last earlier box
it overlaps), and the boxes of a level, pairwise disjoint, go through the op together, padded to
a common crop size in a few groups of similar sizes (:func:`_groups`), and are pasted back.
Cutout_Only_BBoxes, whose fills commute, fills its rectangles in any order (one strided fill
each); Solarize_Only_BBoxes, pointwise, needs only how many boxes cover each pixel
(:func:`solarize_only_bboxes`). The warps
sample each crop in its own pixel coordinates with exact normalisation (:func:`_warp_crops`),
so a box's result never depends on the other boxes or images of the batch. A warp that moves
the sample points of some of a box's pixels out of the box (a large translation moves most
small boxes out entirely) gives them exactly the fill value: only the part of the box that can
differ is sampled (:func:`_live_rects`), the rest is filled; a box left with no such part is
only filled, and such boxes, whose fills commute, do not wait for each other (:func:`_levels`).

On the CPU, when no gradient is asked, the warps skip this layout: the same definition runs as one
loop compiled by numba, box after box (:mod:`.box_warp_numba`): at 300 boxes on an 800 px image
the rotations, shears and flip take about 1.7x the cv2 kernel's time that way, about 4x on this
layout.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import box_warp_numba, geometry
from .params import OpParams
from .registry import get_kernel
from .table import FILL_VALUE

#: ``(box (K, 4), magnitude (K,), sign (K,), height, width) -> (K, 3, 3)``: a box's matrix.
BoxMatrixFn = Callable[[Tensor, Tensor, Tensor, int, int], Tensor]
#: ``(crops, magnitude (K,), inside) -> crops``: a pixel op on row-major box crops.
CropFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def pad_boxes(boxes: List[Tensor], flags: List[Tensor], device: torch.device,
              dtype: torch.dtype, cols: int = 4) -> Tuple[Tensor, Tensor]:
    """Stack ragged per-image boxes.

    Args:
        boxes: ``B`` tensors ``(N_i, cols)``.
        flags: ``B`` bool tensors ``(N_i,)`` (which boxes take part).
        device: target device.
        dtype: target float dtype.
        cols: row length (4 for boxes, 2 for box centres).

    Returns:
        ``(padded, selected)``: ``(B, N, cols)`` boxes (zeros as padding) and ``(B, N)`` bool, with
        ``N = max N_i`` (at least 1, so callers can index column 0).
    """
    n = max([1] + [int(b.shape[0]) for b in boxes])
    padded = torch.zeros(len(boxes), n, cols, dtype=dtype, device=device)
    selected = torch.zeros(len(boxes), n, dtype=torch.bool, device=device)
    for i, (b, f) in enumerate(zip(boxes, flags)):
        padded[i, :b.shape[0]] = b.to(device=device, dtype=dtype)
        selected[i, :b.shape[0]] = f.to(device)
    return padded, selected


def rect_mask(x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, height: int, width: int) -> Tensor:
    """Pixels whose centre lies in ``[x1, x2) x [y1, y2)``.

    Shape:
        ``(B,)`` each -> ``(B, 1, H, W)`` bool.
    """
    xs = torch.arange(width, device=x1.device, dtype=x1.dtype) + 0.5
    ys = torch.arange(height, device=x1.device, dtype=x1.dtype) + 0.5
    in_x = (xs >= x1[:, None]) & (xs < x2[:, None])
    in_y = (ys >= y1[:, None]) & (ys < y2[:, None])
    return (in_y[:, :, None] & in_x[:, None, :])[:, None]


def _centred(cx: Tensor, cy: Tensor, half_w: Tensor, half_h: Tensor, height: int, width: int) -> Tensor:
    return rect_mask(cx - half_w, cy - half_h, cx + half_w, cy + half_h, height, width)


def cutout(images: Tensor, magnitude: Tensor, center: Tensor) -> Tensor:
    """Fill a square of side ``m * min(H, W)`` centred at ``center * (W, H)`` with 128.

    Shape:
        ``images`` ``(B, C, H, W)``, ``magnitude`` ``(B,)``, ``center`` ``(B, 2)``. Identity at 0.
    """
    height, width = images.shape[-2:]
    m = magnitude.detach().to(images.dtype)
    c = center.to(images.dtype)
    half = m * min(height, width) / 2
    mask = _centred(c[:, 0] * width, c[:, 1] * height, half, half, height, width)
    return images.masked_fill(mask, FILL_VALUE)


def bbox_cutout(images: Tensor, magnitude: Tensor, center: Tensor, box_index: Tensor,
                boxes: List[Tensor]) -> Tensor:
    """Fill a rectangle centred at ``(x1 + cx * w, y1 + cy * h)`` of the chosen box, half sizes
    ``m * w / 2`` and ``m * h / 2``, with 128; images whose ``box_index`` is -1 are unchanged.

    Shape:
        ``images`` ``(B, C, H, W)``, ``magnitude`` ``(B,)``, ``center`` ``(B, 2)``,
        ``box_index`` ``(B,)``. Identity at 0.
    """
    height, width = images.shape[-2:]
    flags = [torch.ones(b.shape[0], dtype=torch.bool) for b in boxes]
    padded, _ = pad_boxes(boxes, flags, images.device, images.dtype)
    chosen = padded.gather(1, box_index.clamp(min=0).view(-1, 1, 1).expand(-1, 1, 4)).squeeze(1)
    x1, y1, x2, y2 = chosen.unbind(-1)
    w, h = x2 - x1, y2 - y1
    m = magnitude.detach().to(images.dtype)
    c = center.to(images.dtype)
    mask = _centred(x1 + c[:, 0] * w, y1 + c[:, 1] * h, m * w / 2, m * h / 2, height, width)
    mask = mask & (box_index >= 0).view(-1, 1, 1, 1)
    return images.masked_fill(mask, FILL_VALUE)


def _about(point_x: Tensor, point_y: Tensor, matrix: Tensor) -> Tensor:
    """``T(p) @ matrix @ T(-p)``: ``matrix`` applied about the point ``p``."""
    return geometry.translate_matrix(point_x, point_y) @ matrix @ geometry.translate_matrix(-point_x, -point_y)


def box_matrix(name: str, box: Tensor, magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """Continuous-coordinate matrix of a geometric bbox-only op for one box per image (the op's
    ``'box_matrix'`` kernel, :mod:`.regions`).

    Shape:
        ``box`` ``(B, 4)``, ``magnitude`` and ``sign`` ``(B,)`` -> ``(B, 3, 3)``.
    """
    return get_kernel(name, 'box_matrix')(box, magnitude, sign, height, width)


def about_centre(box: Tensor, matrix: Tensor) -> Tensor:
    """``matrix`` ``(B, 3, 3)`` applied about the centre of ``box`` ``(B, 4)``."""
    x1, y1, x2, y2 = box.to(matrix.dtype).unbind(-1)
    return _about((x1 + x2) / 2, (y1 + y2) / 2, matrix)


def about_corner(box: Tensor, matrix: Tensor) -> Tensor:
    """``matrix`` ``(B, 3, 3)`` applied about the top-left corner of ``box`` ``(B, 4)``."""
    x1, y1, _, _ = box.to(matrix.dtype).unbind(-1)
    return _about(x1, y1, matrix)


# Crops of different sizes share a padded batch while the padding stays under this fraction of
# their pixels plus this many pixels (one more batch costs about as much as that padding).
_PAD_FACTOR = 1.0
_PAD_SLACK = 16384


def _spans(x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, height: int, width: int) -> Tensor:
    """Pixel index ranges ``[r0, r1) x [c0, c1)`` of :func:`rect_mask`.

    The centre ``j + 0.5`` is at least ``lo`` exactly when ``j >= ceil(lo - 0.5)`` (``lo - 0.5``
    is exact in float for ``|lo| < 2^22``, far beyond any image side after the clamp), and below
    ``hi`` when ``j < ceil(hi - 0.5)``: the same pixels as the comparisons, without a ``(K, W)``
    tensor.

    Shape:
        ``(K,)`` each -> ``(K, 4)`` long ``(r0, r1, c0, c1)``; an empty rectangle has ``r1 == r0``
        or ``c1 == c0``.
    """
    spans = []
    for lo, hi, size in ((y1, y2, height), (x1, x2, width)):
        start = (lo - 0.5).ceil().clamp(0, size).long()
        stop = (hi - 0.5).ceil().clamp(0, size).long()
        spans += [start, torch.maximum(start, stop)]
    return torch.stack(spans, dim=1)


def _coverage(image: Tensor, spans: Tensor, batch: int, height: int, width: int) -> Tensor:
    """How many of the rectangles cover each pixel (their union is where it is positive).

    Row by row: +1 where a rectangle starts, -1 where it stops, summed along the row.

    Shape:
        ``image`` ``(K,)`` image index, ``spans`` ``(K, 4)`` ``(r0, r1, c0, c1)`` (empty ones
        allowed) -> ``(B, 1, H, W)`` int32.
    """
    device = spans.device
    r0, r1, c0, c1 = spans.unbind(1)
    rows = (r1 - r0).clamp(min=0)
    owner = torch.repeat_interleave(torch.arange(len(rows), device=device), rows)
    row = r0[owner] + torch.arange(len(owner), device=device) - (rows.cumsum(0) - rows)[owner]
    edges = torch.zeros(batch, height, width + 1, dtype=torch.int32, device=device)
    ones = torch.ones_like(owner, dtype=torch.int32)
    edges.index_put_((image[owner], row, c0[owner]), ones, accumulate=True)
    edges.index_put_((image[owner], row, torch.maximum(c1, c0)[owner]), -ones, accumulate=True)
    return edges.cumsum(2, dtype=torch.int32)[:, None, :, :width]


def _levels(image: np.ndarray, spans: np.ndarray, fills: Optional[np.ndarray] = None) -> np.ndarray:
    """Schedule the box-by-box order in rounds of disjoint boxes.

    A box reads and writes only its own pixels, so it depends only on the earlier boxes of its
    image that share a pixel with it: its level is one more than the highest of theirs (0 if
    none). The boxes of a level are pairwise disjoint, so running the levels in order, each in
    one batch, gives exactly the box-by-box result. Boxes that only write the fill value over
    their whole span (``fills``) commute with each other: two of them never depend on each
    other (the boxes of a level are then disjoint except for such pairs).

    Shape:
        ``image`` ``(K,)`` image index, ``spans`` ``(K, 4)`` non-empty ``(r0, r1, c0, c1)``, in
        box order within each image, ``fills`` ``(K,)`` bool or ``None`` -> ``(K,)`` levels.
    """
    levels = np.zeros(len(image), np.int64)
    for i in np.unique(image):
        rows = np.flatnonzero(image == i)
        r0, r1, c0, c1 = spans[rows].T
        overlap = ((r0[:, None] < r1[None]) & (r0[None] < r1[:, None])
                   & (c0[:, None] < c1[None]) & (c0[None] < c1[:, None]))
        if fills is not None:
            overlap &= ~(fills[rows, None] & fills[None, rows])
        own = np.zeros(len(rows), np.int64)
        for k in np.flatnonzero(np.tril(overlap, -1).any(axis=1)):
            own[k] = own[:k][overlap[k, :k]].max() + 1
        levels[rows] = own
    return levels


def _groups(sizes: np.ndarray) -> List[np.ndarray]:
    """Split crops of ``sizes`` ``(K, 2)`` into batches padded to their largest height and width.

    Tallest first; a batch grows while its padding stays under ``_PAD_FACTOR`` times its crops'
    pixels plus ``_PAD_SLACK`` pixels. Crops laid out in one row pass ``(area, 1)``.
    """
    groups, current, max_h, max_w, area = [], [], 0, 0, 0
    for k in np.lexsort((-sizes[:, 1], -sizes[:, 0])).tolist():
        h, w = int(sizes[k, 0]), int(sizes[k, 1])
        padded = (len(current) + 1) * max(max_h, h) * max(max_w, w)
        if current and padded - (area + h * w) > _PAD_FACTOR * (area + h * w) + _PAD_SLACK:
            groups.append(np.array(current))
            current, max_h, max_w, area = [], 0, 0, 0
        current.append(k)
        max_h, max_w, area = max(max_h, h), max(max_w, w), area + h * w
    if current:
        groups.append(np.array(current))
    return groups


def _warp_crops(crops: Tensor, inverse: Tensor, out_size: Tuple[int, int], quantum: float,
                origin: Optional[Tensor] = None) -> Tensor:
    """Bilinear warp of crops whose outside reads as the fill value (as :func:`.torch_geometric.warp`).

    ``grid_sample`` maps its normalised grid back to pixels with the canvas size, which would
    round each crop's sample points differently depending on the canvas it shares with other
    crops. Here the canvas sides are ``2^p + 1`` and the sample points multiples of ``quantum``,
    so that normalising and mapping back are exact: a crop's result depends only on its own
    pixels and matrix, never on the other boxes or images of the batch.

    Args:
        crops: ``(K, C, 2^p + 1, 2^q + 1)``: each crop minus the fill value at the top left,
            zeros around it.
        inverse: ``(K, 3, 3)`` pixel-index matrices from a crop's output pixel to its source point.
        out_size: ``(h, w)`` output pixels computed per crop.
        quantum: the sample points' spacing: ``2^P * eps`` with ``2^P`` at least every canvas side.
        origin: ``(K, 2)`` long ``(row, column)``: the crop pixel at the top left of each output
            (zeros if ``None``); a crop pixel gets the same value wherever its output starts.

    Returns:
        ``(K, C, h, w)`` warped crops minus the fill value. Differentiable in ``crops`` and
        ``inverse`` (the rounding to ``quantum`` passes the gradient straight through).
    """
    k, _, rows, cols = crops.shape
    dtype, device = crops.dtype, crops.device
    a = inverse[:, :2].to(dtype) / quantum   # a power of two: exact
    u = torch.arange(out_size[1], device=device, dtype=dtype)
    v = torch.arange(out_size[0], device=device, dtype=dtype)
    if origin is not None:   # whole numbers: exact
        u = (u + origin[:, 1, None].to(dtype))[:, None]
        v = v + origin[:, 0, None].to(dtype)
    # grid_sample reads an (x, y) grid stored as two planes as fast as an interleaved one: each
    # coordinate is written in place into its plane (on the CPU every fresh large tensor costs
    # page faults).
    planes = torch.empty(k, 2, *out_size, dtype=dtype, device=device)
    for axis, side in ((0, cols), (1, rows)):
        column = a[:, axis, 0, None, None] * u
        row = (a[:, axis, 1, None] * v + a[:, axis, 2, None])[:, :, None]
        # Beyond a pixel outside the canvas every neighbour is zero: clamping there keeps the
        # value and its (zero) gradient, and the coordinates exactly representable.
        lo, hi = -2.0 / quantum, (side + 1.0) / quantum
        scale = 2.0 * quantum / (side - 1)   # side - 1 is 2^p: exact
        if a.requires_grad:
            steps = (column + row).clamp(lo, hi)
            planes[:, axis] = (steps + (steps.round() - steps).detach()) * scale - 1.0
        else:
            torch.add(column, row, out=planes[:, axis]).clamp_(lo, hi).round_().mul_(scale).sub_(1.0)
    return F.grid_sample(crops, planes.permute(0, 2, 3, 1), mode='bilinear', padding_mode='zeros',
                         align_corners=True)


def _live_rects(forward: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The part of each warped crop that can differ from the fill value.

    A bilinear sample reads something other than the fill value only if it lies in ``(-1, w) x
    (-1, h)`` of its crop (index coordinates). The output pixels that map there lie in the
    forward image of that rectangle, widened here by a pixel on every side in the source and in
    the output (far more than the sample points' rounding): outside it every sample is exactly
    the fill value.

    Shape:
        ``forward`` ``(K, 3, 3)`` affine pixel-index matrices from a crop's source point to its
        output pixel, ``sizes`` ``(K, 2)`` ``(h, w)`` -> ``(K, 4)`` ``(v0, v1, u0, u1)``: rows
        ``[v0, v1)`` and columns ``[u0, u1)`` of the crop, empty where every pixel takes the
        fill value (the whole crop where ``forward`` is not finite or not affine).
    """
    h, w = sizes[:, 0].astype(np.float64), sizes[:, 1].astype(np.float64)
    xs = np.stack([np.full_like(w, -2.0), w + 1, np.full_like(w, -2.0), w + 1], axis=1)
    ys = np.stack([np.full_like(h, -2.0), np.full_like(h, -2.0), h + 1, h + 1], axis=1)
    out_x = forward[:, 0, 0, None] * xs + forward[:, 0, 1, None] * ys + forward[:, 0, 2, None]
    out_y = forward[:, 1, 0, None] * xs + forward[:, 1, 1, None] * ys + forward[:, 1, 2, None]
    whole = np.stack([np.zeros_like(h), h, np.zeros_like(w), w], axis=1)
    with np.errstate(invalid='ignore'):
        part = np.stack([np.floor(out_y.min(axis=1)) - 1, np.floor(out_y.max(axis=1)) + 2,
                         np.floor(out_x.min(axis=1)) - 1, np.floor(out_x.max(axis=1)) + 2], axis=1)
    part = np.clip(part, 0, whole[:, [1, 1, 3, 3]])
    affine = (forward[:, 2] == np.array([0.0, 0.0, 1.0])).all(axis=1)
    ok = affine & np.isfinite(forward).all(axis=(1, 2)) & np.isfinite(part).all(axis=1)
    return np.where(ok[:, None], part, whole).astype(np.int64)


def _crop_view(crops: Tensor, shape: Tuple[int, int, int], j: int, warps: bool) -> Tensor:
    """Crop ``j`` of ``crops`` as a ``shape`` ``(C, h, w)`` view: its top left (warps, ``(K, C,
    h', w')``) or, row-major, the start of its row (the others, ``(K, C, 1, L)``)."""
    batch, channel, row, column = crops.stride()
    strides = (channel, row, column) if warps else (channel, shape[2] * column, column)
    return crops.as_strided(shape, strides, crops.storage_offset() + j * batch)


def _cutout_only_bboxes(images: Tensor, magnitude: Tensor, image: Tensor, boxes: Tensor,
                        centres: Tensor) -> Tensor:
    """Fill the union of the squares clipped to their boxes (filling is idempotent: order-free)."""
    _, _, height, width = images.shape
    x1, y1, x2, y2 = boxes.unbind(-1)
    half = magnitude.detach().to(images.dtype)[image] * min(height, width) / 2
    cx = x1 + centres[:, 0] * (x2 - x1)
    cy = y1 + centres[:, 1] * (y2 - y1)
    box = _spans(x1, y1, x2, y2, height, width)
    square = _spans(cx - half, cy - half, cx + half, cy + half, height, width)
    start = torch.maximum(box[:, [0, 2]], square[:, [0, 2]])
    size = (torch.minimum(box[:, [1, 3]], square[:, [1, 3]]) - start).clamp(min=0)
    out = images.clone(memory_format=torch.contiguous_format)
    # One strided fill per rectangle: far cheaper than a mask over the image for a few hundred.
    image_stride, strides = out.stride(0), out.stride()[1:]
    starts = (image * image_stride + start[:, 0] * width + start[:, 1]).tolist()
    for (rows, cols), at in zip(size.tolist(), starts):
        if rows and cols:
            out.as_strided((out.shape[1], rows, cols), strides, out.storage_offset() + at).fill_(FILL_VALUE)
    return out


def bbox_only(name: str, images: Tensor, magnitude: Tensor, sign: Tensor, boxes: List[Tensor],
              box_mask: List[Tensor], box_center: List[Tensor]) -> Tensor:
    """Apply the bbox-only op ``name`` inside every selected box (its registered torch kernel).

    Args:
        name: table name of a bbox-only op.
        images: ``(B, C, H, W)`` float.
        magnitude: ``(B,)`` (identity at 0).
        sign: ``(B,)`` in ``{-1, +1}``.
        boxes: ``B`` tensors ``(N_i, 4)``.
        box_mask: ``B`` bool tensors ``(N_i,)``: the selected boxes.
        box_center: ``B`` tensors ``(N_i, 2)`` (Cutout_Only_BBoxes), else ignored.

    Returns:
        ``(B, C, H, W)``; pixels outside the selected boxes are unchanged.
    """
    params = OpParams(sign=sign, center=torch.zeros(0, 2), box_index=torch.zeros(0, dtype=torch.long),
                      box_mask=box_mask, box_center=box_center)
    return get_kernel(name, 'torch')(images, magnitude, params, boxes)[0]


def _selected(images: Tensor, boxes: List[Tensor], box_mask: List[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """``(image index (K,), boxes (K, 4), chosen (N,))`` of the selected boxes of the batch."""
    device, dtype = images.device, images.dtype
    image = torch.cat([torch.full((int(b.shape[0]),), i, dtype=torch.long, device=device)
                       for i, b in enumerate(boxes)])
    chosen = torch.cat([f.to(device=device, dtype=torch.bool).reshape(-1) for f in box_mask]) \
        if box_mask else torch.zeros(0, dtype=torch.bool, device=device)
    chosen_boxes = torch.cat([b.to(device=device, dtype=dtype).reshape(-1, 4) for b in boxes])[chosen]
    return image[chosen], chosen_boxes, chosen


def cutout_only_bboxes(images: Tensor, magnitude: Tensor, boxes: List[Tensor], box_mask: List[Tensor],
                       box_center: List[Tensor]) -> Tensor:
    """Fill a square of side ``m * min(H, W)`` at ``box_center`` of each selected box with 128,
    clipped to the box.

    Shape:
        ``images`` ``(B, C, H, W)``, ``magnitude`` ``(B,)``, ``boxes`` ``B`` ``(N_i, 4)``,
        ``box_mask`` ``B`` ``(N_i,)``, ``box_center`` ``B`` ``(N_i, 2)``. Identity at 0.
    """
    image, chosen_boxes, chosen = _selected(images, boxes, box_mask)
    centres = torch.cat([c.to(device=images.device, dtype=images.dtype).reshape(-1, 2) for c in box_center])
    return _cutout_only_bboxes(images, magnitude, image, chosen_boxes, centres[chosen])


def solarize_only_bboxes(images: Tensor, magnitude: Tensor, boxes: List[Tensor],
                         box_mask: List[Tensor]) -> Tensor:
    """Invert the pixels ``>= 256 - m`` inside each selected box, box after box.

    Solarize is pointwise, so a pixel's result depends only on how many selected boxes cover it,
    not on their order: the first inversion maps ``x >= t`` to ``255 - x``; the next ones invert
    it back and forth only if ``255 - x >= t`` as well, so the parity of the count decides. One
    pass over the image gives the box-by-box result, with the same arithmetic. With every
    ``t > 127.5`` (``m < 128.5``, the usual levels) nothing inverts back and the count only
    needs to be positive: one new image, written in place.

    Shape:
        ``images`` ``(B, C, H, W)`` float, ``magnitude`` ``(B,)``, ``boxes`` ``B`` ``(N_i, 4)``,
        ``box_mask`` ``B`` ``(N_i,)``. Identity at 0.
    """
    batch, _, height, width = images.shape
    image, chosen_boxes, _ = _selected(images, boxes, box_mask)
    count = _coverage(image, _spans(*chosen_boxes.unbind(-1), height, width), batch, height, width)
    threshold = 256.0 - magnitude.view(-1, 1, 1, 1)
    if bool((threshold > 127.5).all()):
        # Then 255 - x < 127.5 < t wherever x >= t: no pixel inverts back, any count inverts once.
        # In place into one new image (each fresh image costs page faults on the CPU).
        inverted = (images >= threshold).logical_and_(count > 0)
        if torch.is_grad_enabled() and (images.requires_grad or magnitude.requires_grad):
            return torch.where(inverted, 255.0 - images, images)
        out = 255.0 - images
        return torch.where(inverted, out, images, out=out)
    once = 255.0 - images
    inverted = (images >= threshold) & (count > 0)
    alternating = inverted & (once >= threshold)
    odd = (count & 1).bool()
    return torch.where(inverted & (odd | ~alternating), once,
                       torch.where(alternating, 255.0 - once, images))


def bbox_crops(images: Tensor, magnitude: Tensor, sign: Tensor, boxes: List[Tensor], box_mask: List[Tensor], *,
               matrix: Optional[BoxMatrixFn] = None, crop_op: Optional[CropFn] = None) -> Tensor:
    """Apply an op inside every selected box, on the boxes' crops, in the box-by-box order of
    the module doc (see there for the schedule).

    Args:
        images: ``(B, C, H, W)`` float.
        magnitude: ``(B,)`` (identity at 0).
        sign: ``(B,)`` in ``{-1, +1}``.
        boxes: ``B`` tensors ``(N_i, 4)``.
        box_mask: ``B`` bool tensors ``(N_i,)``: the selected boxes.
        matrix: for ops that warp each box: ``(box (K, 4), magnitude (K,), sign (K,), H, W) ->
            (K, 3, 3)``, the continuous-coordinate matrix about the box.
        crop_op: for the others: ``(crops (K, C, 1, L), magnitude (K,), inside (K, 1, 1, L)) ->
            crops``, each crop row-major in one row, ``inside`` its own pixels.

    Returns:
        ``(B, C, H, W)`` contiguous; pixels outside the selected boxes are unchanged.
        Differentiable in ``images`` and, for the warps, in ``magnitude``.
    """
    batch, channels, height, width = images.shape
    device, dtype = images.device, images.dtype
    image, chosen_boxes, _ = _selected(images, boxes, box_mask)

    spans = _spans(*chosen_boxes.unbind(-1), height, width)
    nonempty = (spans[:, 1] > spans[:, 0]) & (spans[:, 3] > spans[:, 2])
    image, chosen_boxes, spans = image[nonempty], chosen_boxes[nonempty], spans[nonempty]
    running = images.clone(memory_format=torch.contiguous_format)
    if image.numel() == 0:
        return running
    rects = spans.cpu().numpy()
    sizes = np.stack([rects[:, 1] - rects[:, 0], rects[:, 3] - rects[:, 2]], axis=1)
    areas = sizes[:, 0] * sizes[:, 1]
    warps = matrix is not None
    # Warps sample 2-D crops; the other ops take each crop row-major in one row.
    layout = sizes if warps else np.stack([areas, np.ones_like(areas)], axis=1)
    if warps:
        # The same maps in crop coordinates: a matrix about a box point, built about that point
        # moved by the crop origin o, is T(-o) M T(o).
        local = chosen_boxes - spans[:, [2, 0, 2, 0]].to(dtype)
        matrices = matrix(local, magnitude[image], sign[image], height, width)
        forward = geometry.to_index_matrix(matrices.to(torch.float64))
        inverse = torch.linalg.inv(forward)
        if box_warp_numba.applies(running, magnitude):   # the same warps as one compiled loop
            return box_warp_numba.warp_boxes_(running, image, spans, inverse)
        # Every canvas side is at most 2^P + 1 with 2^P >= the image sides (eps = 2^-mantissa bits).
        quantum = 2.0 ** math.ceil(math.log2(max(2, height, width))) * torch.finfo(dtype).eps
    # The part of each box that can change (the rest takes the fill value): the whole box but for
    # warps that move some of its pixels' sample points out of it (_live_rects).
    whole = np.stack([np.zeros_like(areas), sizes[:, 0], np.zeros_like(areas), sizes[:, 1]], axis=1)
    live = _live_rects(forward.detach().cpu().numpy(), sizes) if warps else whole
    dead = (live[:, 1] <= live[:, 0]) | (live[:, 3] <= live[:, 2])
    levels = _levels(image.cpu().numpy(), rects, dead if dead.any() else None)
    # Per level: the boxes that only take the fill value (filled, not sampled), then batches of the others.
    batches = [(at_level[dead[at_level]], [at_level[~dead[at_level]][group]
                                           for group in _groups(layout[at_level[~dead[at_level]]])])
               for level in range(int(levels.max()) + 1) for at_level in [np.flatnonzero(levels == level)]]
    # Boxes that change only in a part: filled, then that part (the only one sampled) pasted.
    filled = dead | (live != whole).any(axis=1)

    live_t = torch.from_numpy(live[:, [0, 2]]).to(device)
    live_sizes = live[:, [1, 3]] - live[:, [0, 2]]
    # running is a fresh contiguous clone (storage offset 0): a box's region starts at its flat index.
    image_stride, region_strides = running.stride(0), running.stride()[1:]
    at = image.cpu().numpy() * image_stride + rects[:, 0] * width + rects[:, 2]
    # Per box: its region (shape, offset in running) and the part pasted back (shape, offset).
    regions = [((channels, h, w), a) for h, w, a in zip(*sizes.T.tolist(), at.tolist())]
    parts = [((channels, h, w), a) for h, w, a in zip(*live_sizes.T.tolist(),
                                                       (at + live[:, 0] * width + live[:, 2]).tolist())]
    filled_list = filled.tolist()

    for fills, groups in batches:
        for i in fills.tolist():
            shape, at = regions[i]
            running.as_strided(shape, region_strides, at).fill_(FILL_VALUE)
        for members in groups:
            k = torch.from_numpy(members).to(device)
            # The warps' canvas sides are 2^p + 1 (see _warp_crops).
            canvas = [2 ** max(1, math.ceil(math.log2(n))) + 1 for n in layout[members].max(axis=0)] if warps \
                else [1, int(layout[members, 0].max())]
            crops = torch.full((len(members), channels, *canvas), FILL_VALUE, dtype=dtype, device=device)
            # Each box's region as one strided view per tensor (one call instead of an index per
            # dimension: the per-box calls are most of the copying's cost).
            views = [(j, i, *regions[i]) for j, i in enumerate(members.tolist())]
            for j, _, shape, at in views:
                _crop_view(crops, shape, j, warps).copy_(running.as_strided(shape, region_strides, at))
            if warps:   # warped as (x - fill), zero outside the crop, as .torch_geometric.warp does
                out_size = tuple(int(n) for n in live_sizes[members].max(axis=0))
                origin = live_t[k] if filled[members].any() else None
                new = _warp_crops(crops.sub_(FILL_VALUE), inverse[k], out_size, quantum, origin).add_(FILL_VALUE)
            else:
                out_h = int(layout[members, 0].max())
                inside = torch.arange(out_h, device=device) < torch.from_numpy(areas[members]).to(device)[:, None]
                new = crop_op(crops, magnitude[image[k]], inside[:, None, None])
            for j, i, shape, at in views:
                if filled_list[i]:
                    running.as_strided(shape, region_strides, at).fill_(FILL_VALUE)
                part, at = parts[i]
                running.as_strided(part, region_strides, at).copy_(_crop_view(new, part, j, warps))
    return running
