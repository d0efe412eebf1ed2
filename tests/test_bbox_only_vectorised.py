"""The box-batched bbox-only kernel equals the box-by-box one it replaced (issue 15 item 5).

``_reference_bbox_only`` below is a verbatim copy of ``det_autoaug.ops.torch_bbox_only.bbox_only``
as it was before the crops were batched (one full-image pass per box index, ``rect_mask`` and
``_centred`` included; ``pad_boxes`` and ``box_matrix``, unchanged, are imported), kept here, and
only here, as the reference. Tolerances: float64
images 1e-9; float32 images exact, except the warps, which round their sample points
differently (``_assert_float32_warp_as_accurate``): within 1e-2 of the old kernel on the small
images, which is itself up to ~5e-3 off its own float64 result there; uint8 images exact except
warped values on a rounding boundary (at most 1 level, at most 0.1% of the pixels).

Every test runs twice: with the warps' compiled loop (:mod:`det_autoaug.ops.box_warp_numba`,
which the kernel uses on the CPU when no gradient is asked) and with the torch layout alone (what
runs with a gradient and on a GPU).
"""
from __future__ import annotations

from typing import List

import pytest
import torch
from torch import Tensor

from det_autoaug.ops import apply_op, box_warp_numba, geometry, get_op, sample_params
from det_autoaug.ops.table import FILL_VALUE, OPS
from det_autoaug.ops.torch_bbox_only import (
    _levels,
    _live_rects,
    _spans,
    bbox_crops,
    bbox_only,
    box_matrix,
    pad_boxes,
)
from det_autoaug.ops.torch_colour import equalize, solarize
from det_autoaug.ops.torch_geometric import warp

BBOX_ONLY = [op.name for op in OPS if op.bbox_only]
WARPS = {'Rotate_Only_BBoxes', 'ShearX_Only_BBoxes', 'ShearY_Only_BBoxes', 'TranslateX_Only_BBoxes',
         'TranslateY_Only_BBoxes', 'Flip_Only_BBoxes'}
AUTOGRAD = [name for name in BBOX_ONLY if get_op(name).grad == 'autograd']


@pytest.fixture(autouse=True, params=['compiled', 'torch-layout'])
def warp_path(request):
    """Run the test with the compiled loop for the warps, then with the torch layout alone."""
    compiled = request.param == 'compiled'
    if compiled and not box_warp_numba.applies(torch.zeros(1), torch.zeros(1)):
        pytest.fail('the compiled loop does not apply on the CPU: numba is missing (pip install -r requirements.txt)')
    with box_warp_numba.switched(compiled):
        yield request.param


# ----------------------------------------------------------------------------- reference (old kernel)

def _reference_rect_mask(x1, y1, x2, y2, height, width):
    xs = torch.arange(width, device=x1.device, dtype=x1.dtype) + 0.5
    ys = torch.arange(height, device=x1.device, dtype=x1.dtype) + 0.5
    in_x = (xs >= x1[:, None]) & (xs < x2[:, None])
    in_y = (ys >= y1[:, None]) & (ys < y2[:, None])
    return (in_y[:, :, None] & in_x[:, None, :])[:, None]


def _reference_centred(cx, cy, half_w, half_h, height, width):
    return _reference_rect_mask(cx - half_w, cy - half_h, cx + half_w, cy + half_h, height, width)


def _reference_bbox_only(name: str, images: Tensor, magnitude: Tensor, sign: Tensor, boxes: List[Tensor],
                         box_mask: List[Tensor], box_center: List[Tensor]) -> Tensor:
    """REFERENCE ONLY: the pre-vectorisation kernel, one full-image pass per box index."""
    height, width = images.shape[-2:]
    padded, selected = pad_boxes(boxes, box_mask, images.device, images.dtype)
    active = [j for j, on in enumerate(selected.any(dim=0).tolist()) if on]
    out = images
    if name == 'Cutout_Only_BBoxes':
        centres, _ = pad_boxes(box_center, box_mask, images.device, images.dtype, cols=2)
        half = magnitude.detach().to(images.dtype) * min(height, width) / 2
    for j in active:
        x1, y1, x2, y2 = padded[:, j].unbind(-1)
        inside = _reference_rect_mask(x1, y1, x2, y2, height, width) & selected[:, j].view(-1, 1, 1, 1)
        if name in ('Solarize_Only_BBoxes',):
            out = torch.where(inside, solarize(out, magnitude), out)
        elif name == 'Equalize_Only_BBoxes':
            out = torch.where(inside, equalize(out, magnitude, mask=inside), out)
        elif name == 'Cutout_Only_BBoxes':
            cx = x1 + centres[:, j, 0] * (x2 - x1)
            cy = y1 + centres[:, j, 1] * (y2 - y1)
            out = out.masked_fill(inside & _reference_centred(cx, cy, half, half, height, width), FILL_VALUE)
        else:
            matrix = box_matrix(name, padded[:, j], magnitude, sign, height, width)
            source = torch.where(inside, out, torch.full_like(out, FILL_VALUE))
            out = torch.where(inside, warp(source, matrix), out)
    return out if active else images.clone()


