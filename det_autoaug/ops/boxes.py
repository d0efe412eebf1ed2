"""Box geometry shared by every kernel: validation, projection by a 3x3 matrix, clip and filter.

Boxes are ``(N, 4)`` float tensors ``(x1, y1, x2, y2)`` in mmdet's continuous convention:
pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``, so an image spans ``[0, W] x [0, H]``.

The drop rule (the only place where annotations are removed): after a geometric op, a box is
clipped to the image and dropped, with its label and flags, when its clipped width or height is
below ``min_size`` pixels, or when less than ``min_visible`` of its projected area lies inside
the image.
"""
from __future__ import annotations

import functools
from typing import Tuple

import numpy as np
import torch
from torch import Tensor

MIN_SIZE = 1.0       # px, as mmdet's FilterAnnotations(min_gt_bbox_wh=(1, 1))
MIN_VISIBLE = 0.3    # fraction of the projected box area that must stay inside the image


def check_boxes(boxes: Tensor, name: str = 'boxes') -> None:
    """Raise ``ValueError`` unless ``boxes`` is an ``(N, 4)`` floating tensor with x1<=x2, y1<=y2."""
    if not isinstance(boxes, Tensor):
        raise ValueError(f'{name} must be a torch.Tensor of shape (N, 4), got {type(boxes).__name__}')
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f'{name} must have shape (N, 4) (x1, y1, x2, y2), got {tuple(boxes.shape)}')
    if not boxes.is_floating_point():
        raise ValueError(f'{name} must be a floating tensor, got dtype {boxes.dtype}')
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]) | ~torch.isfinite(boxes).all(dim=1)
    if bool(bad.any()):
        raise ValueError(f'{name} holds invalid boxes {boxes[bad][:3].tolist()}: expected finite '
                         'x1 <= x2 and y1 <= y2')


def box_corners(boxes: Tensor) -> Tensor:
    """Corners of each box.

    Shape:
        ``(N, 4)`` -> ``(N, 4, 2)`` in the order top-left, top-right, bottom-left, bottom-right.
    """
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1),
                        torch.stack([x1, y2], -1), torch.stack([x2, y2], -1)], dim=-2)


def project_boxes(boxes: Tensor, matrix: Tensor) -> Tensor:
    """Enclosing axis-aligned boxes of the corners mapped by ``matrix``.

    Args:
        boxes: ``(N, 4)`` boxes.
        matrix: ``(3, 3)`` affine or projective matrix in continuous pixel coordinates.

    Returns:
        ``(N, 4)`` boxes, not clipped (for a rotation: the enclosing box of the rotated box).
    """
    if boxes.numel() == 0:
        return boxes.clone()
    corners = box_corners(boxes)
    ones = torch.ones_like(corners[..., :1])
    mapped = torch.cat([corners, ones], dim=-1) @ matrix.to(boxes.dtype).T
    xy = mapped[..., :2] / mapped[..., 2:3]
    return torch.cat([xy.amin(dim=-2), xy.amax(dim=-2)], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box; ``(N, 4)`` -> ``(N,)``."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def clip_and_filter(boxes: Tensor, height: int, width: int, min_size: float = MIN_SIZE,
                    min_visible: float = MIN_VISIBLE) -> Tuple[Tensor, Tensor]:
    """Clip projected boxes to the image and drop the ones that became too small or invisible.

    Args:
        boxes: ``(N, 4)`` boxes after projection, possibly outside the image.
        height: image height in pixels.
        width: image width in pixels.
        min_size: boxes whose clipped width or height is below this (px) are dropped.
        min_visible: boxes with less than this fraction of their area inside the image are
            dropped; zero-area boxes have visible fraction 0.

    Returns:
        ``(kept_boxes, keep)``: the clipped boxes that are kept, ``(M, 4)``, and the boolean
        mask ``(N,)`` over the input boxes, to index labels and flags with.
    """
    clipped = torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                           boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=-1)
    area = box_area(boxes)
    visible = torch.where(area > 0, box_area(clipped) / area.clamp(min=1e-12), torch.zeros_like(area))
    keep = ((clipped[:, 2] - clipped[:, 0]) >= min_size) & ((clipped[:, 3] - clipped[:, 1]) >= min_size) \
        & (visible >= min_visible)
    return clipped[keep], keep


# ----------------------------------------------------------------------------- numpy twins
# The per-image cv2 path (:mod:`.cv2_ops`) holds a handful of boxes per call, where each torch op
# costs microseconds of dispatch and the functions above took ~0.2 ms, more than flipping a
# 640 px image. These twins are the same rule on float32 numpy arrays, written op for op in the
# same order and dtype as the torch functions, so that both give the same boxes bit for bit and
# the same mask (``tests/test_boxes_np.py`` fuzzes them against each other).

_ZERO = np.float32(0)
_TINY = np.float32(1e-12)   # clip_and_filter's area floor, rounded to float32 as torch's clamp does
# Columns of the corner coordinates for row r of the matrix: x of the corners top-left, top-right,
# bottom-left, bottom-right (box_corners' order) for each of the three rows, then their y.
_CORNER_COLUMNS = np.array([0, 2, 0, 2] * 3 + [1, 1, 3, 3] * 3)


