"""Batched region kernels: the cutouts and the ops that act only inside boxes.

A pixel belongs to a rectangle ``[x1, x2) x [y1, y2)`` when its centre ``(j + 0.5, i + 0.5)``
does, so an empty rectangle (magnitude 0, degenerate box) covers no pixel. Boxes never move.

Bbox-only ops follow the TensorFlow reference: each selected box is processed in index order
(a later box sees what an earlier overlapping one wrote), the op sees the box content with
everything outside the box replaced by the fill value 128, and the result is pasted back inside
the box only. Images are processed together: step ``j`` handles the ``j``-th box of every image
that has one selected.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor

from . import geometry
from .table import FILL_VALUE
from .torch_colour import equalize, solarize
from .torch_geometric import warp


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
    """Continuous-coordinate matrix of a geometric bbox-only op for one box per image.

    Rotation about the box centre, shear about its top-left corner, translation by
    ``sign * m * W`` (or ``* H``) pixels, left-right mirror about its vertical centre line.

    Shape:
        ``box`` ``(B, 4)``, ``magnitude`` and ``sign`` ``(B,)`` -> ``(B, 3, 3)``.
    """
    signed = sign.to(magnitude.dtype) * magnitude
    box = box.to(magnitude.dtype)
    x1, y1, x2, y2 = box.unbind(-1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    zero = torch.zeros_like(signed)
    if name == 'Rotate_Only_BBoxes':
        return _about(cx, cy, geometry.rotate_matrix(signed, 0, 0))
    if name in ('ShearX_Only_BBoxes', 'ShearY_Only_BBoxes'):
        return _about(x1, y1, geometry.shear_matrix(signed, 'x' if name == 'ShearX_Only_BBoxes' else 'y'))
    if name == 'TranslateX_Only_BBoxes':
        return geometry.translate_matrix(signed * width, zero)
    if name == 'TranslateY_Only_BBoxes':
        return geometry.translate_matrix(zero, signed * height)
    if name == 'Flip_Only_BBoxes':
        flip = geometry.flip_matrix(magnitude.detach() > 0, 'x', 0, 0).to(magnitude.dtype)
        return _about(cx, cy, flip)
    raise KeyError(f'{name!r} is not a geometric bbox-only op')


def bbox_only(name: str, images: Tensor, magnitude: Tensor, sign: Tensor, boxes: List[Tensor],
              box_mask: List[Tensor], box_center: List[Tensor]) -> Tensor:
    """Apply a bbox-only op inside every selected box.

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
    height, width = images.shape[-2:]
    padded, selected = pad_boxes(boxes, box_mask, images.device, images.dtype)
    active = [j for j, on in enumerate(selected.any(dim=0).tolist()) if on]
    out = images
    if name == 'Cutout_Only_BBoxes':
        centres, _ = pad_boxes(box_center, box_mask, images.device, images.dtype, cols=2)
        half = magnitude.detach().to(images.dtype) * min(height, width) / 2
    for j in active:
        x1, y1, x2, y2 = padded[:, j].unbind(-1)
        inside = rect_mask(x1, y1, x2, y2, height, width) & selected[:, j].view(-1, 1, 1, 1)
        if name in ('Solarize_Only_BBoxes',):
            out = torch.where(inside, solarize(out, magnitude), out)
        elif name == 'Equalize_Only_BBoxes':
            out = torch.where(inside, equalize(out, magnitude, mask=inside), out)
        elif name == 'Cutout_Only_BBoxes':
            cx = x1 + centres[:, j, 0] * (x2 - x1)
            cy = y1 + centres[:, j, 1] * (y2 - y1)
            out = out.masked_fill(inside & _centred(cx, cy, half, half, height, width), FILL_VALUE)
        else:
            matrix = box_matrix(name, padded[:, j], magnitude, sign, height, width)
            source = torch.where(inside, out, torch.full_like(out, FILL_VALUE))
            out = torch.where(inside, warp(source, matrix), out)
    return out if active else images.clone()