# ----------------------------------------------------------------------------- cases

def _boxes(n: int, height: int, width: int, g: torch.Generator) -> Tensor:
    """``n`` boxes: random (overlapping), plus edge-touching, outside-reaching and sub-pixel ones."""
    if n == 0:
        return torch.zeros(0, 4)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    wh = (torch.rand(n, 2, generator=g) * 0.5 + 0.05) * torch.tensor([width, height])
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1)
    special = torch.tensor([[0.0, 0.0, width * 0.4, height * 0.3],              # top-left corner
                            [width * 0.6, height * 0.5, float(width), float(height)],   # bottom-right
                            [-3.0, height * 0.2, width * 0.3, height * 0.9],    # reaches outside
                            [width * 0.2, height * 0.2, width * 0.2 + 0.4, height * 0.6],   # < 1 px wide
                            [1.5, 2.25, width - 1.5, height - 2.75]])           # nearly the whole image
    boxes[:min(n, 5)] = special[:min(n, 5)]
    return boxes


def _case(name: str, counts: List[int], dtype: torch.dtype, seed: int, height: int = 40, width: int = 56,
          box_prob: float = 0.8):
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(len(counts), 3, height, width, generator=g) * 255).round().to(dtype)
    boxes = [_boxes(n, height, width, g) for n in counts]
    params = sample_params(name, len(counts), height, width, boxes, generator=g, box_prob=box_prob)
    lo, hi = get_op(name).magnitude_range
    magnitude = lo + (0.3 + 0.6 * torch.rand(len(counts), generator=g)) * (hi - lo)
    return images, boxes, params, magnitude


def _kernels(name, images, boxes, params, magnitude):
    x = images.to(torch.float64 if images.dtype == torch.float64 else torch.float32)
    m = magnitude.to(x.dtype)
    args = (name, x, m, params.sign.to(x.dtype), boxes, params.box_mask, params.box_center)
    return bbox_only(*args), _reference_bbox_only(*args)


COUNTS = [[0], [1], [5], [50], [0, 5, 1], [50, 5]]


def _assert_float32_warp_as_accurate(name, images, boxes, params, magnitude):
    """The float32 warps of both kernels round differently (the old one its sample points at the
    image's scale, the new one to a quantum set by the image size): their distance to the float64
    result is of the same order, and grows with the image side."""
    got, expected = _kernels(name, images, boxes, params, magnitude)
    _, truth = _kernels(name, images.double(), boxes, params, magnitude)
    old_error = float((expected.double() - truth).abs().max())
    new_error = float((got.double() - truth).abs().max())
    assert new_error <= 2 * old_error + 1e-3, (new_error, old_error)
    assert old_error < 0.05, old_error


@pytest.mark.parametrize('counts', COUNTS, ids=lambda c: 'boxes' + '-'.join(map(str, c)))
@pytest.mark.parametrize('name', BBOX_ONLY)
def test_equals_the_box_by_box_kernel(name, counts):
    for seed, dtype in ((0, torch.float64), (1, torch.float32)):
        images, boxes, params, magnitude = _case(name, counts, dtype, seed)
        got, expected = _kernels(name, images, boxes, params, magnitude)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        if dtype == torch.float32 and name in WARPS:
            _assert_float32_warp_as_accurate(name, images, boxes, params, magnitude)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-2)
        else:
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-9 if dtype == torch.float64 else 0.0)


