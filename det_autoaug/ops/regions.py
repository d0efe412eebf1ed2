"""The region ops (the cutouts and the ops that act only inside boxes; boxes never move): each
op's torch and cv2 kernels, and the box matrix of those that warp a box's content, registered
against its row of :data:`~.table.OPS`.

The batched torch kernels are in :mod:`.torch_bbox_only` (see there for the TensorFlow
semantics and the crop schedule), the cv2 helpers in :mod:`.cv2_common`. The cv2 bbox-only
kernels rewrite each selected box's crop in box order on the running image, so a later box sees
what an earlier overlapping one wrote, as in the TensorFlow reference and the torch kernel.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from . import geometry
from . import torch_colour as tc
from .cv2_common import (
    Kernel,
    center_of,
    equalize_tables,
    fill_rect,
    index_matrices,
    lut,
    need_params,
    solarize_table,
    span,
    warp,
)
from .params import OpParams
from .registry import register_kernel
from .torch_bbox_only import (
    BoxMatrixFn,
    CropFn,
    about_centre,
    about_corner,
    bbox_crops,
    bbox_cutout,
    cutout,
    cutout_only_bboxes,
    solarize_only_bboxes,
)

# ----------------------------------------------------------------------------- cutouts


@register_kernel('Cutout', 'torch')
def _cutout_torch(images: Tensor, magnitude: Tensor, params: OpParams, boxes) -> Tuple[Tensor, None]:
    return cutout(images, magnitude, params.center), None


@register_kernel('Cutout', 'cv2')
def _cutout(img, boxes, m, params):
    fx, fy = center_of(params, 'Cutout')
    out = img.copy()
    if m > 0:
        h, w = img.shape[:2]
        half = m * min(h, w) / 2.0
        fill_rect(out, fx * w - half, fy * h - half, fx * w + half, fy * h + half)
    return out, None


@register_kernel('BBox_Cutout', 'torch')
def _bbox_cutout_torch(images: Tensor, magnitude: Tensor, params: OpParams, boxes) -> Tuple[Tensor, None]:
    boxes = boxes if boxes is not None else [torch.zeros(0, 4)] * images.shape[0]
    return bbox_cutout(images, magnitude, params.center, params.box_index, boxes), None


@register_kernel('BBox_Cutout', 'cv2')
def _bbox_cutout(img, boxes, m, params):
    fx, fy = center_of(params, 'BBox_Cutout')
    if tuple(params.box_index.shape) != (1,):
        raise ValueError(f"op 'BBox_Cutout' needs params.box_index of shape (1,), got "
                         f"{tuple(params.box_index.shape)}: sample the params for 'BBox_Cutout'")
    out = img.copy()
    index = int(params.box_index[0])
    if not -1 <= index < len(boxes):
        raise ValueError(f'params.box_index={index} but the image has {len(boxes)} boxes: sample the params '
                         'with these boxes')
    if m > 0 and index >= 0:
        x1, y1, x2, y2 = (float(v) for v in boxes[index])
        cx, cy = x1 + fx * (x2 - x1), y1 + fy * (y2 - y1)
        hw, hh = m * (x2 - x1) / 2.0, m * (y2 - y1) / 2.0
        fill_rect(out, cx - hw, cy - hh, cx + hw, cy + hh)
    return out, None


# ----------------------------------------------------------------------------- bbox-only: shared

# prepare(boxes (K, 4), spans (K, 4) [r0, r1, c0, c1], selected (K,), magnitude, params, (H, W))
# -> patch_fn(patch, k): the new content of the k-th selected box's crop. ``patch`` holds exactly
# the pixels whose centres lie inside the box (crop origin (c0, r0)) on the running image.
PatchFn = Callable[[np.ndarray, int], np.ndarray]
Prepare = Callable[[np.ndarray, np.ndarray, np.ndarray, float, OpParams, Tuple[int, int]], PatchFn]


def _per_box(op: str, prepare: Prepare) -> Kernel:
    """A cv2 bbox-only kernel: rewrite each selected box's crop, in box order."""
    def kernel(img, boxes, m, params):
        params = need_params(params, op)
        out = img.copy()
        mask = params.box_mask[0] if params.box_mask else None
        if len(boxes) and (mask is None or mask.numel() != len(boxes)):
            got = 'no box_mask' if mask is None else f'a box_mask of {mask.numel()} entries'
            raise ValueError(f'params for op {op!r} hold {got} for {len(boxes)} boxes: sample them '
                             'with these boxes (sample_params(..., boxes=[...]))')
        if m <= 0 or len(boxes) == 0:
            return out, None
        h, w = img.shape[:2]
        selected = np.flatnonzero(mask.cpu().numpy())
        spans = np.array([span(b[1], b[3], h) + span(b[0], b[2], w) for b in boxes[selected].tolist()],
                         np.int64).reshape(-1, 4)
        patch_fn = prepare(boxes[selected].astype(np.float64), spans, selected, m, params, (h, w))
        for k, (r0, r1, c0, c1) in enumerate(spans.tolist()):
            if r1 > r0 and c1 > c0:
                out[r0:r1, c0:c1] = patch_fn(out[r0:r1, c0:c1], k)
        return out, None
    return kernel


