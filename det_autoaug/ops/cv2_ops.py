"""Per-image CPU kernels of every op in the table, on ``(H, W, C)`` uint8 numpy arrays.

The kernels live with their op's torch kernel in the family files (:mod:`.colour`,
:mod:`.geometric`, :mod:`.regions`, helpers in :mod:`.cv2_common`) and are looked up in
:mod:`.registry`. These kernels are for CPU data pipelines (one image at a time, in DataLoader workers). They
replay the same :class:`~.params.OpParams` as the batched torch kernels of
:mod:`det_autoaug.ops.torch_ops` and agree with them up to interpolation and rounding
(``tests/test_ops_cpu.py`` checks every op of :data:`~.table.OPS`). Channel order is RGB, as in
the torch kernels and PIL (only Color and Contrast weigh the channels).

Which implementation each op uses, and why. cv2 and numpy only: mmcv is not imported, so these
kernels also run where OpenMMLab is not installed (the GPU suite's machines); where mmcv has the
same op, the kernel reproduces it bit for bit or the difference is named below:

- Identity: a copy.
- FlipLR / FlipUD: ``cv2.flip`` (exact). ``mmcv.imflip`` returns a strided view; making it
  contiguous costs ~40x a ``cv2.flip`` at 640 px. For FlipUD, ``image[::-1].copy()`` (row
  copies) measured ~10% slower than ``cv2.flip`` (640 px, one thread).
- Invert: ``cv2.bitwise_not``, which is ``255 - x`` on uint8 (what ``mmcv.iminvert`` computes),
  a few percent faster than ``255 - x``; a ``cv2.LUT`` took over 10x longer.
- Posterize, Solarize, SolarizeAdd, AutoContrast, Equalize, Brightness, Contrast: one 256-entry
  table per channel applied by ``cv2.LUT``. ``mmcv.posterize`` and ``mmcv.solarize`` give the
  same images (the tests check it) in 1.2-4x the time; ``mmcv.auto_contrast`` and
  ``mmcv.imequalize`` build the same tables from ``np.histogram`` and index with float/int64
  arrays (~10x slower) and only take 3 channels; ``mmcv.adjust_brightness`` truncates instead
  of rounding; ``mmcv.adjust_contrast`` blends with the rounded mean of a BGR grey image.
- Color: ``cv2.transform`` with the 3x3 matrix ``f * I + (1 - f) * grey``. ``mmcv.adjust_color``
  assumes BGR and rounds the grey image before blending.
- Sharpness: PIL's SMOOTH ``cv2.filter2D`` with the 1-px border kept (as PIL), then
  ``cv2.addWeighted``. ``mmcv.adjust_sharpness`` filters the border too (reflected).
- Blur, Smooth: ``cv2.filter2D`` with PIL's kernel and replicated borders (as the torch kernel),
  blended by the magnitude with ``cv2.addWeighted``; mmcv has no such op. These three round the
  filtered image to uint8 before blending (as PIL does), the torch path does not: +-1 level.
- Rotate: ``mmcv.imrotate``'s own calls (``cv2.getRotationMatrix2D`` about index
  ``((W - 1) / 2, (H - 1) / 2)``, which is our continuous centre ``(W / 2, H / 2)``, then
  ``cv2.warpAffine``), with our counter-clockwise angle.
- TranslateX / TranslateY: ``mmcv.imtranslate``'s own ``cv2.warpAffine`` by a float32 shift (a
  shift is the same in index and continuous coordinates).
- ShearX / ShearY: ``cv2.warpAffine`` on ``geometry.to_index_matrix(M)``: ``mmcv.imshear``
  shears about index ``(0, 0)``, half a pixel off our top-left corner.
- Cutout, BBox_Cutout: slicing. ``mmcv.cutout`` draws its own centre with ``np.random``.
- bbox-only ops: each selected box in order, on the crop of the pixels whose centres lie inside
  it. Geometric ones warp the crop with ``cv2.warpAffine`` (outside the box reads as the fill
  value 128, bilinear, as the torch kernel); Solarize / Equalize use the tables above on the
  crop (Equalize with the crop's own histogram); Cutout fills the square clipped to the box.

Inputs: any size from 1 x 1 px and any strides (copied once when cv2 needs it); uint8 only, so
no NaN pixel can reach these kernels (the torch kernels refuse NaN and inf pixels), and float
arrays are refused with a ``ValueError``. Sharpness leaves images under 3 px high or wide
unchanged (all border, as in PIL and the torch kernel).

The matrices are the torch path's own (each op's registered ``'matrix'`` or ``'box_matrix'``
kernel, built from :mod:`.geometry`), and boxes go through :func:`~.boxes.project_boxes_np` and
:func:`~.boxes.clip_and_filter_np`, the numpy twins of the torch path's
:func:`~.boxes.project_boxes` and :func:`~.boxes.clip_and_filter` (same boxes bit for bit, same
mask; torch's per-op dispatch cost more than a flip on a handful of boxes), so both paths keep
the same boxes by the same rule. Non-geometric ops return a copy of the boxes and keep them all.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch

from .boxes import MIN_SIZE, MIN_VISIBLE, check_boxes_np, clip_and_filter_np, project_boxes_np
from .params import OpParams
from .registry import get_kernel
from .table import OpSpec, check_magnitude, get_op

__all__ = ['apply_op_np']


def _check_image(image: np.ndarray) -> np.ndarray:
    """Validate and return an ``(H, W, C)`` view of ``image``."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f'image must be a numpy array (H, W, 3) or (H, W) uint8, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError(f'image must have dtype uint8, got {image.dtype}')
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f'image must have shape (H, W, 3), (H, W, 1) or (H, W), got {image.shape}')
    # cv2 rejects negative strides (e.g. a view from np.flip); a copy only when needed.
    return np.ascontiguousarray(image)