@pytest.mark.parametrize('name', ['Rotate_Only_BBoxes', 'ShearY_Only_BBoxes'])
def test_large_image_warps_are_as_accurate_as_before(name):
    images, boxes, params, magnitude = _case(name, [20], torch.float32, seed=8, height=240, width=320)
    _assert_float32_warp_as_accurate(name, images, boxes, params, magnitude)
    got, expected = _kernels(name, images.double(), boxes, params, magnitude)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize('name', BBOX_ONLY)
def test_uint8_through_apply_op_equals_the_box_by_box_kernel(name):
    images, boxes, params, magnitude = _case(name, [50, 5], torch.uint8, seed=2)
    got = apply_op(name, images, boxes, magnitude, params).images
    _, expected = _kernels(name, images, boxes, params, magnitude)
    expected = expected.round().clamp(0, 255).to(torch.uint8)
    diff = (got.int() - expected.int()).abs()
    if name in WARPS:
        assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) <= 1e-3
    else:
        assert torch.equal(got, expected)


def test_dense_overlap_keeps_the_box_order():
    # Each box overlaps the previous one: every box is its own level, each sees the one before.
    boxes = [torch.tensor([[2.0 + k, 2.0 + k, 20.0 + k, 18.0 + k] for k in range(12)])]
    images = (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 255).round()
    params = sample_params('Rotate_Only_BBoxes', 1, 32, 32, boxes, box_prob=1.0)
    for name in ('Rotate_Only_BBoxes', 'Solarize_Only_BBoxes', 'Equalize_Only_BBoxes'):
        got, expected = _kernels(name, images, boxes, params, torch.tensor([get_op(name).magnitude_range[1]]))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize('name', sorted(WARPS))
def test_a_box_does_not_depend_on_the_rest_of_the_batch(name):
    # Exactly, not within a tolerance: each crop is sampled in its own coordinates.
    images, boxes, params, magnitude = _case(name, [50, 5, 1], torch.float32, seed=9)
    batched, _ = _kernels(name, images, boxes, params, magnitude)
    for i in range(3):
        single, _ = _kernels(name, images[i:i + 1], boxes[i:i + 1], params.select(i), magnitude[i:i + 1])
        assert torch.equal(single, batched[i:i + 1])


def test_channels_last_and_sliced_inputs():
    images, boxes, params, magnitude = _case('Rotate_Only_BBoxes', [5, 5], torch.float32, seed=4)
    expected, _ = _kernels('Rotate_Only_BBoxes', images, boxes, params, magnitude)
    for variant in (images.contiguous(memory_format=torch.channels_last),
                    torch.cat([images, images], dim=-1)[..., :images.shape[-1]]):
        got, _ = _kernels('Rotate_Only_BBoxes', variant, boxes, params, magnitude)
        assert torch.equal(got, expected)
        assert got.is_contiguous()


@pytest.mark.parametrize('name', AUTOGRAD)
def test_gradients_equal_the_box_by_box_kernel(name):
    images, boxes, params, _ = _case(name, [5, 1], torch.float64, seed=5, height=12, width=14, box_prob=1.0)
    images.requires_grad_(True)
    lo, hi = get_op(name).magnitude_range
    magnitude = torch.tensor([lo + 0.37 * (hi - lo), lo + 0.63 * (hi - lo)], dtype=torch.float64,
                             requires_grad=True)
    weights = torch.rand(images.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    grads = []
    for kernel in (bbox_only, _reference_bbox_only):
        out = kernel(name, images, magnitude, params.sign.double(), boxes, params.box_mask, params.box_center)
        grads.append(torch.autograd.grad((out * weights).sum(), (images, magnitude)))
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)
    assert bool((grads[0][1] != 0).all()), f'{name}: no gradient reaches the magnitude'


@pytest.mark.parametrize('name', AUTOGRAD)
def test_gradcheck_through_the_crops(name):
    images, boxes, params, _ = _case(name, [3], torch.float64, seed=7, height=8, width=9, box_prob=1.0)
    lo, hi = get_op(name).magnitude_range
    magnitude = torch.tensor([lo + 0.41 * (hi - lo)], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda m: bbox_only(name, images, m, params.sign.double(), boxes, params.box_mask,
                            params.box_center).sum(), (magnitude,))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('size', [(1, 1), (1, 7), (13, 9)])