def _box_warp(op: str, matrix: BoxMatrixFn) -> None:
    """Register ``matrix`` as ``op``'s box matrix and the torch and cv2 kernels that warp each
    selected box's content by it (outside the box reads as the fill value)."""
    register_kernel(op, 'box_matrix')(matrix)

    def torch_kernel(images: Tensor, magnitude: Tensor, params: OpParams, boxes) -> Tuple[Tensor, None]:
        if boxes is None:
            return images.clone(), None
        return bbox_crops(images, magnitude, params.sign, boxes, params.box_mask, matrix=matrix), None

    def prepare(boxes, spans, selected, m, params, hw):
        k = len(boxes)
        if k == 0:
            return lambda patch, i: patch
        matrices = matrix(torch.from_numpy(boxes), torch.full((k,), m, dtype=torch.float64),
                          params.sign[:1].to(torch.float64).expand(k), *hw)
        # The same maps in each crop's coordinates: T(origin) on both sides.
        origin = torch.eye(3, dtype=torch.float64).repeat(k, 1, 1)
        origin[:, 0, 2], origin[:, 1, 2] = torch.from_numpy(spans[:, 2]), torch.from_numpy(spans[:, 0])
        index = index_matrices((torch.linalg.inv(origin) @ matrices @ origin).numpy())
        return lambda patch, i: warp(patch, index[i])

    register_kernel(op, 'torch')(torch_kernel)
    register_kernel(op, 'cv2')(_per_box(op, prepare))


def _crop_op(op: str, crop_op: CropFn, prepare: Prepare) -> None:
    """Register the torch and cv2 kernels of a pixel op applied inside each selected box."""
    def torch_kernel(images: Tensor, magnitude: Tensor, params: OpParams, boxes) -> Tuple[Tensor, None]:
        if boxes is None:
            return images.clone(), None
        return bbox_crops(images, magnitude, params.sign, boxes, params.box_mask, crop_op=crop_op), None

    register_kernel(op, 'torch')(torch_kernel)
    register_kernel(op, 'cv2')(_per_box(op, prepare))


def _signed(magnitude: Tensor, sign: Tensor) -> Tensor:
    return sign.to(magnitude.dtype) * magnitude


# ----------------------------------------------------------------------------- bbox-only: warps

def _rotate_box(box: Tensor, magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    return about_centre(box, geometry.rotate_matrix(_signed(magnitude, sign), 0, 0))


def _shear_x_box(box: Tensor, magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    return about_corner(box, geometry.shear_matrix(_signed(magnitude, sign), 'x'))


def _shear_y_box(box: Tensor, magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    return about_corner(box, geometry.shear_matrix(_signed(magnitude, sign), 'y'))


def _translate_x_box(box: Tensor, magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    signed = _signed(magnitude, sign)
    return geometry.translate_matrix(signed * width, torch.zeros_like(signed))


def _translate_y_box(box: Tensor, magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    signed = _signed(magnitude, sign)
    return geometry.translate_matrix(torch.zeros_like(signed), signed * height)


def _flip_box(box: Tensor, magnitude: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    return about_centre(box, geometry.flip_matrix(magnitude.detach() > 0, 'x', 0, 0).to(magnitude.dtype))


_box_warp('Rotate_Only_BBoxes', _rotate_box)
_box_warp('ShearX_Only_BBoxes', _shear_x_box)
_box_warp('ShearY_Only_BBoxes', _shear_y_box)
_box_warp('TranslateX_Only_BBoxes', _translate_x_box)
_box_warp('TranslateY_Only_BBoxes', _translate_y_box)
_box_warp('Flip_Only_BBoxes', _flip_box)


# ----------------------------------------------------------------------------- bbox-only: pixels

def _prepare_solarize(boxes, spans, selected, m, params, hw):
    table = solarize_table(m)
    return lambda patch, k: lut(patch, table)


def _prepare_equalize(boxes, spans, selected, m, params, hw):
    return lambda patch, k: lut(patch, equalize_tables(patch))


@register_kernel('Solarize_Only_BBoxes', 'torch')
def _solarize_only_bboxes_torch(images: Tensor, magnitude: Tensor, params: OpParams,
                                boxes) -> Tuple[Tensor, None]:
    if boxes is None:
        return images.clone(), None
    return solarize_only_bboxes(images, magnitude, boxes, params.box_mask), None


register_kernel('Solarize_Only_BBoxes', 'cv2')(_per_box('Solarize_Only_BBoxes', _prepare_solarize))
_crop_op('Equalize_Only_BBoxes', lambda crops, m, inside: tc.equalize(crops, m, mask=inside), _prepare_equalize)


# ----------------------------------------------------------------------------- bbox-only: cutout

@register_kernel('Cutout_Only_BBoxes', 'torch')
def _cutout_only_bboxes_torch(images: Tensor, magnitude: Tensor, params: OpParams,
                              boxes) -> Tuple[Tensor, Optional[Tensor]]:
    if boxes is None:
        return images.clone(), None
    return cutout_only_bboxes(images, magnitude, boxes, params.box_mask, params.box_center), None


def _prepare_cutout(boxes, spans, selected, m, params, hw):
    n = len(params.box_mask[0])
    if len(params.box_center) != 1 or tuple(params.box_center[0].shape) != (n, 2):
        got = [tuple(c.shape) for c in params.box_center]
        raise ValueError(f"op 'Cutout_Only_BBoxes' needs params.box_center [({n}, 2)], got {got}: "
                         "sample the params for 'Cutout_Only_BBoxes' with these boxes")
    centres = params.box_center[0].cpu().numpy().astype(np.float64)[selected]
    size = boxes[:, 2:] - boxes[:, :2]
    c = boxes[:, :2] + centres * size
    half = m * min(hw) / 2.0
    rects = np.concatenate([np.maximum(c - half, boxes[:, :2]), np.minimum(c + half, boxes[:, 2:])], axis=1)
    rects -= spans[:, [2, 0, 2, 0]]   # into crop coordinates

    def patch_fn(patch, k):
        out = patch.copy()
        fill_rect(out, *rects[k])
        return out
    return patch_fn


register_kernel('Cutout_Only_BBoxes', 'cv2')(_per_box('Cutout_Only_BBoxes', _prepare_cutout))
