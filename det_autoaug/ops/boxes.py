"""Box geometry shared by every kernel: validation, projection by a 3x3 matrix, clip and filter.

Boxes are ``(N, 4)`` float tensors ``(x1, y1, x2, y2)`` in mmdet's continuous convention:
pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``, so an image spans ``[0, W] x [0, H]``.

The drop rule (the only place where annotations are removed): after a geometric op, a box is
clipped to the image and dropped, with its label and flags, when its clipped width or height is
below ``min_size`` pixels, or when less than ``min_visible`` of its projected area lies inside
the image.
"""
from __future__ import annotations

from typing import Tuple

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