def test_spans_select_the_pixels_of_the_reference_mask(dtype, size):
    height, width = size
    g = torch.Generator().manual_seed(11)
    # Edges on pixel centres and pixel borders, just beside them, outside the image, reversed.
    edges = torch.tensor([-3.0, -0.5, 0.0, 0.4999999, 0.5, 0.5000001, 1.0, 1.5, 2.5, 6.5, 8.5, 9.0, 12.5, 13.0,
                          13.5, 40.0], dtype=dtype)
    corners = torch.cat([edges[torch.randint(len(edges), (400, 4), generator=g)],
                         torch.rand(400, 4, generator=g, dtype=dtype) * 20 - 3])
    x1, y1, x2, y2 = corners.unbind(-1)
    spans = _spans(x1, y1, x2, y2, height, width)
    rows = torch.arange(height)[:, None]
    cols = torch.arange(width)
    got = ((rows >= spans[:, 0, None, None]) & (rows < spans[:, 1, None, None])
           & (cols >= spans[:, 2, None, None]) & (cols < spans[:, 3, None, None]))
    expected = _reference_rect_mask(x1, y1, x2, y2, height, width)[:, 0]
    assert torch.equal(got, expected)
    assert bool((spans[:, 1] >= spans[:, 0]).all() and (spans[:, 3] >= spans[:, 2]).all())


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_solarize_by_coverage_equals_the_box_by_box_kernel(dtype):
    # Stacked boxes (a pixel under up to 12 of them, odd and even counts), fractional pixels,
    # thresholds below 128 (a pixel and its inverse both solarize: the result alternates).
    g = torch.Generator().manual_seed(12)
    stacked = torch.tensor([[1.0 + k, 0.5 * k, 14.0 + k, 11.0 + 0.5 * k] for k in range(12)])
    border = torch.tensor([[0.0, 0.0, 30.0, 20.0], [-5.0, 3.0, 2.2, 40.0], [4.0, 4.0, 4.3, 9.0], [6.0, 6.0, 6.0, 6.0]])
    boxes = [torch.cat([stacked, border]), border]
    images = (torch.rand(2, 3, 20, 30, generator=g, dtype=dtype) * 255)
    for m in ([200.0, 150.0], [128.3, 0.0], [256.0, 255.5]):
        magnitude = torch.tensor(m, dtype=dtype)
        mask = [torch.rand(b.shape[0], generator=g) < 0.8 for b in boxes]
        args = ('Solarize_Only_BBoxes', images, magnitude, torch.ones(2, dtype=dtype), boxes, mask,
                [torch.zeros(b.shape[0], 2) for b in boxes])
        expected = _reference_bbox_only(*args)
        assert torch.equal(bbox_only(*args), expected)
        channels_last = images.contiguous(memory_format=torch.channels_last)
        assert torch.equal(bbox_only(args[0], channels_last, *args[2:]), expected)


def test_solarize_on_a_one_pixel_image():
    images = torch.tensor([[[[200.0]], [[10.0]], [[255.0]]]])
    boxes = [torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.9, 0.9], [0.0, 0.0, 0.4, 0.4]])]
    mask = [torch.ones(3, dtype=torch.bool)]
    args = ('Solarize_Only_BBoxes', images, torch.tensor([100.0]), torch.ones(1), boxes, mask, [torch.zeros(3, 2)])
    assert torch.equal(bbox_only(*args), _reference_bbox_only(*args))
    assert torch.equal(bbox_only(*args), torch.tensor([[[[55.0]], [[10.0]], [[0.0]]]]))


# ----------------------------------------------------------------------------- crop copies and the grid

def _tiny_boxes(height: int, width: int) -> Tensor:
    """The whole image, beyond it, a corner, a sub-pixel (empty) box and an empty one."""
    return torch.tensor([[0.0, 0.0, float(width), float(height)], [-2.0, -1.0, width + 3.0, height + 0.7],
                         [width * 0.5, height * 0.5, float(width), float(height)],
                         [0.2, 0.2, 0.4, 0.4], [1.0, 1.0, 1.0, 1.0]])


