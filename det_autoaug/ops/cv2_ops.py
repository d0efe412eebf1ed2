"""Per-image CPU kernels of every op in the table, on ``(H, W, C)`` uint8 numpy arrays.

These kernels are for CPU data pipelines (one image at a time, in DataLoader workers). They
replay the same :class:`~.params.OpParams` as the batched torch kernels of
:mod:`det_autoaug.ops.torch_ops` and agree with them up to interpolation and rounding
(``tests/test_ops_cpu.py`` checks every op of :data:`~.table.OPS`). Channel order is RGB, as in
the torch kernels and PIL (only Color and Contrast weigh the channels).

Which implementation each op uses, and why. cv2 and numpy only: mmcv is not imported, so these
kernels also run where OpenMMLab is not installed (the GPU suite's machines); where mmcv has the
same op, the kernel reproduces it bit for bit or the difference is named below:

- Identity: a copy.
- FlipLR / FlipUD: ``cv2.flip`` (exact). ``mmcv.imflip`` returns a strided view; making it
  contiguous costs ~40x a ``cv2.flip`` at 640 px.
- Invert: ``255 - x`` (what ``mmcv.iminvert`` computes).
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

The matrices are the torch path's own (:func:`.torch_geometric.geometric_matrix` and
:func:`.torch_bbox_only.box_matrix`, built from :mod:`.geometry`), and boxes go through
:func:`~.boxes.project_boxes` and :func:`~.boxes.clip_and_filter`, so both paths keep the same
boxes by the same rule.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Dict, Optional, Tuple, Union

import cv2
import numpy as np
import torch

from . import geometry
from .boxes import MIN_SIZE, MIN_VISIBLE, check_boxes, clip_and_filter, project_boxes
from .params import OpParams
from .table import FILL_VALUE, OpSpec, check_magnitude, get_op
from .torch_bbox_only import box_matrix
from .torch_geometric import geometric_matrix

__all__ = ['CV2_KERNELS', 'apply_op_np']

_FILL = int(FILL_VALUE)
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])
_SMOOTH_KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0
_BLUR_KERNEL = np.ones((5, 5), np.float32)
_BLUR_KERNEL[1:4, 1:4] = 0.0
_BLUR_KERNEL /= 16.0
_RAMP = np.arange(256, dtype=np.float64)
_EXACT_FLOAT_COUNTS = 1 << 24   # cv2.calcHist counts in float32: exact below 2**24 pixels

# A kernel maps (image (H, W, C) uint8, boxes (N, 4) float32, magnitude, params) to the new
# image and, for geometric ops, the continuous 3x3 matrix that moves the boxes (else None).
Kernel = Callable[[np.ndarray, np.ndarray, float, Optional[OpParams]], Tuple[np.ndarray, Optional[np.ndarray]]]


# ----------------------------------------------------------------------------- helpers

def _lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a (256,) table to every channel, or a (C, 256) table channel by channel."""
    table = np.clip(np.rint(table), 0, 255).astype(np.uint8)
    if table.ndim == 2 and image.shape[2] == 1:
        table = table[0]
    if table.ndim == 2:
        table = np.ascontiguousarray(table.T).reshape(1, 256, -1)
    return cv2.LUT(image, table).reshape(image.shape)


def _histograms(image: np.ndarray) -> np.ndarray:
    """Per-channel 256-bin histograms, ``(C, 256)`` int64."""
    channels = image.shape[2]
    if image.shape[0] * image.shape[1] < _EXACT_FLOAT_COUNTS:
        return np.stack([cv2.calcHist([image], [c], None, [256], [0, 256]).reshape(256) for c in range(channels)]
                        ).astype(np.int64)
    return np.stack([np.bincount(image[:, :, c].ravel(), minlength=256) for c in range(channels)])