def _check_boxes_np(boxes: Optional[np.ndarray]) -> np.ndarray:
    if boxes is None:
        return np.zeros((0, 4), np.float32)
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    arr = np.asarray(boxes)
    if arr.dtype.kind not in 'fiu':
        raise ValueError(f'boxes must be a numeric (N, 4) array, got dtype {arr.dtype}')
    arr = arr.astype(np.float32)   # a copy: the caller's array is never touched
    check_boxes_np(arr)
    return arr


def apply_op_np(op: Union[str, OpSpec], image: np.ndarray, boxes: Optional[np.ndarray], magnitude: float,
                params: Optional[OpParams] = None, *, min_size: float = MIN_SIZE,
                min_visible: float = MIN_VISIBLE) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply one op of the table to one image and its boxes on the CPU.

    Args:
        op: op name, TensorFlow alias (``'Rotate_BBox'``) or :class:`~.table.OpSpec`.
        image: ``(H, W, 3)`` RGB, ``(H, W, 1)`` or ``(H, W)`` grey, uint8. Not modified.
        boxes: ``(N, 4)`` float ``(x1, y1, x2, y2)`` in continuous pixel coordinates, or
            ``None`` (no boxes). Not modified.
        magnitude: in ``OpSpec.magnitude_range``; ``0`` is the identity for every op.
        params: the op's random parameters for this image, a batch of one
            (``sample_params(op, 1, H, W, [boxes]).select(0)`` or ``params.select(i)`` of a
            batch draw, which replays the torch path exactly). Only ops that draw something need
            it: signed ops (``sign``), Cutout/BBox_Cutout (``center``, ``box_index``) and the
            bbox-only ops (``box_mask``, ``box_center``); others accept ``None``.
        min_size: geometric ops drop boxes whose clipped width or height is below this (px).
        min_visible: geometric ops drop boxes with less than this fraction of their projected
            area inside the image.

    Returns:
        ``(image, boxes, keep)``: the new image (same shape and dtype), the kept boxes
        ``(M, 4)`` float32 (projected, clipped and filtered for geometric ops, else a copy of
        the input) and ``keep`` ``(N,)`` bool, which input boxes survive (index labels and
        flags with it).

    Raises:
        KeyError: unknown op, or an op of the table without a cv2 kernel.
        ValueError: bad image (dtype, channels), boxes (shape, order), magnitude outside the
            op's range, or missing / mismatched params.
    """
    spec = op if isinstance(op, OpSpec) else get_op(op)
    kernel = get_kernel(spec, 'cv2')
    img = _check_image(image)
    box_arr = _check_boxes_np(boxes)
    if isinstance(magnitude, torch.Tensor) and magnitude.numel() == 1:
        magnitude = magnitude.item()
    if isinstance(magnitude, (bool, np.bool_)) or not isinstance(magnitude, (int, float, np.integer, np.floating)):
        raise ValueError(f'magnitude={magnitude!r} for op {spec.name!r} must be a real number')
    magnitude = float(magnitude)
    check_magnitude(spec, magnitude)
    if params is not None and params.batch_size != 1:
        raise ValueError(f'params hold a batch of {params.batch_size}: pass the parameters of this '
                         'image only (params.select(i))')
    out, matrix = kernel(img, box_arr, magnitude, params)
    if out.shape != image.shape:   # (H, W) grey input
        out = out.reshape(image.shape)
    if matrix is None:
        return out, box_arr, np.ones(len(box_arr), dtype=bool)
    kept, keep = clip_and_filter_np(project_boxes_np(box_arr, matrix), *img.shape[:2], min_size=min_size,
                                    min_visible=min_visible)
    return out, kept, keep
