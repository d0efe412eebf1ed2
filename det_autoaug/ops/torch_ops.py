"""Batched, differentiable torch kernels of every op in :data:`det_autoaug.ops.table.OPS`.

:func:`apply_op` validates its inputs, samples the op's random parameters when none are given
(:func:`det_autoaug.ops.params.sample_params`), runs the op's kernel on float images on the
0..255 scale, moves the boxes of geometric ops by the op's matrices (project, clip, filter by
:mod:`det_autoaug.ops.boxes`) and casts back to the input dtype. The kernels live in
:mod:`.torch_colour`, :mod:`.torch_geometric` and :mod:`.torch_bbox_only`.

Gradients with respect to the magnitude (pass it as a float tensor that requires grad):

- ``'autograd'`` ops are smooth in the magnitude and are differentiated by autograd.
- ``'straight_through'`` ops are piecewise constant in it: the forward value is the hard op and
  the backward value is the secant slope ``(op(x, hi) - op(x, lo)) / (hi - lo)`` over the
  bracket of :func:`secant_bracket`; the two extra evaluations run only when the magnitude
  requires grad.

Gradients need float images: a uint8 output is rounded and carries none.

Inputs the kernels accept (``tests/test_reliability.py`` checks every op on them):

- any size from 1 x 1 px (an op that does not fit, such as Sharpness's 3x3 filter on a 2 px high
  image, leaves the image unchanged, as PIL does), any memory format (channels_last, slices);
- uint8 and every float dtype. The kernels compute in float32 (float64 for float64 images), so
  the masks and coordinates of float16/bfloat16 images are as exact as for float32 ones (a
  bfloat16 pixel centre at x = 1000.5 would round to 1000); the result is cast back;
- NaN and infinite pixels are refused by every op (Identity included) at every magnitude (0
  included), with a ``ValueError`` naming the first one: statistics ops (Equalize,
  AutoContrast, Contrast) would spread one to a whole channel or image. The cv2 kernels take
  uint8 only, which holds neither.
"""
from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import boxes as box_ops
from .params import OpParams, sample_params
from .registry import get_kernel
from .table import OpSpec, check_magnitude, get_op

#: Half width of the secant bracket, as a fraction of the magnitude range (non-strength ops).
BRACKET_FRACTION = 0.1


class OpResult(NamedTuple):
    """What :func:`apply_op` returns.

    Attributes:
        images: ``(B, C, H, W)``, the input's dtype and device.
        boxes: ``B`` tensors ``(M_i, 4)``: projected, clipped and filtered for geometric ops,
            copies of the input otherwise; ``None`` when no boxes were given.
        keep: ``B`` bool tensors ``(N_i,)``: which input boxes survive (index labels with it);
            ``None`` when no boxes were given.
        matrices: ``(B, 3, 3)`` continuous-coordinate matrices of geometric ops, else ``None``.
    """

    images: Tensor
    boxes: Optional[List[Tensor]]
    keep: Optional[List[Tensor]]
    matrices: Optional[Tensor]


def secant_bracket(spec: OpSpec, magnitude: Tensor, height: int, width: int) -> Tuple[Tensor, Tensor]:
    """The bracket ``[lo, hi]`` of the straight-through secant slope around each magnitude.

    Strength ops (range ``[0, 1]``) use ``[0, 1]``: the hard op against the identity. Other ops
    use ``m +- BRACKET_FRACTION * (range width)`` clamped to the range, widened where the op is
    coarser than that (``OpSpec.bracket``): ``'unit'`` ``m +- 1`` (Posterize: one bit),
    ``'pixel'`` at least one pixel of edge movement (Cutout, Cutout_Only_BBoxes).

    Shape:
        ``magnitude`` ``(B,)`` -> ``(lo, hi)`` each ``(B,)``, ``lo < hi``.
    """
    lo_r, hi_r = spec.magnitude_range
    if (lo_r, hi_r) == (0.0, 1.0):
        return torch.zeros_like(magnitude), torch.ones_like(magnitude)
    half = BRACKET_FRACTION * (hi_r - lo_r)
    if spec.bracket == 'unit':
        half = 1.0
    elif spec.bracket == 'pixel':
        half = max(half, 1.0 / max(1, min(height, width)))
    return (magnitude - half).clamp(min=lo_r), (magnitude + half).clamp(max=hi_r)


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor):
        raise ValueError(f'images must be a torch.Tensor (B, C, H, W), got {type(images).__name__}')
    if images.dim() != 4:
        raise ValueError(f'images must have shape (B, C, H, W), got {tuple(images.shape)}')
    if images.shape[1] not in (1, 3):
        raise ValueError(f'images have {images.shape[1]} channels: expected 3 (RGB) or 1 (grey)')
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f'images dtype {images.dtype} is not supported: expected uint8 or a float '
                         'dtype on the 0..255 scale')
    if images.shape[0] < 1:
        raise ValueError('images hold an empty batch: expected B >= 1')
    if images.shape[2] < 1 or images.shape[3] < 1:
        raise ValueError(f'images have shape {tuple(images.shape)}: expected H >= 1 and W >= 1')
    if images.is_floating_point():
        bad = ~torch.isfinite(images.detach())
        if bool(bad.any()):
            index = tuple(bad.nonzero()[0].tolist())
            raise ValueError(f'images{list(index)}={images[index].item()} ({int(bad.sum())} such pixels): '
                             'pixels must be finite, on the 0..255 scale')