@pytest.mark.parametrize('size', [(2, 2), (2, 3), (3, 2)], ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('name', sorted(WARPS) + ['Equalize_Only_BBoxes'])
def test_tiny_images_equal_the_box_by_box_kernel(name, size):
    # Crops as large as the image, reaching past it or empty. (On a side of 1 px the reference's
    # whole-image warp normalises by side - 1 = 0: see the next test.)
    height, width = size
    g = torch.Generator().manual_seed(13)
    images = (torch.rand(2, 3, height, width, generator=g, dtype=torch.float64) * 255).round()
    boxes = [_tiny_boxes(height, width), _tiny_boxes(height, width)[[2, 0]]]
    params = sample_params(name, 2, height, width, boxes, generator=g, box_prob=1.0)
    lo, hi = get_op(name).magnitude_range
    magnitude = torch.tensor([lo + 0.4 * (hi - lo), hi], dtype=torch.float64)
    got, expected = _kernels(name, images, boxes, params, magnitude)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize('name', sorted(WARPS))
def test_warps_of_a_one_pixel_image_by_hand(name):
    # The pixel's centre (0.5, 0.5) samples its own value (rotation and flip about the box
    # centre), or goes by s / 2 (shear about the corner, s = 0.3) or by t = 0.3 * 1 px
    # (translation): bilinear with zeros outside the box keeps 1 - 0.15 or 1 - 0.3 of (x - 128).
    images = torch.tensor([[[[200.0]], [[10.0]], [[128.0]]]], dtype=torch.float64)
    kept = {'Rotate_Only_BBoxes': 1.0, 'Flip_Only_BBoxes': 1.0, 'ShearX_Only_BBoxes': 0.85,
            'ShearY_Only_BBoxes': 0.85, 'TranslateX_Only_BBoxes': 0.7, 'TranslateY_Only_BBoxes': 0.7}[name]
    for sign in (1.0, -1.0):
        got = bbox_only(name, images, torch.tensor([0.3], dtype=torch.float64), torch.tensor([sign]),
                        [torch.tensor([[0.0, 0.0, 1.0, 1.0]])], [torch.ones(1, dtype=torch.bool)], [torch.zeros(1, 2)])
        torch.testing.assert_close(got, FILL_VALUE + kept * (images - FILL_VALUE), rtol=0, atol=1e-9)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('name', sorted(WARPS & set(AUTOGRAD)))
def test_warp_grid_with_and_without_autograd_is_the_same(name, dtype):
    # The torch layout builds its sample grid in place without autograd and out of place with it.
    images, boxes, params, magnitude = _case(name, [50, 5], dtype, seed=14)
    args = (name, images, magnitude, params.sign.to(dtype), boxes, params.box_mask, params.box_center)
    with box_warp_numba.switched(False):
        plain = bbox_only(*args)
    tracked = bbox_only(name, images, magnitude.clone().requires_grad_(True), *args[3:])
    assert tracked.requires_grad and torch.equal(tracked.detach(), plain)


def test_crops_go_back_to_their_boxes_in_order_whatever_the_crop_layout():
    # A crop op that doubles the box's pixels and hands back a channel-major (non-contiguous)
    # tensor: box after box, a pixel ends up multiplied by 2 per selected box covering it.
    g = torch.Generator().manual_seed(15)
    height, width = 23, 31
    boxes = [torch.cat([_boxes(30, height, width, g), _tiny_boxes(height, width)]), _boxes(4, height, width, g),
             torch.zeros(0, 4)]
    masks = [torch.rand(b.shape[0], generator=g) < 0.7 for b in boxes]
    images = torch.rand(3, 2, height, width, generator=g, dtype=torch.float64)

    def double(crops, magnitude, inside):
        return (2 * crops).transpose(0, 1).contiguous().transpose(0, 1)

    rows, cols = torch.arange(height)[:, None], torch.arange(width)
    count = torch.zeros(3, 1, height, width)
    for i, (b, m) in enumerate(zip(boxes, masks)):
        for r0, r1, c0, c1 in _spans(*b[m].unbind(-1), height, width).tolist():
            count[i, 0] += ((rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)).float()
    expected = images * 2.0 ** count
    for variant in (images, images.contiguous(memory_format=torch.channels_last)):
        got = bbox_crops(variant, torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), boxes,
                         masks, crop_op=double)
        assert torch.equal(got, expected) and got.is_contiguous()


def _live_of(name, boxes, magnitude, sign, height, width):
    """``_live_rects`` of one image's boxes, as the kernel computes it."""
    spans = _spans(*boxes.double().unbind(-1), height, width)
    local = boxes.double() - spans[:, [2, 0, 2, 0]].double()
    matrices = box_matrix(name, local, magnitude.double().expand(len(boxes)), sign.double().expand(len(boxes)),
                          height, width)
    sizes = torch.stack([spans[:, 1] - spans[:, 0], spans[:, 3] - spans[:, 2]], dim=1).numpy()
    return spans, _live_rects(geometry.to_index_matrix(matrices).numpy(), sizes)


