"""Contract suite of the torch kernels, parametrised over every op in the table.

Adding an op to ``det_autoaug.ops.table.OPS`` adds it to every test here.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from det_autoaug.ops import OPS, OpParams, apply_op, clip_and_filter, get_op, project_boxes, sample_params
from det_autoaug.ops.boxes import MIN_SIZE
from det_autoaug.ops.torch_ops import secant_bracket

ALL = [op.name for op in OPS]
GEOMETRIC = [op.name for op in OPS if op.kind == 'geometric']
AUTOGRAD = [op.name for op in OPS if op.grad == 'autograd']
STRAIGHT_THROUGH = [op.name for op in OPS if op.grad == 'straight_through']
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def _magnitude(name: str, fraction: float = 0.4) -> float:
    lo, hi = get_op(name).magnitude_range
    return lo + fraction * (hi - lo)


def _batch(dtype=torch.uint8, height=24, width=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, height, width), generator=g).to(dtype)
    boxes = [torch.tensor([[2.0, 3.0, 20.0, 15.0], [10.0, 8.0, 30.0, 22.0]]),
             torch.tensor([[4.0, 4.0, 12.0, 18.0]])]
    return images, boxes


def _params(name, images, boxes, seed=1):
    b, _, h, w = images.shape
    return sample_params(name, b, h, w, boxes, generator=torch.Generator().manual_seed(seed), box_prob=1.0)


@pytest.mark.parametrize('name', ALL)
def test_identity_at_zero_magnitude(name):
    for dtype in (torch.uint8, torch.float32):
        images, boxes = _batch(dtype)
        out = apply_op(name, images, boxes, 0.0, _params(name, images, boxes))
        if dtype == torch.uint8:
            assert torch.equal(out.images, images), f'{name} at magnitude 0 changed uint8 pixels'
        else:
            torch.testing.assert_close(out.images, images, atol=1e-3, rtol=0)
        for before, after, keep in zip(boxes, out.boxes, out.keep):
            assert bool(keep.all())
            torch.testing.assert_close(after, before)


@pytest.mark.parametrize('name', ALL)
def test_inputs_not_modified(name):
    for dtype in (torch.uint8, torch.float32):
        images, boxes = _batch(dtype)
        images_copy, boxes_copy = images.clone(), [b.clone() for b in boxes]
        magnitude = torch.full((2,), _magnitude(name), requires_grad=dtype.is_floating_point)
        out = apply_op(name, images, boxes, magnitude, _params(name, images, boxes))
        assert torch.equal(images, images_copy)
        assert all(torch.equal(a, b) for a, b in zip(boxes, boxes_copy))
        assert out.images.data_ptr() != images.data_ptr()


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.uint8, torch.float32])
@pytest.mark.parametrize('name', ALL)
def test_dtype_shape_and_device_kept(name, dtype, device):
    images, boxes = _batch(dtype)
    images, boxes = images.to(device), [b.to(device) for b in boxes]
    out = apply_op(name, images, boxes, _magnitude(name), _params(name, images, boxes).to(device))
    assert out.images.dtype == dtype and out.images.device == images.device
    assert out.images.shape == images.shape
    if dtype == torch.float32:
        assert float(out.images.min()) >= -1e-3 and float(out.images.max()) <= 255 + 1e-3
    for b, keep in zip(out.boxes, out.keep):
        assert b.dtype == torch.float32 and b.device == images.device and keep.dtype == torch.bool
    if get_op(name).kind == 'geometric':
        assert out.matrices.shape == (2, 3, 3)
    else:
        assert out.matrices is None


@pytest.mark.parametrize('name', ALL)
def test_batched_equals_per_sample(name):
    images, boxes = _batch(torch.float32)
    params = _params(name, images, boxes)
    # Different magnitudes per sample also check that each sample reads its own.
    magnitude = torch.tensor([_magnitude(name, 0.3), _magnitude(name, 0.7)])
    out = apply_op(name, images, boxes, magnitude, params)
    for i in range(2):
        single = apply_op(name, images[i:i + 1], [boxes[i]], magnitude[i:i + 1], params.select(i))
        torch.testing.assert_close(out.images[i:i + 1], single.images, atol=1e-4, rtol=0)
        torch.testing.assert_close(out.boxes[i], single.boxes[0])
        assert torch.equal(out.keep[i], single.keep[0])


@pytest.mark.parametrize('name', GEOMETRIC)
def test_geometric_boxes_follow_the_matrices(name):
    images, boxes = _batch(torch.float32)
    h, w = images.shape[-2:]
    out = apply_op(name, images, boxes, _magnitude(name, 0.6), _params(name, images, boxes))
    for i, b in enumerate(boxes):
        expected, keep = clip_and_filter(project_boxes(b, out.matrices[i]), h, w)
        torch.testing.assert_close(out.boxes[i], expected)
        assert torch.equal(out.keep[i], keep)


def _reference_point_map(name: str, magnitude: float, sign: float, height: int, width: int):
    """Where each geometric op sends a point ``(x, y)``, written here from the ops' documented
    definitions (docs/ops.md), in continuous pixel coordinates with y pointing down; no helper of
    the package is used."""
    if name == 'Rotate':  # counter-clockwise on screen about the image centre, by `magnitude` degrees
        t = math.radians(sign * magnitude)
        cx, cy = width / 2, height / 2
        return lambda x, y: (cx + (x - cx) * math.cos(t) + (y - cy) * math.sin(t),
                             cy - (x - cx) * math.sin(t) + (y - cy) * math.cos(t))
    if name == 'ShearX':  # x += f * y
        return lambda x, y: (x + sign * magnitude * y, y)
    if name == 'ShearY':  # y += f * x
        return lambda x, y: (x, y + sign * magnitude * x)
    if name == 'TranslateX':  # by a fraction of the image width
        return lambda x, y: (x + sign * magnitude * width, y)
    if name == 'TranslateY':
        return lambda x, y: (x, y + sign * magnitude * height)
    if name == 'FlipLR':
        return lambda x, y: (width - x, y)
    if name == 'FlipUD':
        return lambda x, y: (x, height - y)
    raise AssertionError(f'no reference written for geometric op {name}: add one')


@pytest.mark.parametrize('sign', [1.0, -1.0])
@pytest.mark.parametrize('name', GEOMETRIC)
def test_geometric_boxes_against_a_reference_written_here(name, sign):
    """Boxes of both kernels equal the box around the four corners mapped by the test's own
    point map (:func:`_reference_point_map`), clipped to the image; boxes stay inside, none drop."""
    from det_autoaug.ops.cv2_ops import apply_op_np

    height, width = 64, 80
    boxes = torch.tensor([[30.0, 22.0, 50.0, 40.0], [36.5, 28.25, 41.0, 35.75]])
    images = torch.randint(0, 256, (1, 3, height, width), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    magnitude = _magnitude(name, 0.3)
    params = sample_params(name, 1, height, width, [boxes], generator=torch.Generator().manual_seed(1))
    params.sign.fill_(sign)
    point = _reference_point_map(name, magnitude, sign, height, width)
    expected = []
    for x1, y1, x2, y2 in boxes.tolist():
        xs, ys = zip(*[point(x, y) for x, y in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))])
        expected.append([max(min(xs), 0.0), max(min(ys), 0.0), min(max(xs), width), min(max(ys), height)])
    expected = torch.tensor(expected)
    torch_out = apply_op(name, images, [boxes], magnitude, params)
    cv2_image, cv2_boxes, cv2_keep = apply_op_np(name, images[0].permute(1, 2, 0).numpy(), boxes.numpy(),
                                                 magnitude, params.select(0))
    assert bool(torch_out.keep[0].all()) and bool(cv2_keep.all()), f'{name}: a box inside the image was dropped'
    torch.testing.assert_close(torch_out.boxes[0], expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.from_numpy(cv2_boxes), expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize('name', GEOMETRIC)
def test_geometric_mask_of_filled_box_matches_the_box(name):
    size = 128
    box = torch.tensor([[20.0, 30.0, 84.0, 94.0]])
    rect = torch.zeros(1, 3, size, size)
    rect[..., 30:94, 20:84] = 255.0
    params = sample_params(name, 1, size, size, [box], generator=torch.Generator().manual_seed(3))
    magnitude = _magnitude(name, 0.3)
    out = apply_op(name, rect, [box], magnitude, params)
    # The op is affine in (pixel - fill): subtracting the warped black image leaves the rectangle.
    background = apply_op(name, torch.zeros_like(rect), [box], magnitude, params).images
    mask = (out.images - background)[0, 0] > 127.5
    assert bool(out.keep[0].all()), f'{name} dropped a large box at magnitude {magnitude}'
    rows, cols = torch.nonzero(mask, as_tuple=True)
    mask_box = torch.stack([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]).float()
    got = out.boxes[0][0]
    if name == 'Rotate':
        assert bool((got[:2] <= mask_box[:2] + 1).all() and (got[2:] >= mask_box[2:] - 1).all()), \
            f'rotated box {got.tolist()} does not contain the rotated mask {mask_box.tolist()}'
    else:
        lt, rb = torch.maximum(got[:2], mask_box[:2]), torch.minimum(got[2:], mask_box[2:])
        inter = (rb - lt).clamp(min=0).prod()
        union = (got[2:] - got[:2]).prod() + (mask_box[2:] - mask_box[:2]).prod() - inter
        assert float(inter / union) >= 0.95, f'{name}: box {got.tolist()} vs mask {mask_box.tolist()}'


@pytest.mark.parametrize('name', ALL)
def test_degenerate_empty_and_outside_boxes(name):
    images, _ = _batch(torch.uint8)
    h, w = images.shape[-2:]
    boxes = [torch.tensor([[5.0, 5.0, 5.0, 9.0], [3.0, 3.0, 3.0, 3.0], [-20.0, -20.0, -5.0, -5.0],
                           [40.0, 30.0, 60.0, 50.0], [-5.0, 2.0, 10.0, 12.0], [6.0, 6.0, 18.0, 16.0]]),
             torch.zeros(0, 4)]
    out = apply_op(name, images, boxes, _magnitude(name), _params(name, images, boxes))
    for before, after, keep in zip(boxes, out.boxes, out.keep):
        assert keep.shape == (before.shape[0],) and len(after) == int(keep.sum())
        if get_op(name).kind == 'geometric':
            # A point stays a point; a zero-width line may rotate into a valid box.
            assert not bool(keep[1:2].any()), 'a point box must be dropped by geometric ops'
            assert bool(((after[:, 2] - after[:, 0]) >= MIN_SIZE).all())
            assert bool(((after[:, 3] - after[:, 1]) >= MIN_SIZE).all())
            assert bool((after[:, :2] >= 0).all() and (after[:, 2] <= w).all() and (after[:, 3] <= h).all())
        else:
            assert bool(keep.all()) and torch.equal(after, before)


def _projected(out, k=4):
    weights = torch.linspace(-1.0, 1.0, out.numel() * k, dtype=out.dtype).view(k, -1).sin()
    return weights @ out.reshape(-1)


@pytest.mark.parametrize('name', AUTOGRAD)
def test_gradcheck_wrt_magnitude(name):
    g = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64) * 255
    boxes = [torch.tensor([[1.0, 1.0, 7.0, 6.0]], dtype=torch.float64),
             torch.tensor([[0.0, 2.0, 5.0, 8.0]], dtype=torch.float64)]
    params = _params(name, images, boxes)
    magnitude = torch.tensor([_magnitude(name, 0.37), _magnitude(name, 0.63)], dtype=torch.float64,
                             requires_grad=True)
    out = apply_op(name, images, boxes, magnitude, params).images
    assert out.requires_grad, f'{name} output does not depend on the magnitude'
    assert torch.autograd.gradcheck(lambda m: _projected(apply_op(name, images, boxes, m, params).images),
                                     (magnitude,))


@pytest.mark.parametrize('name', STRAIGHT_THROUGH)
def test_straight_through_gradient_is_the_secant_slope(name):
    spec = get_op(name)
    g = torch.Generator().manual_seed(7)
    images = torch.rand(2, 3, 32, 32, generator=g) * 255
    boxes = [torch.tensor([[4.0, 4.0, 28.0, 26.0]]), torch.tensor([[2.0, 6.0, 20.0, 30.0], [10.0, 10.0, 30.0, 20.0]])]
    params = _params(name, images, boxes)
    m = torch.tensor([_magnitude(name, 0.5), _magnitude(name, 0.6)])
    lo, hi = secant_bracket(spec, m, 32, 32)
    diff = apply_op(name, images, boxes, hi, params).images - apply_op(name, images, boxes, lo, params).images
    assert bool((diff.flatten(1).abs().sum(1) > 0).all()), f'{name} has no effect across its bracket'
    magnitude = m.clone().requires_grad_(True)
    out = apply_op(name, images, boxes, magnitude, params).images
    torch.testing.assert_close(out.detach(), apply_op(name, images, boxes, m, params).images)
    (out * diff).sum().backward()
    expected = (diff ** 2).flatten(1).sum(1) / (hi - lo)
    torch.testing.assert_close(magnitude.grad, expected, rtol=1e-4, atol=1e-3)
    assert bool((magnitude.grad > 0).all())


def test_straight_through_sign_follows_the_effect():
    # Growing a cutout on a white image darkens it: d(sum)/dm < 0; on a black image it brightens.
    for value, sign in ((255.0, -1.0), (0.0, 1.0)):
        images = torch.full((1, 3, 32, 32), value)
        params = OpParams(sign=torch.ones(1), center=torch.full((1, 2), 0.5),
                          box_index=torch.zeros(0, dtype=torch.long))
        magnitude = torch.tensor(0.2, requires_grad=True)
        apply_op('Cutout', images, None, magnitude, params).images.sum().backward()
        assert float(magnitude.grad) * sign > 0


@pytest.mark.parametrize('name', ALL)
def test_bad_inputs_raise(name):
    images, boxes = _batch()
    lo, hi = get_op(name).magnitude_range
    with pytest.raises(ValueError, match='out of range'):
        apply_op(name, images, boxes, hi + 1.0)
    with pytest.raises(ValueError, match='out of range'):
        apply_op(name, images, boxes, torch.tensor([lo, lo - 1.0]))
    with pytest.raises(ValueError, match=r'\(N, 4\)'):
        apply_op(name, images, [torch.zeros(1, 3), boxes[1]], lo)
    with pytest.raises(ValueError, match='channels'):
        apply_op(name, torch.zeros(2, 4, 8, 8, dtype=torch.uint8), None, lo)
    with pytest.raises(ValueError, match='shape'):
        apply_op(name, torch.zeros(3, 8, 8, dtype=torch.uint8), None, lo)
    with pytest.raises(ValueError, match='entries'):
        apply_op(name, images, boxes[:1], lo)
    with pytest.raises(ValueError, match='batch'):
        apply_op(name, images, boxes, lo, sample_params(name, 3, 24, 32))


def test_unknown_op_and_bad_box_prob():
    images, boxes = _batch()
    with pytest.raises(KeyError, match='NoSuchOp'):
        apply_op('NoSuchOp', images, boxes, 0.0)
    with pytest.raises(ValueError, match='box_prob'):
        sample_params('Rotate_Only_BBoxes', 2, 24, 32, boxes, box_prob=1.5)


def test_tf_alias_and_replayable_sampling():
    images, boxes = _batch()
    a = apply_op('Rotate_BBox', images, boxes, 20.0, generator=torch.Generator().manual_seed(2))
    b = apply_op('Rotate', images, boxes, 20.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.images, b.images) and torch.equal(a.matrices, b.matrices)
    p1 = sample_params('Cutout_Only_BBoxes', 2, 24, 32, boxes, generator=torch.Generator().manual_seed(4))
    p2 = sample_params('Cutout_Only_BBoxes', 2, 24, 32, boxes, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(p1.box_center, p2.box_center))
    assert all(torch.equal(x, y) for x, y in zip(p1.box_mask, p2.box_mask))


@pytest.mark.parametrize('name', ALL)
def test_sampled_params_fields(name):
    spec = get_op(name)
    _, boxes = _batch()
    params = sample_params(name, 2, 24, 32, boxes, generator=torch.Generator().manual_seed(0))
    assert params.sign.shape == (2,) and bool((params.sign.abs() == 1).all())
    if not spec.signed:
        assert bool((params.sign == 1).all())
    one = params.select(1)
    assert one.batch_size == 1 and torch.equal(one.sign, params.sign[1:])
    if spec.bbox_only:
        assert [len(m) for m in params.box_mask] == [2, 1] and len(one.box_mask) == 1


@settings(max_examples=30, deadline=None)
@given(data=st.data(), name=st.sampled_from(ALL), height=st.integers(8, 40), width=st.integers(8, 40),
       fraction=st.floats(0.0, 1.0), batch=st.integers(1, 2))
def test_property_output_boxes_valid(data, name, height, width, fraction, batch):
    coords = st.floats(0.0, 1.0)
    boxes = []
    for _ in range(batch):
        n = data.draw(st.integers(0, 4))
        rows = []
        for _ in range(n):
            x1, x2 = sorted([data.draw(coords) * width, data.draw(coords) * width])
            y1, y2 = sorted([data.draw(coords) * height, data.draw(coords) * height])
            rows.append([x1, y1, x2, y2])
        boxes.append(torch.tensor(rows, dtype=torch.float32).view(-1, 4))
    seed = data.draw(st.integers(0, 2 ** 16))
    images = torch.randint(0, 256, (batch, 3, height, width), generator=torch.Generator().manual_seed(seed),
                           dtype=torch.uint8)
    out = apply_op(name, images, boxes, _magnitude(name, fraction), generator=torch.Generator().manual_seed(seed))
    assert out.images.shape == images.shape and out.images.dtype == torch.uint8
    for after, keep in zip(out.boxes, out.keep):
        assert len(after) == int(keep.sum())
        assert bool((after[:, 0] <= after[:, 2]).all() and (after[:, 1] <= after[:, 3]).all())
        assert bool((after[:, :2] >= 0).all() and (after[:, 2] <= width).all() and (after[:, 3] <= height).all())
        if get_op(name).kind == 'geometric':
            assert bool(((after[:, 2:] - after[:, :2]) >= MIN_SIZE).all())