def _check_boxes(boxes: Sequence[Tensor], batch: int) -> None:
    if isinstance(boxes, Tensor) or not isinstance(boxes, Sequence):
        raise ValueError(f'boxes must be a list of B (N_i, 4) tensors, got {type(boxes).__name__}')
    if len(boxes) != batch:
        raise ValueError(f'boxes has {len(boxes)} entries for a batch of {batch} images: expected one '
                         '(N_i, 4) tensor per image')
    for i, b in enumerate(boxes):
        box_ops.check_boxes(b, f'boxes[{i}]')


def _as_magnitude(spec: OpSpec, magnitude: Union[float, Tensor], batch: int, dtype: torch.dtype,
                  device: torch.device) -> Tensor:
    """``(B,)`` magnitudes in the compute dtype, range-checked (grad kept for tensors)."""
    if isinstance(magnitude, Tensor):
        if magnitude.dim() == 0 or tuple(magnitude.shape) == (1,):
            m = magnitude.reshape(1).expand(batch)
        elif tuple(magnitude.shape) == (batch,):
            m = magnitude
        else:
            raise ValueError(f'magnitude has shape {tuple(magnitude.shape)}: expected a number, a 0-d '
                             f'tensor or a ({batch},) tensor')
        if not magnitude.is_floating_point():
            m = m.to(dtype)
        lo, hi = spec.magnitude_range
        bad = ~torch.isfinite(m) | (m < lo - 1e-9) | (m > hi + 1e-9)
        if bool(bad.any()):
            check_magnitude(spec, float(m[bad][0]))
        return m.to(device=device, dtype=dtype)
    if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)):
        raise ValueError(f'magnitude={magnitude!r} must be a number or a float tensor')
    check_magnitude(spec, magnitude)
    return torch.full((batch,), float(magnitude), dtype=dtype, device=device)


def _check_params(spec: OpSpec, params: OpParams, batch: int, counts: Optional[List[int]]) -> None:
    if not isinstance(params, OpParams):
        raise ValueError(f'params must be an OpParams, got {type(params).__name__}')
    if params.batch_size != batch:
        raise ValueError(f'params are for a batch of {params.batch_size} but the images hold {batch}')
    if 'center' in spec.draws and tuple(params.center.shape) != (batch, 2):
        raise ValueError(f'{spec.name} needs params.center of shape ({batch}, 2), got '
                         f'{tuple(params.center.shape)}')
    if 'box_index' in spec.draws:
        if tuple(params.box_index.shape) != (batch,):
            raise ValueError(f'{spec.name} needs params.box_index of shape ({batch},), got '
                             f'{tuple(params.box_index.shape)}')
        n = counts or [0] * batch
        for i, j in enumerate(params.box_index.tolist()):
            if not -1 <= j < n[i]:
                raise ValueError(f'params.box_index[{i}]={j} but image {i} has {n[i]} boxes')
    if spec.bbox_only and counts is not None:
        fields = [('box_mask', params.box_mask)]
        if 'box_center' in spec.draws:
            fields.append(('box_center', params.box_center))
        for name, values in fields:
            got = [int(v.shape[0]) for v in values]
            if got != counts:
                raise ValueError(f'params.{name} covers {got} boxes per image, but the boxes are {counts}: '
                                 'sample the params with the same boxes')