def check_boxes_np(boxes: np.ndarray, name: str = 'boxes') -> None:
    """:func:`check_boxes` on a float32 numpy array (raises the same ``ValueError``s)."""
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f'{name} must have shape (N, 4) (x1, y1, x2, y2), got {tuple(boxes.shape)}')
    if np.isfinite(boxes).all() and (boxes[:, 2:] >= boxes[:, :2]).all():
        return
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]) | ~np.isfinite(boxes).all(axis=1)
    raise ValueError(f'{name} holds invalid boxes {boxes[bad][:3].tolist()}: expected finite '
                     'x1 <= x2 and y1 <= y2')


@functools.lru_cache(maxsize=512)
def _projection(dtype: str, data: bytes) -> Tuple[int, np.ndarray, np.ndarray]:
    """``(rows, a, b)`` for :func:`project_boxes_np` from a ``(3, 3)`` matrix's bytes: ``rows == 0``
    for an axis-aligned map (``a``, ``b`` the float32 scales and offsets of ``(x1, y1, x2, y2)``),
    else the matrix rows used (2 if affine, 3) and ``a`` the ``(3, 4 * rows)`` float32
    coefficients of x, y and 1 for each corner. Cached: a policy uses a few matrices, and
    building these takes longer than projecting a few boxes."""
    m = np.frombuffer(data, dtype).reshape(3, 3).astype(np.float32)
    (a, b, c), (d, e, f), last = m.tolist()
    rows = 2 if last == [0.0, 0.0, 1.0] else 3
    if rows == 2 and b == 0 and d == 0:
        # ``x * a + (c + 0)`` equals ``(0 + x * a) + c`` bit for bit (neither can be -0.0), one op less.
        plan = 0, np.array([a, e, a, e], np.float32), np.array([c, f, c, f], np.float32) + _ZERO
    else:
        plan = rows, m[:rows].repeat(4, axis=0).T.copy(), np.empty(0, np.float32)
    for array in plan[1:]:
        array.setflags(write=False)
    return plan


def project_boxes_np(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """:func:`project_boxes` on numpy: finite float32 ``(N, 4)`` boxes, ``(3, 3)`` matrix -> float32 ``(N, 4)``.

    Each corner maps to ``((0 + x * m[r, 0]) + y * m[r, 1]) + m[r, 2]`` in float32 for each row
    ``r`` of the float32 matrix, as torch's float32 matmul of ``[x, y, 1]`` sums it (from an
    accumulator at +0.0, which turns a product -0.0 into +0.0), then is divided by the third
    row. For an affine matrix that row is exactly 1 (``0 * x`` is a signed zero for finite
    ``x``): dividing by it changes no bit, so it is skipped.

    Flips, translations and scalings (affine, ``m[0, 1] == m[1, 0] == 0``) take a shorter path
    with the same bits: there ``y * m[0, 1]`` is a signed zero, and adding it to
    ``0 + x * m[0, 0]`` (never -0.0) changes nothing, so each corner's ``x'`` is
    ``(0 + x * m[0, 0]) + m[0, 2]`` of its ``x1`` or ``x2``, and the least and greatest of the
    four are the min and max of those two (likewise for ``y``; finite boxes and matrix, so no NaN).
    """
    n = boxes.shape[0]
    if n == 0:
        return boxes.copy()
    rows, coefficients, offsets = _projection(matrix.dtype.str, matrix.tobytes())
    if rows == 0:   # sorting each (x1', x2') and (y1', y2') pair gives their min and max in one call
        return np.sort((boxes * coefficients + offsets).reshape(n, 2, 2), axis=1).reshape(n, 4)
    xy = boxes[:, _CORNER_COLUMNS]
    mapped = ((_ZERO + xy[:, :4 * rows] * coefficients[0]) + xy[:, 12:12 + 4 * rows] * coefficients[1]) \
        + coefficients[2]
    if rows == 3:
        mapped = mapped[:, :8] / np.tile(mapped[:, 8:], 2)
    mapped = mapped.reshape(n, 2, 4)
    projected = np.empty((n, 4), np.float32)
    mapped.min(axis=2, out=projected[:, :2])
    mapped.max(axis=2, out=projected[:, 2:])
    return projected


def clip_and_filter_np(boxes: np.ndarray, height: int, width: int, min_size: float = MIN_SIZE,
                       min_visible: float = MIN_VISIBLE) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`clip_and_filter` on a float32 ``(N, 4)`` numpy array: ``(kept (M, 4), keep (N,))``."""
    n = boxes.shape[0]
    if n == 0:
        return boxes.copy(), np.zeros(0, bool)
    # np.where, not np.maximum: torch's clamp keeps x when x == 0, so -0.0 stays -0.0.
    clipped = np.minimum(np.where(boxes < 0, _ZERO, boxes), _limits(height, width))
    both = np.concatenate([boxes, clipped])
    sizes = both[:, 2:] - both[:, :2]
    sides = np.maximum(sizes, _ZERO)
    areas = sides[:, 0] * sides[:, 1]
    area = areas[:n]
    visible = np.where(area > 0, areas[n:] / np.maximum(area, _TINY), _ZERO)
    keep = (sizes[n:] >= np.float32(min_size)).all(axis=1) & (visible >= np.float32(min_visible))
    return clipped[keep], keep


@functools.lru_cache(maxsize=64)
def _limits(height: int, width: int) -> np.ndarray:
    limits = np.array([width, height, width, height], np.float32)
    limits.setflags(write=False)
    return limits