@pytest.mark.parametrize('name', ['TranslateX_Only_BBoxes', 'TranslateY_Only_BBoxes', 'Rotate_Only_BBoxes'])
def test_boxes_warped_out_of_themselves_equal_the_box_by_box_kernel(name):
    # Large moves: most boxes take the fill value only (skipped but filled), some keep a strip
    # (only that part is sampled), overlapping each other in dense stacks and across levels.
    g = torch.Generator().manual_seed(16)
    height, width = 48, 64
    boxes = [torch.cat([_boxes(40, height, width, g), torch.tensor([[2.0 + k, 3.0 + k, 30.0 + 2 * k, 27.0 + k]
                                                                    for k in range(8)])]), _boxes(6, height, width, g)]
    images = (torch.rand(2, 3, height, width, generator=g, dtype=torch.float64) * 255)
    lo, hi = get_op(name).magnitude_range
    seen = set()
    for fraction in (0.3, 0.7, 1.0):
        params = sample_params(name, 2, height, width, boxes, generator=g, box_prob=0.9)
        magnitude = torch.full((2,), lo + fraction * (hi - lo), dtype=torch.float64)
        got, expected = _kernels(name, images, boxes, params, magnitude)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)
        spans, live = _live_of(name, boxes[0], magnitude[:1], params.sign[:1], height, width)
        whole = (spans[:, 1] - spans[:, 0]) * (spans[:, 3] - spans[:, 2])
        parts = torch.from_numpy((live[:, 1] - live[:, 0]).clip(0) * (live[:, 3] - live[:, 2]).clip(0))
        seen |= {'empty'} if bool((parts == 0).any()) else set()
        seen |= {'part'} if bool(((parts > 0) & (parts < whole)).any()) else set()
    if name.startswith('Translate'):
        assert seen == {'empty', 'part'}, seen


@pytest.mark.parametrize('name', sorted(WARPS))
def test_outside_the_live_part_a_warped_box_is_the_fill_value(name):
    # _live_rects may only leave out pixels whose every bilinear tap lies outside the box.
    g = torch.Generator().manual_seed(17)
    height, width = 40, 56
    lo, hi = get_op(name).magnitude_range
    for trial in range(6):
        box = _boxes(1, height, width, g) if trial else torch.tensor([[3.3, 2.6, 41.7, 30.2]])
        images = torch.rand(1, 3, height, width, generator=g, dtype=torch.float64) * 255
        magnitude = torch.tensor([lo + float(torch.rand(1, generator=g)) * (hi - lo)], dtype=torch.float64)
        sign = torch.tensor([1.0 if trial % 2 else -1.0])
        args = (name, images, magnitude, sign, [box], [torch.ones(1, dtype=torch.bool)], [torch.zeros(1, 2)])
        expected = _reference_bbox_only(*args)
        (r0, r1, c0, c1), = _spans(*box.double().unbind(-1), height, width).tolist()
        (v0, v1, u0, u1), = _live_of(name, box, magnitude, sign, height, width)[1].tolist()
        outside = torch.ones(height, width, dtype=torch.bool)
        outside[r0 + v0:r0 + v1, c0 + u0:c0 + u1] = False
        inside_box = torch.zeros(height, width, dtype=torch.bool)
        inside_box[r0:r1, c0:c1] = True
        torch.testing.assert_close(expected[0][:, outside & inside_box],
                                   torch.full_like(expected[0][:, outside & inside_box], FILL_VALUE),
                                   rtol=0, atol=1e-9)


def test_levels_let_boxes_that_only_fill_commute():
    # Boxes 0, 1 and 3 overlap pairwise; 0 and 1 only fill, so they need no order between them,
    # while box 2 (overlapping 1) and box 3 still wait for the boxes they overlap.
    spans = torch.tensor([[0, 10, 0, 10], [5, 15, 5, 15], [12, 20, 12, 20], [8, 12, 8, 12]]).numpy()
    image = torch.zeros(4, dtype=torch.long).numpy()
    assert _levels(image, spans).tolist() == [0, 1, 2, 2]
    fills = torch.tensor([True, True, False, False]).numpy()
    assert _levels(image, spans, fills).tolist() == [0, 0, 1, 1]
