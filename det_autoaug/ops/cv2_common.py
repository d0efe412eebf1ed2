"""Shared helpers of the per-image cv2 kernels (:mod:`.colour`, :mod:`.geometric`, :mod:`.regions`):
per-channel lookup tables, PIL filters, warps with the fill value and pixel spans.

Arrays are ``(H, W, C)`` uint8 with C 1 or 3; see :mod:`.cv2_ops` for which implementation each
op uses and why.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Tuple

import cv2
import numpy as np
import torch

from . import geometry
from .params import OpParams
from .table import FILL_VALUE
from .torch_geometric import geometric_matrix

FILL = int(FILL_VALUE)
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])
SMOOTH_KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0
BLUR_KERNEL = np.ones((5, 5), np.float32)
BLUR_KERNEL[1:4, 1:4] = 0.0
BLUR_KERNEL /= 16.0
RAMP = np.arange(256, dtype=np.float64)
_EXACT_FLOAT_COUNTS = 1 << 24   # cv2.calcHist counts in float32: exact below 2**24 pixels

# A kernel maps (image (H, W, C) uint8, boxes (N, 4) float32, magnitude, params) to the new
# image and, for geometric ops, the continuous 3x3 matrix that moves the boxes (else None).
Kernel = Callable[[np.ndarray, np.ndarray, float, Optional[OpParams]], Tuple[np.ndarray, Optional[np.ndarray]]]


def lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a (256,) table to every channel, or a (C, 256) table channel by channel."""
    table = np.clip(np.rint(table), 0, 255).astype(np.uint8)
    if table.ndim == 2 and image.shape[2] == 1:
        table = table[0]
    if table.ndim == 2:
        table = np.ascontiguousarray(table.T).reshape(1, 256, -1)
    return cv2.LUT(image, table).reshape(image.shape)


def histograms(image: np.ndarray) -> np.ndarray:
    """Per-channel 256-bin histograms, ``(C, 256)`` int64."""
    channels = image.shape[2]
    if image.shape[0] * image.shape[1] < _EXACT_FLOAT_COUNTS:
        return np.stack([cv2.calcHist([image], [c], None, [256], [0, 256]).reshape(256) for c in range(channels)]
                        ).astype(np.int64)
    return np.stack([np.bincount(image[:, :, c].ravel(), minlength=256) for c in range(channels)])


def equalize_tables(image: np.ndarray) -> np.ndarray:
    """PIL ``ImageOps.equalize`` tables, ``(C, 256)`` (identity where the step is 0)."""
    tables = np.tile(RAMP, (image.shape[2], 1))
    for c, hist in enumerate(histograms(image)):
        nonzero = np.flatnonzero(hist)
        step = (int(hist.sum()) - int(hist[nonzero[-1]])) // 255 if len(nonzero) else 0
        if step:
            below = np.cumsum(hist) - hist
            tables[c] = np.minimum((below + step // 2) // step, 255)
    return tables


def autocontrast_tables(image: np.ndarray) -> np.ndarray:
    """Per-channel stretch of ``[min, max]`` to ``[0, 255]``, ``(C, 256)`` (constant channels kept)."""
    tables = np.tile(RAMP, (image.shape[2], 1))
    for c, channel in enumerate(cv2.split(image)):
        lo, hi = cv2.minMaxLoc(channel)[:2]
        if hi > lo:
            tables[c] = (RAMP - lo) * (255.0 / (hi - lo))
    return tables


def filtered(image: np.ndarray, kernel: np.ndarray, keep_border: bool) -> np.ndarray:
    """Filter with replicated borders, or keep the outer ``k // 2`` pixels as PIL's ``filter`` does."""
    out = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REPLICATE).reshape(image.shape)
    if keep_border:
        b = kernel.shape[0] // 2
        h, w = image.shape[:2]
        if h <= 2 * b or w <= 2 * b:
            return image.copy()
        out[:b], out[h - b:] = image[:b], image[h - b:]
        out[:, :b], out[:, w - b:] = image[:, :b], image[:, w - b:]
    return out


def blend(image: np.ndarray, other: np.ndarray, weight: float) -> np.ndarray:
    """``other + weight * (image - other)``, rounded and saturated to uint8."""
    return cv2.addWeighted(image, weight, other, 1.0 - weight, 0.0).reshape(image.shape)


def index_matrices(matrices: np.ndarray) -> np.ndarray:
    """Continuous ``(K, 3, 3)`` matrices -> the ``(K, 2, 3)`` pixel-index ones cv2 warps with."""
    return geometry.to_index_matrix(torch.from_numpy(matrices))[:, :2].numpy()


def warp(image: np.ndarray, index_matrix: np.ndarray) -> np.ndarray:
    """Bilinear warp by a ``(2, 3)`` pixel-index matrix; outside the image reads as 128."""
    h, w = image.shape[:2]
    out = cv2.warpAffine(image, index_matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(FILL,) * 4)
    return out.reshape(image.shape)


@functools.lru_cache(maxsize=512)
def image_matrices(name: str, magnitude: float, sign: float, height: int, width: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """``(continuous (3, 3), index (2, 3))`` matrices of a whole-image geometric op.

    Cached: a policy uses a few magnitudes and signs, and building them with torch costs more
    than warping a small image.
    """
    matrix = geometric_matrix(name, torch.tensor([magnitude], dtype=torch.float64),
                              torch.tensor([sign], dtype=torch.float64), height, width).numpy()
    matrix, index = matrix[0], index_matrices(matrix)[0]
    matrix.setflags(write=False)
    index.setflags(write=False)
    return matrix, index


def span(lo: float, hi: float, size: int) -> Tuple[int, int]:
    """Indices ``[start, stop)`` of the pixels whose centres ``j + 0.5`` lie in ``[lo, hi)``."""
    start = min(max(math.ceil(lo - 0.5), 0), size)
    stop = min(max(math.ceil(hi - 0.5), 0), size)
    return start, max(start, stop)


def fill_rect(img: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> None:
    """Set the pixels whose centres lie in ``[x1, x2) x [y1, y2)`` to the fill value, in place."""
    c0, c1 = span(x1, x2, img.shape[1])
    r0, r1 = span(y1, y2, img.shape[0])
    img[r0:r1, c0:c1] = FILL


def need_params(params: Optional[OpParams], op: str) -> OpParams:
    if params is None:
        raise ValueError(f'op {op!r} draws random parameters: pass params, e.g. '
                         f'sample_params({op!r}, 1, H, W, [boxes]).select(0)')
    return params


# tolist() rather than indexing: one call instead of a torch indexing op per number (~1 us each).
def sign_of(params: Optional[OpParams], op: str) -> float:
    return float(need_params(params, op).sign.tolist()[0])


def center_of(params: Optional[OpParams], op: str) -> Tuple[float, float]:
    center = need_params(params, op).center
    if tuple(center.shape) != (1, 2):
        raise ValueError(f'op {op!r} needs params.center of shape (1, 2), got {tuple(center.shape)}: '
                         f'sample the params for {op!r}')
    (fx, fy), = center.tolist()
    return float(fx), float(fy)


def solarize_table(m: float) -> np.ndarray:
    """Invert levels ``>= 256 - m``."""
    return np.where(RAMP >= 256.0 - m, 255.0 - RAMP, RAMP)
