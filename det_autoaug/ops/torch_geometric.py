"""Batched geometric kernels: one 3x3 matrix per sample moves the pixels (and, in
:mod:`det_autoaug.ops.torch_ops`, the boxes).

Matrices are in continuous pixel coordinates (:mod:`det_autoaug.ops.geometry`); pixels are
warped by :func:`kornia.geometry.transform.warp_affine` on the pixel-index matrix, bilinear,
with the fill value 128 outside the source image. The warp is differentiable with respect to
the matrix, hence to the magnitude.
"""
from __future__ import annotations

from typing import Tuple

import torch
from kornia.geometry.transform import warp_affine
from torch import Tensor

from . import geometry
from .table import FILL_VALUE


def geometric_matrix(name: str, magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """The continuous-coordinate matrix of a whole-image geometric op.

    Args:
        name: table name of a geometric op.
        magnitude: ``(B,)`` magnitudes (degrees, shear factor, fraction of the side, strength).
        sign: ``(B,)`` in ``{-1, +1}``, multiplies the magnitude of signed ops.
        height: image height.
        width: image width.

    Returns:
        ``(B, 3, 3)`` matrices (identity at magnitude 0), dtype of ``magnitude``.
    """
    signed = sign.to(magnitude.dtype) * magnitude
    if name == 'Rotate':
        return geometry.rotate_matrix(signed, height, width)
    if name in ('ShearX', 'ShearY'):
        return geometry.shear_matrix(signed, name[-1].lower())
    if name == 'TranslateX':
        return geometry.translate_matrix(signed * width, torch.zeros_like(signed))
    if name == 'TranslateY':
        return geometry.translate_matrix(torch.zeros_like(signed), signed * height)
    if name in ('FlipLR', 'FlipUD'):
        axis = 'x' if name == 'FlipLR' else 'y'
        return geometry.flip_matrix(magnitude.detach() > 0, axis, height, width).to(magnitude.dtype)
    raise KeyError(f'{name!r} is not a whole-image geometric op')


def warp(images: Tensor, matrix: Tensor) -> Tensor:
    """Warp ``images`` by continuous-coordinate ``matrix``, bilinear, fill 128 outside.

    Shape:
        ``images`` ``(B, C, H, W)`` float, ``matrix`` ``(B, 3, 3)`` -> ``(B, C, H, W)``.
    """
    index = geometry.to_index_matrix(matrix.to(images.dtype))
    # Warping (x - fill) with zero padding and adding the fill back gives a constant fill and
    # stays linear (hence differentiable) in both the image and the matrix.
    shifted = warp_affine(images - FILL_VALUE, index[:, :2, :], dsize=tuple(images.shape[-2:]),
                          mode='bilinear', padding_mode='zeros', align_corners=True)
    return shifted + FILL_VALUE


def geometric(name: str, images: Tensor, magnitude: Tensor, sign: Tensor) -> Tuple[Tensor, Tensor]:
    """Apply a whole-image geometric op.

    Returns:
        ``(images, matrices)``: warped ``(B, C, H, W)`` and the ``(B, 3, 3)`` matrices.
    """
    height, width = images.shape[-2:]
    matrix = geometric_matrix(name, magnitude, sign, height, width)
    if name in ('FlipLR', 'FlipUD'):
        # Exact mirror (no interpolation error); the matrix above describes the same map.
        dim = -1 if name == 'FlipLR' else -2
        flipped = torch.where(magnitude.detach().view(-1, 1, 1, 1) > 0, images.flip(dim), images)
        return flipped, matrix
    return warp(images, matrix), matrix
