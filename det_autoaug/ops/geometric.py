"""The whole-image geometric ops: each op's matrix, torch kernel and cv2 kernel, registered
against its row of :data:`~.table.OPS`.

One continuous-coordinate 3x3 matrix per sample (:mod:`.geometry`) moves the pixels and the
boxes: the torch kernels warp by it (:mod:`.torch_geometric`), the cv2 kernels warp by the same
matrix (built once through the ``'matrix'`` kernel and cached, :func:`.cv2_common.image_matrices`)
or make mmcv's own cv2 calls, which are the same map (see :mod:`.cv2_ops`).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from . import geometry
from .cv2_common import FILL, Kernel, image_matrices, sign_of, warp
from .registry import register_kernel
from .torch_geometric import flipping, warping


def _signed(magnitude: Tensor, sign: Tensor) -> Tensor:
    return sign.to(magnitude.dtype) * magnitude


# ----------------------------------------------------------------------------- flips

def _cv2_flip(op_name: str, code: int) -> Kernel:
    def kernel(img, boxes, m, params):
        matrix, _ = image_matrices(op_name, 1.0 if m > 0 else 0.0, 1.0, *img.shape[:2])
        return (cv2.flip(img, code).reshape(img.shape) if m > 0 else img.copy()), matrix
    return kernel


@register_kernel('FlipLR', 'matrix')
def flip_lr_matrix(magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """Mirror about the vertical centre line where the strength ``m > 0``."""
    return geometry.flip_matrix(magnitude.detach() > 0, 'x', height, width).to(magnitude.dtype)


register_kernel('FlipLR', 'torch')(flipping(flip_lr_matrix, dim=-1))
register_kernel('FlipLR', 'cv2')(_cv2_flip('FlipLR', code=1))


@register_kernel('FlipUD', 'matrix')
def flip_ud_matrix(magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """Mirror about the horizontal centre line where the strength ``m > 0``."""
    return geometry.flip_matrix(magnitude.detach() > 0, 'y', height, width).to(magnitude.dtype)


register_kernel('FlipUD', 'torch')(flipping(flip_ud_matrix, dim=-2))
register_kernel('FlipUD', 'cv2')(_cv2_flip('FlipUD', code=0))


# ----------------------------------------------------------------------------- rotation

@register_kernel('Rotate', 'matrix')
def rotate_matrix(magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """Counter-clockwise rotation by ``sign * m`` degrees about the image centre."""
    return geometry.rotate_matrix(_signed(magnitude, sign), height, width)


register_kernel('Rotate', 'torch')(warping(rotate_matrix))


@register_kernel('Rotate', 'cv2')
def _rotate(img, boxes, m, params):
    sign = sign_of(params, 'Rotate')
    matrix, _ = image_matrices('Rotate', m, sign, *img.shape[:2])
    h, w = img.shape[:2]
    index = cv2.getRotationMatrix2D(((w - 1) * 0.5, (h - 1) * 0.5), sign * m, 1.0)
    out = cv2.warpAffine(img, index, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(FILL,) * 3)
    return out.reshape(img.shape), matrix


# ----------------------------------------------------------------------------- shears

def _cv2_shear(op_name: str) -> Kernel:
    def kernel(img, boxes, m, params):
        matrix, index = image_matrices(op_name, m, sign_of(params, op_name), *img.shape[:2])
        return warp(img, index), matrix
    return kernel


@register_kernel('ShearX', 'matrix')
def shear_x_matrix(magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """``x += sign * m * y`` about the top-left corner."""
    return geometry.shear_matrix(_signed(magnitude, sign), 'x')


register_kernel('ShearX', 'torch')(warping(shear_x_matrix))
register_kernel('ShearX', 'cv2')(_cv2_shear('ShearX'))


@register_kernel('ShearY', 'matrix')
def shear_y_matrix(magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """``y += sign * m * x`` about the top-left corner."""
    return geometry.shear_matrix(_signed(magnitude, sign), 'y')


register_kernel('ShearY', 'torch')(warping(shear_y_matrix))
register_kernel('ShearY', 'cv2')(_cv2_shear('ShearY'))


# ----------------------------------------------------------------------------- translations

def _cv2_translate(op_name: str, horizontal: bool) -> Kernel:
    def kernel(img, boxes, m, params):
        h, w = img.shape[:2]
        sign = sign_of(params, op_name)
        matrix, _ = image_matrices(op_name, m, sign, h, w)
        shift = sign * m * (w if horizontal else h)
        index = np.float32([[1, 0, shift], [0, 1, 0]] if horizontal else [[1, 0, 0], [0, 1, shift]])
        out = cv2.warpAffine(img, index, (w, h), flags=cv2.INTER_LINEAR, borderValue=(FILL,) * min(img.shape[2], 3))
        return out.reshape(img.shape), matrix
    return kernel


@register_kernel('TranslateX', 'matrix')
def translate_x_matrix(magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """Shift right by ``sign * m * width`` pixels."""
    signed = _signed(magnitude, sign)
    return geometry.translate_matrix(signed * width, torch.zeros_like(signed))


register_kernel('TranslateX', 'torch')(warping(translate_x_matrix))
register_kernel('TranslateX', 'cv2')(_cv2_translate('TranslateX', horizontal=True))


@register_kernel('TranslateY', 'matrix')
def translate_y_matrix(magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """Shift down by ``sign * m * height`` pixels."""
    signed = _signed(magnitude, sign)
    return geometry.translate_matrix(torch.zeros_like(signed), signed * height)


register_kernel('TranslateY', 'torch')(warping(translate_y_matrix))
register_kernel('TranslateY', 'cv2')(_cv2_translate('TranslateY', horizontal=False))
