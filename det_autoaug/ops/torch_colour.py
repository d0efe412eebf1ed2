"""Batched colour kernels on float images in the 0..255 range (PIL / TF semantics).

Every kernel takes ``x`` ``(B, C, H, W)`` float (C is 1 or 3; one channel is grey) and a
per-sample magnitude ``m`` ``(B,)`` of the same dtype, returns a new ``(B, C, H, W)`` tensor and
is the identity at ``m == 0``. Strength ops (magnitude range ``[0, 1]``) apply the full op where
``m > 0``. Kernels are written with tensor ops only, so they run on any device.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

_GREY_WEIGHTS = (0.299, 0.587, 0.114)   # PIL's ITU-R 601-2 luma, as ImageEnhance.Color uses
# PIL ImageFilter kernels (weights before normalisation by their sum).
_SMOOTH = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))
_BLUR = ((1.0, 1.0, 1.0, 1.0, 1.0), (1.0, 0.0, 0.0, 0.0, 1.0), (1.0, 0.0, 0.0, 0.0, 1.0),
         (1.0, 0.0, 0.0, 0.0, 1.0), (1.0, 1.0, 1.0, 1.0, 1.0))


def _per_sample(m: Tensor) -> Tensor:
    return m.view(-1, 1, 1, 1)


def _where_on(m: Tensor, applied: Tensor, x: Tensor) -> Tensor:
    """``applied`` where the strength ``m > 0``, else ``x``."""
    return torch.where(_per_sample(m) > 0, applied, x)


def _blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL ``Image.blend(degenerate, x, factor)`` clipped to [0, 255] (factor 1 = identity)."""
    return (degenerate + _per_sample(factor) * (x - degenerate)).clamp(0.0, 255.0)


def grey(x: Tensor) -> Tensor:
    """Greyscale ``L`` of RGB images (a 1-channel image is its own grey). ``(B,C,H,W)->(B,1,H,W)``."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def filter2d(x: Tensor, kernel, padding: str = 'replicate') -> Tensor:
    """Depthwise filter with a normalised PIL kernel; ``'replicate'`` pads, ``'keep'`` keeps the
    border (as PIL's ``Image.filter`` does) where the kernel does not fit, so an image with no
    interior pixel (under 3 px high or wide for a 3x3 kernel) comes back unchanged, as in PIL."""
    k = torch.tensor(kernel, dtype=x.dtype, device=x.device)
    k = (k / k.sum()).expand(x.shape[1], 1, *k.shape)
    r = k.shape[-1] // 2
    if padding == 'replicate':
        return F.conv2d(F.pad(x, (r, r, r, r), mode='replicate'), k, groups=x.shape[1])
    out = x.clone()
    if x.shape[-2] > 2 * r and x.shape[-1] > 2 * r:
        out[..., r:-r, r:-r] = F.conv2d(x, k, groups=x.shape[1])
    return out


def identity(x: Tensor, m: Tensor) -> Tensor:
    return x.clone()


def invert(x: Tensor, m: Tensor) -> Tensor:
    return _where_on(m, 255.0 - x, x)


def autocontrast(x: Tensor, m: Tensor) -> Tensor:
    """Stretch each channel's [min, max] to [0, 255]; constant channels are left as they are."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    stretched = (x - lo) * (255.0 / span.clamp(min=1e-6))
    return _where_on(m, torch.where(span > 0, stretched, x).clamp(0.0, 255.0), x)


def equalize(x: Tensor, m: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """PIL ``ImageOps.equalize`` per channel, on the image rounded to integer levels.

    Args:
        x: ``(B, C, H, W)`` float images.
        m: ``(B,)`` strength; applied where ``m > 0``.
        mask: optional ``(B, 1, H, W)`` bool: only these pixels enter the histogram (the result
            is still computed for every pixel; the caller composites it).
    """
    b, c, h, w = x.shape
    # reshape, not view: a channels_last or sliced batch has no (B * C, H * W) view.
    levels = x.detach().round().clamp(0, 255).long().reshape(b * c, h * w)
    weight = torch.ones_like(levels) if mask is None else \
        mask.expand(b, c, h, w).reshape(b * c, h * w).long()
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, levels, weight)
    bins = torch.arange(256, device=x.device)
    last_bin = torch.where(hist > 0, bins, -1).amax(dim=1, keepdim=True)
    last_count = hist.gather(1, last_bin.clamp(min=0))
    step = (hist.sum(dim=1, keepdim=True) - last_count) // 255
    # lut[i] = (step // 2 + number of pixels below level i) // step, as PIL builds it.
    below = hist.cumsum(dim=1) - hist
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp(0, 255)
    lut = torch.where(step > 0, lut, bins.expand_as(lut))
    out = lut.gather(1, levels).view(b, c, h, w).to(x.dtype)
    # Where the lut is the identity, keep the exact (possibly fractional) input values.
    out = torch.where((step > 0).view(b, c, 1, 1), out, x)
    return _where_on(m, out, x)


def posterize(x: Tensor, m: Tensor) -> Tensor:
    """Keep the ``8 - round(m)`` high bits (at least one): ``floor(x / 2^s) * 2^s``."""
    shift = _per_sample(m).detach().round().clamp(0, 7)
    q = torch.pow(2.0, shift).to(x.dtype)
    # s = 0 keeps every bit: the identity, also for fractional levels, which floor would truncate.
    return torch.where(shift > 0, torch.floor(x / q) * q, x)


def solarize(x: Tensor, m: Tensor) -> Tensor:
    """Invert pixels ``>= 256 - m`` (``m = 0``: threshold 256, identity)."""
    return torch.where(x >= 256.0 - _per_sample(m), 255.0 - x, x)


def solarize_add(x: Tensor, m: Tensor) -> Tensor:
    """Add ``m`` to pixels below 128, clipped to 255."""
    return torch.where(x < 128.0, (x + _per_sample(m)).clamp(max=255.0), x)


def color(x: Tensor, m: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Color`` with factor ``1 + m``."""
    return _blend(grey(x).expand_as(x), x, 1.0 + m)


def contrast(x: Tensor, m: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Contrast`` with factor ``1 + m``: blend with the mean grey level."""
    mean = grey(x).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(mean.expand_as(x), x, 1.0 + m)


def brightness(x: Tensor, m: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Brightness`` with factor ``1 + m``: blend with black."""
    return _blend(torch.zeros_like(x), x, 1.0 + m)


def sharpness(x: Tensor, m: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Sharpness`` with factor ``1 + m``: blend with the SMOOTH-filtered
    image whose 1-pixel border is the original's (images under 3 px high or wide: all border,
    so unchanged, as in PIL)."""
    return _blend(filter2d(x, _SMOOTH, padding='keep'), x, 1.0 + m)


def blur(x: Tensor, m: Tensor) -> Tensor:
    """``x + m * (BLUR(x) - x)``: PIL's 5x5 ring kernel, replicate padding."""
    return x + _per_sample(m) * (filter2d(x, _BLUR) - x)


def smooth(x: Tensor, m: Tensor) -> Tensor:
    """``x + m * (SMOOTH(x) - x)``: PIL's 3x3 SMOOTH kernel, replicate padding."""
    return x + _per_sample(m) * (filter2d(x, _SMOOTH) - x)