def _equalize_tables(image: np.ndarray) -> np.ndarray:
    """PIL ``ImageOps.equalize`` tables, ``(C, 256)`` (identity where the step is 0)."""
    tables = np.tile(_RAMP, (image.shape[2], 1))
    for c, hist in enumerate(_histograms(image)):
        nonzero = np.flatnonzero(hist)
        step = (int(hist.sum()) - int(hist[nonzero[-1]])) // 255 if len(nonzero) else 0
        if step:
            below = np.cumsum(hist) - hist
            tables[c] = np.minimum((below + step // 2) // step, 255)
    return tables


def _autocontrast_tables(image: np.ndarray) -> np.ndarray:
    """Per-channel stretch of ``[min, max]`` to ``[0, 255]``, ``(C, 256)`` (constant channels kept)."""
    tables = np.tile(_RAMP, (image.shape[2], 1))
    for c, channel in enumerate(cv2.split(image)):
        lo, hi = cv2.minMaxLoc(channel)[:2]
        if hi > lo:
            tables[c] = (_RAMP - lo) * (255.0 / (hi - lo))
    return tables


def _filtered(image: np.ndarray, kernel: np.ndarray, keep_border: bool) -> np.ndarray:
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


def _blend(image: np.ndarray, other: np.ndarray, weight: float) -> np.ndarray:
    """``other + weight * (image - other)``, rounded and saturated to uint8."""
    return cv2.addWeighted(image, weight, other, 1.0 - weight, 0.0).reshape(image.shape)


def _index_matrices(matrices: np.ndarray) -> np.ndarray:
    """Continuous ``(K, 3, 3)`` matrices -> the ``(K, 2, 3)`` pixel-index ones cv2 warps with."""
    return geometry.to_index_matrix(torch.from_numpy(matrices))[:, :2].numpy()


def _warp(image: np.ndarray, index_matrix: np.ndarray) -> np.ndarray:
    """Bilinear warp by a ``(2, 3)`` pixel-index matrix; outside the image reads as 128."""
    h, w = image.shape[:2]
    out = cv2.warpAffine(image, index_matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(_FILL,) * 4)
    return out.reshape(image.shape)


@functools.lru_cache(maxsize=512)
def _image_matrices(name: str, magnitude: float, sign: float, height: int, width: int
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """``(continuous (3, 3), index (2, 3))`` matrices of a whole-image geometric op.

    Cached: a policy uses a few magnitudes and signs, and building them with torch costs more
    than warping a small image.
    """
    matrix = geometric_matrix(name, torch.tensor([magnitude], dtype=torch.float64),
                              torch.tensor([sign], dtype=torch.float64), height, width).numpy()
    matrix, index = matrix[0], _index_matrices(matrix)[0]
    matrix.setflags(write=False)
    index.setflags(write=False)
    return matrix, index


def _span(lo: float, hi: float, size: int) -> Tuple[int, int]:
    """Indices ``[start, stop)`` of the pixels whose centres ``j + 0.5`` lie in ``[lo, hi)``."""
    start = min(max(math.ceil(lo - 0.5), 0), size)
    stop = min(max(math.ceil(hi - 0.5), 0), size)
    return start, max(start, stop)


def _fill_rect(img: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> None:
    """Set the pixels whose centres lie in ``[x1, x2) x [y1, y2)`` to the fill value, in place."""
    c0, c1 = _span(x1, x2, img.shape[1])
    r0, r1 = _span(y1, y2, img.shape[0])
    img[r0:r1, c0:c1] = _FILL


def _need(params: Optional[OpParams], op: str) -> OpParams:
    if params is None:
        raise ValueError(f'op {op!r} draws random parameters: pass params, e.g. '
                         f'sample_params({op!r}, 1, H, W, [boxes]).select(0)')
    return params


def _sign(params: Optional[OpParams], op: str) -> float:
    return float(_need(params, op).sign[0])


def _center(params: Optional[OpParams], op: str) -> Tuple[float, float]:
    center = _need(params, op).center
    if tuple(center.shape) != (1, 2):
        raise ValueError(f'op {op!r} needs params.center of shape (1, 2), got {tuple(center.shape)}: '
                         f'sample the params for {op!r}')
    return float(center[0, 0]), float(center[0, 1])


# ----------------------------------------------------------------------------- whole-image ops

def _identity(img, boxes, m, params):
    return img.copy(), None


def _flip(name: str) -> Kernel:
    code = 1 if name == 'FlipLR' else 0

    def kernel(img, boxes, m, params):
        matrix, _ = _image_matrices(name, 1.0 if m > 0 else 0.0, 1.0, *img.shape[:2])
        return (cv2.flip(img, code).reshape(img.shape) if m > 0 else img.copy()), matrix
    return kernel


def _strength_lut(tables: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    def kernel(img, boxes, m, params):
        return (_lut(img, tables(img)) if m > 0 else img.copy()), None
    return kernel


def _invert(img, boxes, m, params):
    return ((255 - img) if m > 0 else img.copy()), None


def _filter_blend(filt: np.ndarray) -> Kernel:
    def kernel(img, boxes, m, params):
        # A blend weight, not a strength: m = 0.5 is half-way to the filtered image.
        return (_blend(_filtered(img, filt, keep_border=False), img, m) if m > 0 else img.copy()), None
    return kernel


def _posterize_table(m: float) -> np.ndarray:
    shift = int(round(m))
    return ((np.arange(256) >> shift) << shift).astype(np.float64)


def _solarize_table(m: float) -> np.ndarray:
    return np.where(_RAMP >= 256.0 - m, 255.0 - _RAMP, _RAMP)


def _posterize(img, boxes, m, params):
    return _lut(img, _posterize_table(m)), None


def _solarize(img, boxes, m, params):
    return _lut(img, _solarize_table(m)), None


def _solarize_add(img, boxes, m, params):
    return _lut(img, np.where(_RAMP < 128.0, np.minimum(_RAMP + m, 255.0), _RAMP)), None


def _color(img, boxes, m, params):
    if img.shape[2] == 1:   # a grey image is its own greyscale
        return img.copy(), None
    f = 1.0 + m
    mix = f * np.eye(3) + (1.0 - f) * np.tile(_GREY_WEIGHTS, (3, 1))
    return cv2.transform(img, mix).reshape(img.shape), None


def _contrast(img, boxes, m, params):
    f = 1.0 + m
    means = np.asarray(cv2.mean(img)[:img.shape[2]])
    mean = float(means @ (_GREY_WEIGHTS if img.shape[2] == 3 else np.ones(1)))
    return _lut(img, f * _RAMP + (1.0 - f) * mean), None


def _brightness(img, boxes, m, params):
    return _lut(img, (1.0 + m) * _RAMP), None


def _sharpness(img, boxes, m, params):
    return _blend(img, _filtered(img, _SMOOTH_KERNEL, keep_border=True), 1.0 + m), None


def _rotate(img, boxes, m, params):
    sign = _sign(params, 'Rotate')
    matrix, _ = _image_matrices('Rotate', m, sign, *img.shape[:2])
    h, w = img.shape[:2]
    index = cv2.getRotationMatrix2D(((w - 1) * 0.5, (h - 1) * 0.5), sign * m, 1.0)
    out = cv2.warpAffine(img, index, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(_FILL,) * 3)
    return out.reshape(img.shape), matrix


def _shear(name: str) -> Kernel:
    def kernel(img, boxes, m, params):
        matrix, index = _image_matrices(name, m, _sign(params, name), *img.shape[:2])
        return _warp(img, index), matrix
    return kernel


def _translate(name: str) -> Kernel:
    horizontal = name == 'TranslateX'

    def kernel(img, boxes, m, params):
        h, w = img.shape[:2]
        sign = _sign(params, name)
        matrix, _ = _image_matrices(name, m, sign, h, w)
        shift = sign * m * (w if horizontal else h)
        index = np.float32([[1, 0, shift], [0, 1, 0]] if horizontal else [[1, 0, 0], [0, 1, shift]])
        out = cv2.warpAffine(img, index, (w, h), flags=cv2.INTER_LINEAR, borderValue=(_FILL,) * min(img.shape[2], 3))
        return out.reshape(img.shape), matrix
    return kernel


def _cutout(img, boxes, m, params):
    fx, fy = _center(params, 'Cutout')
    out = img.copy()
    if m > 0:
        h, w = img.shape[:2]
        half = m * min(h, w) / 2.0
        _fill_rect(out, fx * w - half, fy * h - half, fx * w + half, fy * h + half)
    return out, None


def _bbox_cutout(img, boxes, m, params):
    fx, fy = _center(params, 'BBox_Cutout')
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
        _fill_rect(out, cx - hw, cy - hh, cx + hw, cy + hh)
    return out, None


# ----------------------------------------------------------------------------- bbox-only ops

# prepare(boxes (K, 4), spans (K, 4) [r0, r1, c0, c1], selected (K,), magnitude, params, (H, W))
# -> patch_fn(patch, k): the new content of the k-th selected box's crop. ``patch`` holds exactly
# the pixels whose centres lie inside the box (crop origin (c0, r0)) on the running image.
PatchFn = Callable[[np.ndarray, int], np.ndarray]
Prepare = Callable[[np.ndarray, np.ndarray, np.ndarray, float, OpParams, Tuple[int, int]], PatchFn]


def _per_box(op: str, prepare: Prepare) -> Kernel:
    """A bbox-only kernel: rewrite each selected box's crop, in box order.

    Boxes are processed on the running image, so a later box sees what an earlier overlapping
    one wrote (as in the TensorFlow reference and the torch kernel).
    """
    def kernel(img, boxes, m, params):
        params = _need(params, op)
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
        spans = np.array([_span(b[1], b[3], h) + _span(b[0], b[2], w) for b in boxes[selected].tolist()],
                         np.int64).reshape(-1, 4)
        patch_fn = prepare(boxes[selected].astype(np.float64), spans, selected, m, params, (h, w))
        for k, (r0, r1, c0, c1) in enumerate(spans.tolist()):
            if r1 > r0 and c1 > c0:
                out[r0:r1, c0:c1] = patch_fn(out[r0:r1, c0:c1], k)
        return out, None
    return kernel


def _box_warp(op: str) -> Kernel:
    """Geometric bbox-only op: warp each box's crop by the torch path's matrix about that box.

    Outside the crop reads as the fill value: the box content on a grey canvas.
    """
    def prepare(boxes, spans, selected, m, params, hw):
        k = len(boxes)
        if k == 0:
            return lambda patch, i: patch
        matrices = box_matrix(op, torch.from_numpy(boxes), torch.full((k,), m, dtype=torch.float64),
                              params.sign[:1].to(torch.float64).expand(k), *hw)
        # The same maps in each crop's coordinates: T(origin) on both sides.
        origin = torch.eye(3, dtype=torch.float64).repeat(k, 1, 1)
        origin[:, 0, 2], origin[:, 1, 2] = torch.from_numpy(spans[:, 2]), torch.from_numpy(spans[:, 0])
        local = torch.linalg.inv(origin) @ matrices @ origin
        index = _index_matrices(local.numpy())
        return lambda patch, i: _warp(patch, index[i])
    return _per_box(op, prepare)


def _prepare_solarize(boxes, spans, selected, m, params, hw):
    table = _solarize_table(m)
    return lambda patch, k: _lut(patch, table)


def _prepare_equalize(boxes, spans, selected, m, params, hw):
    return lambda patch, k: _lut(patch, _equalize_tables(patch))


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
        _fill_rect(out, *rects[k])
        return out
    return patch_fn


#: The cv2 kernel of every op, by table name (``tests/test_ops_cpu.py`` checks it covers OPS).
CV2_KERNELS: Dict[str, Kernel] = {
    'Identity': _identity,
    'FlipLR': _flip('FlipLR'),
    'FlipUD': _flip('FlipUD'),
    'AutoContrast': _strength_lut(_autocontrast_tables),
    'Equalize': _strength_lut(_equalize_tables),
    'Invert': _invert,
    'Blur': _filter_blend(_BLUR_KERNEL),
    'Smooth': _filter_blend(_SMOOTH_KERNEL),
    'Rotate': _rotate,
    'ShearX': _shear('ShearX'),
    'ShearY': _shear('ShearY'),
    'TranslateX': _translate('TranslateX'),
    'TranslateY': _translate('TranslateY'),
    'Posterize': _posterize,
    'Solarize': _solarize,
    'SolarizeAdd': _solarize_add,
    'Color': _color,
    'Contrast': _contrast,
    'Brightness': _brightness,
    'Sharpness': _sharpness,
    'Cutout': _cutout,
    'BBox_Cutout': _bbox_cutout,
    'Rotate_Only_BBoxes': _box_warp('Rotate_Only_BBoxes'),
    'ShearX_Only_BBoxes': _box_warp('ShearX_Only_BBoxes'),
    'ShearY_Only_BBoxes': _box_warp('ShearY_Only_BBoxes'),
    'TranslateX_Only_BBoxes': _box_warp('TranslateX_Only_BBoxes'),
    'TranslateY_Only_BBoxes': _box_warp('TranslateY_Only_BBoxes'),
    'Flip_Only_BBoxes': _box_warp('Flip_Only_BBoxes'),
    'Solarize_Only_BBoxes': _per_box('Solarize_Only_BBoxes', _prepare_solarize),
    'Equalize_Only_BBoxes': _per_box('Equalize_Only_BBoxes', _prepare_equalize),
    'Cutout_Only_BBoxes': _per_box('Cutout_Only_BBoxes', _prepare_cutout),
}


# ----------------------------------------------------------------------------- public entry point

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
    check_boxes(torch.from_numpy(arr))
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
    kernel = CV2_KERNELS.get(spec.name)
    if kernel is None:
        raise KeyError(f'op {spec.name!r} has no cv2 kernel; cv2 kernels exist for {sorted(CV2_KERNELS)}')
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
    out = out.reshape(image.shape)
    if matrix is None:
        return out, box_arr, np.ones(len(box_arr), dtype=bool)
    h, w = img.shape[:2]
    projected = project_boxes(torch.from_numpy(box_arr), torch.tensor(matrix))
    kept, keep = clip_and_filter(projected, h, w, min_size=min_size, min_visible=min_visible)
    return out, kept.numpy().astype(np.float32), keep.numpy()
