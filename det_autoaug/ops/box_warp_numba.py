"""The bbox-only warps as one compiled loop on the CPU (numba), for calls that need no gradient.

Why a compiled loop: on the CPU, :func:`.torch_bbox_only.bbox_crops`' batched layout (crops padded
into groups, one ``grid_sample`` per group and level, the copies around it) costs about 4x the
cv2 kernel at 300 boxes on an 800 px image, and ``grid_sample`` alone on exactly the boxes' pixels
already costs about half of the cv2 kernel's whole op (``benchmarks/bench_ops.py
--many-boxes-only``); no layout of torch calls we tried came within 2x (issue 15 item 5,
``docs/results.md``). Neither torch, kornia nor mmcv has a CPU sampler that warps many small
regions in one call, so this one is written here and compiled with numba.

What it computes is the torch kernel's definition (:mod:`.torch_bbox_only`): box after box in box
order, each output pixel of a box bilinear at its source point in the box's crop, outside the crop
read as the fill value, the result pasted back inside the box. Each crop is first copied, minus
the fill value, into a buffer with a ring of zeros one pixel wide, so that a sample point inside
``(-1, w) x (-1, h)`` reads only that buffer; beyond it every neighbour is outside and the pixel
takes the fill value. The torch layout rounds its sample points to a multiple of a power of two
(``2^-13`` px on an 800 px float32 image) so that a crop's result does not depend on its padded
canvas; this loop does not round, so the two differ by float rounding (on ``uint8`` images at
most one level, in at most 0.1 % of the values, as the tests check). As with the torch layout, a
box's result never depends on the other boxes or images of the batch.

:func:`.torch_bbox_only.bbox_crops` uses it when :func:`applies`: images on the CPU in float32 or
float64, no gradient asked of the images or the magnitude, numba importable (a dependency of
det_autoaug; without it the torch layout runs, after one warning) and :data:`enabled` true
(:func:`switched` turns it off for a block: the tests and ``benchmarks/bench_ops.py`` compare the
two). The loop is compiled at its first call in a process for each dtype: about a second, half
that when numba's cache (in ``__pycache__``) holds it.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from .table import FILL_VALUE

#: False: the torch layout runs instead (:func:`switched` sets it for a block).
enabled = True

# numba's fast-math flags that keep NaN and inf semantics (the inside test compares coordinates).
_FASTMATH = {'nsz', 'arcp', 'contract', 'afn', 'reassoc'}


def _warp_loop(flat, image_of, spans, inverse, fill, channels, height, width, buf):
    """Warp each box's pixels of ``flat`` in place, box after box.

    Args:
        flat: the ``(B, C, H, W)`` images flattened (C-contiguous, float32 or float64).
        image_of: ``(K,)`` int64, each box's image.
        spans: ``(K, 4)`` int64 non-empty pixel ranges ``(r0, r1, c0, c1)``, in box order.
        inverse: ``(K, 3, 3)`` float64, from a crop's output pixel to its source point (index
            coordinates, crop origin at ``(c0, r0)``).
        fill: the value read outside each crop.
        channels, height, width: ``C``, ``H``, ``W``.
        buf: scratch of ``C * (h + 2) * (w + 2)`` values for the largest box, ``flat``'s dtype.
    """
    plane = height * width
    # Scalars stored here take the images' dtype: the interpolation weights are computed in it
    # (float32 weights make the float32 loop about 7 % faster than float64 ones).
    cast = np.empty(2, buf.dtype)
    cast[0] = 1.0
    one = cast[0]
    for k in range(spans.shape[0]):
        r0, r1, c0, c1 = spans[k, 0], spans[k, 1], spans[k, 2], spans[k, 3]
        h, w = r1 - r0, c1 - c0
        origin = image_of[k] * channels * plane + r0 * width + c0
        # The crop minus the fill value, channels last, inside a ring of zeros.
        pw = w + 2
        row_len = pw * channels
        for i in range(row_len):
            buf[i] = 0.0
            buf[(h + 1) * row_len + i] = 0.0
        for v in range(1, h + 1):
            for c in range(channels):
                buf[v * row_len + c] = 0.0
                buf[v * row_len + (w + 1) * channels + c] = 0.0
        for c in range(channels):
            for v in range(h):
                src = origin + c * plane + v * width
                dst = (v + 1) * row_len + channels + c
                for u in range(w):
                    buf[dst + u * channels] = flat[src + u] - fill
        a00, a01, a02 = inverse[k, 0, 0], inverse[k, 0, 1], inverse[k, 0, 2]
        a10, a11, a12 = inverse[k, 1, 0], inverse[k, 1, 1], inverse[k, 1, 2]
        for v in range(h):
            x_row, y_row = a01 * v + a02, a11 * v + a12
            out = origin + v * width
            for u in range(w):
                x = a00 * u + x_row
                y = a10 * u + y_row
                if not (x > -1.0 and y > -1.0 and x < w and y < h):   # every neighbour outside (or NaN)
                    for c in range(channels):
                        flat[out + c * plane + u] = fill
                    continue
                # Into the ringed buffer, whose columns are 0..w + 1 and rows 0..h + 1: x + 1 > 0, and
                # the upper clamps only guard the buffer's end when x + 1 rounds up to w + 1.
                x, y = x + 1.0, y + 1.0
                x0, y0 = min(int(np.floor(x)), w), min(int(np.floor(y)), h)
                cast[0], cast[1] = x - x0, y - y0
                fx, fy = cast[0], cast[1]
                top = (y0 * pw + x0) * channels
                bottom = top + row_len
                # Three channels, the usual case, as a loop of constant length: the compiler unrolls
                # it (the whole op about 20% faster than with the loop below).
                for c in range(3 if channels == 3 else 0):
                    upper = (one - fx) * buf[top + c] + fx * buf[top + 3 + c]
                    lower = (one - fx) * buf[bottom + c] + fx * buf[bottom + 3 + c]
                    flat[out + c * plane + u] = fill + ((one - fy) * upper + fy * lower)
                for c in range(0 if channels == 3 else channels):
                    upper = (one - fx) * buf[top + c] + fx * buf[top + channels + c]
                    lower = (one - fx) * buf[bottom + c] + fx * buf[bottom + channels + c]
                    flat[out + c * plane + u] = fill + ((one - fy) * upper + fy * lower)


@functools.lru_cache(maxsize=1)
def _compiled() -> Optional[Callable]:
    """The loop compiled by numba (once a process), or ``None`` with a warning if numba is missing."""
    try:
        import numba
    except ImportError:
        warnings.warn('numba is not installed: the bbox-only warps run on the batched torch layout on the CPU, '
                      'about 4x slower than the cv2 kernel with hundreds of boxes (pip install numba)',
                      RuntimeWarning, stacklevel=3)
        return None
    return numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)(_warp_loop)


@contextlib.contextmanager
def switched(on: bool) -> Iterator[None]:
    """Within the block, the warps run as the compiled loop (``on``, when it applies) or always
    on the torch layout."""
    global enabled
    before, enabled = enabled, on
    try:
        yield
    finally:
        enabled = before


def applies(images: Tensor, magnitude: Tensor) -> bool:
    """Whether :func:`warp_boxes_` can replace the torch layout for this call: CPU, float32 or
    float64, no gradient asked, numba importable and :data:`enabled`."""
    grad = torch.is_grad_enabled() and (images.requires_grad or magnitude.requires_grad)
    return (enabled and images.device.type == 'cpu' and images.dtype in (torch.float32, torch.float64)
            and not grad and _compiled() is not None)


def warp_boxes_(images: Tensor, image: Tensor, spans: Tensor, inverse: Tensor) -> Tensor:
    """Warp every box of ``images`` in place, box after box (see the module doc).

    Args:
        images: ``(B, C, H, W)`` contiguous float32 or float64 on the CPU, not requiring grad.
        image: ``(K,)`` each box's image index.
        spans: ``(K, 4)`` non-empty pixel ranges ``(r0, r1, c0, c1)`` of the boxes, in box order.
        inverse: ``(K, 3, 3)`` maps from a crop's output pixel to its source point in index
            coordinates, the crop's top-left pixel at the origin.

    Returns:
        ``images``, warped.
    """
    _, channels, height, width = images.shape
    if not images.is_contiguous():
        raise ValueError(f'warp_boxes_ needs contiguous images, got strides {images.stride()}')
    spans_np = spans.cpu().numpy().astype(np.int64, copy=False)
    if len(spans_np) == 0:
        return images
    sides = spans_np[:, [1, 3]] - spans_np[:, [0, 2]]
    if (sides <= 0).any():
        raise ValueError(f'warp_boxes_ needs non-empty spans, got {spans_np[(sides <= 0).any(axis=1)].tolist()}')
    flat = images.numpy().reshape(-1)
    buf = np.empty(channels * int(((sides[:, 0] + 2) * (sides[:, 1] + 2)).max()), flat.dtype)
    _compiled()(flat, image.cpu().numpy().astype(np.int64, copy=False), spans_np,
                inverse.detach().cpu().to(torch.float64).numpy(), float(FILL_VALUE), channels, height, width, buf)
    return images
