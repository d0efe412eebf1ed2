"""The colour ops (pixels only, boxes unchanged): each op's torch and cv2 kernels, registered
against its row of :data:`~.table.OPS`.

The batched torch kernels are in :mod:`.torch_colour`, the cv2 helpers (lookup tables, PIL
filters) in :mod:`.cv2_common`; what each cv2 kernel reproduces is listed in :mod:`.cv2_ops`.
Torch kernels take ``(images, magnitude, params, boxes)``, cv2 kernels ``(image, boxes,
magnitude, params)`` (:mod:`.registry`); a colour op uses neither ``params`` nor ``boxes``.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import cv2
import numpy as np
from torch import Tensor

from . import torch_colour as tc
from .cv2_common import (
    BLUR_KERNEL,
    GREY_WEIGHTS,
    RAMP,
    SMOOTH_KERNEL,
    Kernel,
    autocontrast_tables,
    blend,
    equalize_tables,
    filtered,
    lut,
    solarize_table,
)
from .registry import register_kernel


def _torch(op_name: str, kernel: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Register the pixel kernel ``(x, m) -> x`` as ``op_name``'s torch kernel."""
    def adapted(images: Tensor, magnitude: Tensor, params, boxes) -> Tuple[Tensor, Optional[Tensor]]:
        return kernel(images, magnitude), None
    adapted.__qualname__ = f'torch kernel of {op_name}'
    register_kernel(op_name, 'torch')(adapted)


def _strength_lut(tables: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    def kernel(img, boxes, m, params):
        return (lut(img, tables(img)) if m > 0 else img.copy()), None
    return kernel


def _filter_blend(filt: np.ndarray) -> Kernel:
    def kernel(img, boxes, m, params):
        # A blend weight, not a strength: m = 0.5 is half-way to the filtered image.
        return (blend(filtered(img, filt, keep_border=False), img, m) if m > 0 else img.copy()), None
    return kernel


_torch('Identity', tc.identity)


@register_kernel('Identity', 'cv2')
def _identity(img, boxes, m, params):
    return img.copy(), None


_torch('AutoContrast', tc.autocontrast)
register_kernel('AutoContrast', 'cv2')(_strength_lut(autocontrast_tables))
_torch('Equalize', tc.equalize)
register_kernel('Equalize', 'cv2')(_strength_lut(equalize_tables))
_torch('Invert', tc.invert)


@register_kernel('Invert', 'cv2')
def _invert(img, boxes, m, params):
    return (cv2.bitwise_not(img).reshape(img.shape) if m > 0 else img.copy()), None


_torch('Blur', tc.blur)
register_kernel('Blur', 'cv2')(_filter_blend(BLUR_KERNEL))
_torch('Smooth', tc.smooth)
register_kernel('Smooth', 'cv2')(_filter_blend(SMOOTH_KERNEL))
_torch('Posterize', tc.posterize)


@register_kernel('Posterize', 'cv2')
def _posterize(img, boxes, m, params):
    shift = int(round(m))
    return lut(img, ((np.arange(256) >> shift) << shift).astype(np.float64)), None


_torch('Solarize', tc.solarize)


@register_kernel('Solarize', 'cv2')
def _solarize(img, boxes, m, params):
    return lut(img, solarize_table(m)), None


_torch('SolarizeAdd', tc.solarize_add)


@register_kernel('SolarizeAdd', 'cv2')
def _solarize_add(img, boxes, m, params):
    return lut(img, np.where(RAMP < 128.0, np.minimum(RAMP + m, 255.0), RAMP)), None


_torch('Color', tc.color)


@register_kernel('Color', 'cv2')
def _color(img, boxes, m, params):
    if img.shape[2] == 1:   # a grey image is its own greyscale
        return img.copy(), None
    f = 1.0 + m
    mix = f * np.eye(3) + (1.0 - f) * np.tile(GREY_WEIGHTS, (3, 1))
    return cv2.transform(img, mix).reshape(img.shape), None


_torch('Contrast', tc.contrast)


@register_kernel('Contrast', 'cv2')
def _contrast(img, boxes, m, params):
    f = 1.0 + m
    means = np.asarray(cv2.mean(img)[:img.shape[2]])
    mean = float(means @ (GREY_WEIGHTS if img.shape[2] == 3 else np.ones(1)))
    return lut(img, f * RAMP + (1.0 - f) * mean), None


_torch('Brightness', tc.brightness)


@register_kernel('Brightness', 'cv2')
def _brightness(img, boxes, m, params):
    return lut(img, (1.0 + m) * RAMP), None


_torch('Sharpness', tc.sharpness)


@register_kernel('Sharpness', 'cv2')
def _sharpness(img, boxes, m, params):
    return blend(img, filtered(img, SMOOTH_KERNEL, keep_border=True), 1.0 + m), None
