"""Batched geometric kernels: one 3x3 matrix per sample moves the pixels (and, in
:mod:`det_autoaug.ops.torch_ops`, the boxes).

Matrices are in continuous pixel coordinates (:mod:`det_autoaug.ops.geometry`); pixels are
warped by :func:`kornia.geometry.transform.warp_affine` on the pixel-index matrix, bilinear,
with the fill value 128 outside the source image. The warp is differentiable with respect to
the matrix, hence to the magnitude.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch
from kornia.geometry.transform import warp_affine
from torch import Tensor

from . import geometry
from .registry import get_kernel
from .table import FILL_VALUE

#: ``(magnitude (B,), sign (B,), height, width) -> (B, 3, 3)`` continuous-coordinate matrices.
MatrixFn = Callable[[Tensor, Tensor, int, int], Tensor]
TorchKernel = Callable[..., Tuple[Tensor, Tensor]]


def geometric_matrix(name: str, magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """The continuous-coordinate matrix of a whole-image geometric op (its ``'matrix'`` kernel).

    Args:
        name: table name of a geometric op.
        magnitude: ``(B,)`` magnitudes (degrees, shear factor, fraction of the side, strength).
        sign: ``(B,)`` in ``{-1, +1}``, multiplies the magnitude of signed ops.
        height: image height.
        width: image width.

    Returns:
        ``(B, 3, 3)`` matrices (identity at magnitude 0), dtype of ``magnitude``.
    """
    return get_kernel(name, 'matrix')(magnitude, sign, height, width)


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


def warping(matrix: MatrixFn) -> TorchKernel:
    """The torch kernel of a geometric op that warps by ``matrix`` (bilinear, fill 128)."""
    def kernel(images: Tensor, magnitude: Tensor, params, boxes) -> Tuple[Tensor, Tensor]:
        m = matrix(magnitude, params.sign, *images.shape[-2:])
        return warp(images, m), m
    return kernel


def flipping(matrix: MatrixFn, dim: int) -> TorchKernel:
    """The torch kernel of a flip along ``dim`` where the strength ``m > 0``: an exact mirror (no
    interpolation error); ``matrix`` describes the same map for the boxes."""
    def kernel(images: Tensor, magnitude: Tensor, params, boxes) -> Tuple[Tensor, Tensor]:
        m = matrix(magnitude, params.sign, *images.shape[-2:])
        return torch.where(magnitude.detach().view(-1, 1, 1, 1) > 0, images.flip(dim), images), m
    return kernel