def _kernel(spec: OpSpec, params: OpParams,
            boxes: Optional[List[Tensor]]) -> Callable[[Tensor, Tensor], Tuple[Tensor, Optional[Tensor]]]:
    """``(x, m) -> (images, matrices)``: the op's registered torch kernel with its parameters bound."""
    kernel = get_kernel(spec, 'torch')
    return lambda x, m: kernel(x, m, params, boxes)


def apply_op(op: Union[str, OpSpec], images: Tensor, boxes: Optional[Sequence[Tensor]],
             magnitude: Union[float, Tensor], params: Optional[OpParams] = None, *,
             generator: Optional[torch.Generator] = None, min_size: float = box_ops.MIN_SIZE,
             min_visible: float = box_ops.MIN_VISIBLE) -> OpResult:
    """Apply one op to a batch of images and their boxes.

    Args:
        op: table name, TF alias (``'Rotate_BBox'``) or :class:`OpSpec`.
        images: ``(B, C, H, W)`` uint8, or float on the 0..255 scale (finite); C is 3 or 1
            (grey); H, W >= 1; any memory format. Not modified.
        boxes: ``B`` tensors ``(N_i, 4)`` ``(x1, y1, x2, y2)`` in pixels, or ``None``.
        magnitude: a number or a ``(B,)`` / 0-d float tensor in ``op.magnitude_range``; ``0`` is
            the identity. A tensor that requires grad gets a gradient (see the module doc).
        params: the op's random parameters for this batch; sampled with ``generator`` if ``None``.
        generator: CPU ``torch.Generator`` used when ``params`` is ``None``.
        min_size: geometric ops drop boxes whose clipped width or height is below this (px).
        min_visible: geometric ops drop boxes with less than this fraction left in the image.

    Returns:
        :class:`OpResult` ``(images, boxes, keep, matrices)``.

    Raises:
        KeyError: unknown op name.
        ValueError: magnitude out of range, images not ``(B, 1|3, H, W)`` uint8/float or holding
            NaN/inf pixels, boxes not a list of ``B`` valid ``(N, 4)`` tensors, params for another
            batch or other boxes.
    """
    spec = op if isinstance(op, OpSpec) else get_op(op)
    _check_images(images)
    batch, _, height, width = images.shape
    if boxes is not None:
        _check_boxes(boxes, batch)
        boxes = list(boxes)
    # Half precision cannot hold pixel coordinates of large images: compute in float32.
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    m = _as_magnitude(spec, magnitude, batch, dtype, images.device)
    counts = [int(b.shape[0]) for b in boxes] if boxes is not None else None
    if params is None:
        params = sample_params(spec, batch, height, width, boxes, generator=generator, device=images.device)
    _check_params(spec, params, batch, counts)
    params = params.to(images.device)
    kernel_boxes = [b.to(images.device) for b in boxes] if boxes is not None else None
    kernel = _kernel(spec, params, kernel_boxes)

    x = images.to(dtype)
    if spec.grad == 'straight_through':
        out, matrices = kernel(x, m.detach())
        if m.requires_grad:
            lo, hi = secant_bracket(spec, m.detach(), height, width)
            with torch.no_grad():
                slope = (kernel(x, hi)[0] - kernel(x, lo)[0]) / (hi - lo).view(-1, 1, 1, 1)
            out = out + (m - m.detach()).view(-1, 1, 1, 1) * slope
    else:
        out, matrices = kernel(x, m)

    if images.dtype == torch.uint8:
        # A uint8 result carries no gradient, and ``out`` is the kernels' own (``x`` is a fresh
        # copy of the uint8 input): round and clamp it in place, sparing two image-sized tensors.
        out = out.detach().round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = out.to(images.dtype)
    out_boxes, keep = None, None
    if boxes is not None:
        if matrices is not None:
            out_boxes, keep = [], []
            for i, b in enumerate(boxes):
                projected = box_ops.project_boxes(b, matrices[i].detach().to(b.device))
                kept, mask = box_ops.clip_and_filter(projected, height, width, min_size, min_visible)
                out_boxes.append(kept)
                keep.append(mask)
        else:
            out_boxes = [b.clone() for b in boxes]
            keep = [torch.ones(b.shape[0], dtype=torch.bool, device=b.device) for b in boxes]
    return OpResult(out, out_boxes, keep, matrices)
