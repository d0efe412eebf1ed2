"""The bbox-only warps' compiled loop (det_autoaug.ops.box_warp_numba) against the torch layout.

The torch layout is checked against the box-by-box kernel it replaced in
test_bbox_only_vectorised.py (which runs every test on both paths); here: every channel count
(the loop unrolls three channels and loops over the others), when the loop runs and when it does
not, and its inputs.
"""
from __future__ import annotations

import sys

import pytest
import torch

from det_autoaug.ops import box_warp_numba, get_op, sample_params
from det_autoaug.ops.registry import kernels
from det_autoaug.ops.table import FILL_VALUE
from det_autoaug.ops.torch_bbox_only import bbox_only

# The bbox-only ops that warp each box's content (those with a box matrix).
WARPS = sorted(kernels('box_matrix'))


@pytest.fixture
def loop_calls(monkeypatch):
    """How many times the kernel called the compiled loop."""
    calls = []
    real = box_warp_numba.warp_boxes_

    def counted(*args):
        calls.append(1)
        return real(*args)
    monkeypatch.setattr(box_warp_numba, 'warp_boxes_', counted)
    return calls


def _case(name, channels, dtype, seed, height=37, width=53):
    """Two images: overlapping boxes of every size, boxes across the border, a 1 px and an empty box."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, channels, height, width, generator=g, dtype=torch.float64).mul(255).to(dtype)
    centres = torch.rand(30, 2, generator=g, dtype=torch.float64) * torch.tensor([width, height])
    sides = torch.exp(torch.rand(30, 2, generator=g, dtype=torch.float64) * 3.5) * 0.7
    edge = torch.tensor([[-4.0, -3.0, 20.5, 12.2], [width - 9.7, height - 5.1, width + 6.0, height + 2.0],
                         [3.0, 4.0, 4.0, 5.0], [6.0, 6.0, 6.0, 9.0]], dtype=torch.float64)
    boxes = [torch.cat([torch.cat([centres - sides / 2, centres + sides / 2], dim=1), edge]).float(), edge[:2].float()]
    params = sample_params(name, 2, height, width, boxes, generator=g, box_prob=0.8)
    lo, hi = get_op(name).magnitude_range
    magnitude = torch.tensor([lo + 0.35 * (hi - lo), hi], dtype=dtype)
    return (name, images, magnitude, params.sign.to(dtype), boxes, params.box_mask, params.box_center)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('channels', [1, 2, 3, 4])
@pytest.mark.parametrize('name', WARPS)
def test_the_loop_equals_the_torch_layout(name, channels, dtype, loop_calls):
    args = _case(name, channels, dtype, seed=channels)
    with box_warp_numba.switched(False):
        layout = bbox_only(*args)
    assert not loop_calls
    got = bbox_only(*args)
    assert loop_calls and got.dtype == dtype and got.shape == layout.shape
    # The torch layout rounds its float32 sample points to 2^-17 px here; the loop does not.
    torch.testing.assert_close(got, layout, rtol=0, atol=1e-9 if dtype == torch.float64 else 2e-3)
    # Outside the selected boxes nothing moved.
    changed = (got != args[1]).any(dim=1)
    assert not (changed & ~_box_union(args)).any()


def _box_union(args):
    """Where the selected boxes' pixels are (centres inside), per image: ``(B, H, W)``."""
    _, images, _, _, boxes, masks, _ = args
    height, width = images.shape[-2:]
    ys, xs = torch.arange(height)[:, None] + 0.5, torch.arange(width) + 0.5
    union = torch.zeros(images.shape[0], height, width, dtype=torch.bool)
    for i, (b, m) in enumerate(zip(boxes, masks)):
        for x1, y1, x2, y2 in b[m].tolist():
            union[i] |= (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    return union


def test_the_torch_layout_runs_where_the_loop_does_not_apply(loop_calls):
    name, images, magnitude, *rest = _case('Rotate_Only_BBoxes', 3, torch.float32, seed=5)
    tracked = bbox_only(name, images, magnitude.clone().requires_grad_(True), *rest)
    assert tracked.grad_fn is not None and not loop_calls
    with torch.no_grad():   # no gradient asked: the loop runs
        bbox_only(name, images, magnitude.clone().requires_grad_(True), *rest)
    assert len(loop_calls) == 1
    for dtype in (torch.float16, torch.bfloat16):
        bbox_only(name, images.to(dtype), magnitude.to(dtype), *rest)
    with box_warp_numba.switched(False):
        bbox_only(name, images, magnitude, *rest)
    assert len(loop_calls) == 1


def test_without_numba_the_torch_layout_runs_after_a_warning(monkeypatch, loop_calls):
    args = _case('ShearX_Only_BBoxes', 3, torch.float32, seed=6)
    with box_warp_numba.switched(False):
        expected = bbox_only(*args)
    monkeypatch.setitem(sys.modules, 'numba', None)   # import numba now raises ImportError
    box_warp_numba._compiled.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match='numba is not installed'):
            got = bbox_only(*args)
    finally:
        box_warp_numba._compiled.cache_clear()
    assert torch.equal(got, expected) and not loop_calls


def test_sample_points_far_away_or_not_finite_give_the_fill_value():
    images = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 255
    spans = torch.tensor([[1, 4, 2, 6], [5, 9, 0, 3], [0, 2, 8, 11]])
    far = torch.tensor([[1.0, 0.0, 1e12], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    inverse = torch.stack([far, torch.full((3, 3), float('nan')), torch.full((3, 3), float('inf'))])
    got = box_warp_numba.warp_boxes_(images.clone(), torch.zeros(3, dtype=torch.long), spans, inverse)
    inside = torch.zeros(9, 11, dtype=torch.bool)
    for r0, r1, c0, c1 in spans.tolist():
        inside[r0:r1, c0:c1] = True
    assert torch.equal(got[0][:, inside], torch.full_like(got[0][:, inside], FILL_VALUE))
    assert torch.equal(got[0][:, ~inside], images[0][:, ~inside])


def test_the_identity_keeps_every_pixel():
    images = torch.rand(2, 4, 13, 17, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 255
    spans = torch.tensor([[0, 13, 0, 17], [2, 5, 3, 4], [12, 13, 16, 17]])
    got = box_warp_numba.warp_boxes_(images.clone(), torch.tensor([0, 1, 1]), spans, torch.eye(3).repeat(3, 1, 1))
    torch.testing.assert_close(got, images, rtol=0, atol=1e-12)


def test_bad_inputs_are_refused():
    images = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match='contiguous'):
        box_warp_numba.warp_boxes_(images.contiguous(memory_format=torch.channels_last), torch.zeros(1),
                                   torch.tensor([[0, 2, 0, 2]]), torch.eye(3)[None])
    with pytest.raises(ValueError, match=r'non-empty spans, got \[\[3, 3, 0, 2\]\]'):
        box_warp_numba.warp_boxes_(images, torch.zeros(2), torch.tensor([[0, 2, 0, 2], [3, 3, 0, 2]]),
                                   torch.eye(3).repeat(2, 1, 1))
