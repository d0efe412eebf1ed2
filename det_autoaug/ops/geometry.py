"""3x3 matrices of the geometric ops, shared by the torch and the cv2 kernels.

Matrices map a source point to its destination in continuous pixel coordinates (an image spans
``[0, W] x [0, H]``). Pixels are warped with :func:`to_index_matrix`, which converts to the
pixel-centre coordinates that ``cv2.warpAffine`` and ``kornia.geometry.warp_affine`` use.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _eye(magnitude: Tensor) -> Tensor:
    return torch.eye(3, dtype=magnitude.dtype, device=magnitude.device).repeat(magnitude.shape[0], 1, 1)


def rotate_matrix(degrees: Tensor, height: int, width: int) -> Tensor:
    """Rotation by ``degrees`` counter-clockwise on screen about the image centre.

    Shape:
        ``degrees`` ``(B,)`` -> ``(B, 3, 3)``. Identity at 0.
    """
    theta = degrees * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    cx, cy = width / 2.0, height / 2.0
    m = _eye(degrees)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos, sin, cx - cos * cx - sin * cy
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = -sin, cos, cy + sin * cx - cos * cy
    return m


def shear_matrix(factor: Tensor, axis: str) -> Tensor:
    """Shear about the top-left corner: ``x += f * y`` (axis ``'x'``) or ``y += f * x`` (``'y'``).

    Shape:
        ``factor`` ``(B,)`` -> ``(B, 3, 3)``. Identity at 0.
    """
    m = _eye(factor)
    if axis == 'x':
        m[:, 0, 1] = factor
    else:
        m[:, 1, 0] = factor
    return m


def translate_matrix(dx: Tensor, dy: Tensor) -> Tensor:
    """Translation by ``(dx, dy)`` pixels. Shape: ``(B,)`` each -> ``(B, 3, 3)``."""
    m = _eye(dx)
    m[:, 0, 2], m[:, 1, 2] = dx, dy
    return m


def flip_matrix(apply: Tensor, axis: str, height: int, width: int) -> Tensor:
    """Mirror where ``apply`` is true: ``x -> W - x`` (axis ``'x'``) or ``y -> H - y`` (``'y'``).

    Shape:
        ``apply`` ``(B,)`` bool -> ``(B, 3, 3)``; identity where ``apply`` is false.
    """
    m = _eye(apply.to(torch.float32))
    sign = torch.where(apply, -1.0, 1.0)
    i, size = (0, width) if axis == 'x' else (1, height)
    m[:, i, i] = sign
    m[:, i, 2] = torch.where(apply, float(size), 0.0)
    return m


def to_index_matrix(matrix: Tensor) -> Tensor:
    """Convert continuous-coordinate matrices to pixel-centre (index) coordinates.

    Index coordinates are continuous minus 0.5, so ``M_idx = T(-0.5) @ M @ T(0.5)``.

    Shape:
        ``(B, 3, 3)`` -> ``(B, 3, 3)``.
    """
    shift = torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    back = shift.clone()
    shift[:2, 2], back[:2, 2] = 0.5, -0.5
    return back @ matrix @ shift
