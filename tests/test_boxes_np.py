"""The numpy box helpers of the cv2 path equal the torch ones of :mod:`det_autoaug.ops.boxes`.

:func:`~det_autoaug.ops.boxes.project_boxes_np`, :func:`~det_autoaug.ops.boxes.clip_and_filter_np`
and :func:`~det_autoaug.ops.boxes.check_boxes_np` exist only because torch's per-op dispatch
costs more than the arithmetic on a handful of boxes; the rule is the torch functions'. So the
boxes must be equal bit for bit (``tobytes``, which also tells -0.0 from +0.0) and the masks
equal, on a seeded fuzz set: every geometric op's own matrix at random magnitudes and signs,
random image sizes, boxes degenerate, outside, on the border, sub-pixel, with -0.0
coordinates, and random ``min_size`` / ``min_visible``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from det_autoaug.ops.boxes import (
    check_boxes,
    check_boxes_np,
    clip_and_filter,
    clip_and_filter_np,
    project_boxes,
    project_boxes_np,
)
from det_autoaug.ops.cv2_ops import apply_op_np
from det_autoaug.ops.params import sample_params
from det_autoaug.ops.registry import get_kernel
from det_autoaug.ops.table import OPS

GEOMETRIC = [op.name for op in OPS if op.kind == 'geometric']
TRIALS_PER_OP = 300


def _fuzz_boxes(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """``n`` valid float32 boxes of every awkward kind, shuffled."""
    x1 = rng.uniform(-0.5 * width, 1.5 * width, n)
    y1 = rng.uniform(-0.5 * height, 1.5 * height, n)
    w = np.exp(rng.uniform(-5.0, np.log(2.0 * width + 1.0), n))
    h = np.exp(rng.uniform(-5.0, np.log(2.0 * height + 1.0), n))
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
    kind = rng.integers(0, 8, n)
    boxes[kind == 1, 2] = boxes[kind == 1, 0]                                    # zero width
    boxes[kind == 2, 3] = boxes[kind == 2, 1]                                    # zero height
    boxes[kind == 3] = np.round(boxes[kind == 3])                                # on pixel edges
    boxes[kind == 4] = np.clip(boxes[kind == 4], 0, [width, height, width, height])  # on the border
    boxes[kind == 5] = [0.0, 0.0, width, height]                                 # the whole image
    sub = kind == 6                                                              # sub-pixel
    boxes[sub, 2:] = boxes[sub, :2] + rng.uniform(0.0, 1.5, (int(sub.sum()), 2))
    boxes = boxes.astype(np.float32)
    signed_zero = kind == 7                                                      # -0.0 corners
    boxes[signed_zero, :2] = -0.0
    boxes[signed_zero, 2:] = np.abs(boxes[signed_zero, 2:])
    return boxes


def _same(a: np.ndarray, b: torch.Tensor) -> bool:
    return a.dtype == np.float32 and a.shape == tuple(b.shape) and a.tobytes() == b.numpy().tobytes()


@pytest.mark.parametrize('op', GEOMETRIC)
def test_fuzz_equals_torch_bit_for_bit(op):
    spec = next(s for s in OPS if s.name == op)
    matrix_fn = get_kernel(op, 'matrix')
    lo, hi = spec.magnitude_range
    rng = np.random.default_rng(GEOMETRIC.index(op))
    for trial in range(TRIALS_PER_OP):
        height, width = (int(v) for v in rng.integers(1, 2000, 2))
        magnitude = float(rng.choice([0.0, hi, rng.uniform(lo, hi)]))
        sign = float(rng.choice([-1.0, 1.0]))
        matrix = matrix_fn(torch.tensor([magnitude], dtype=torch.float64),
                           torch.tensor([sign], dtype=torch.float64), height, width)[0].numpy()
        boxes = _fuzz_boxes(rng, int(rng.choice([0, 1, 2, 5, 13, 64])), height, width)
        min_size = float(rng.choice([1.0, 0.0, 3.0, rng.uniform(0.0, 5.0)]))
        min_visible = float(rng.choice([0.3, 0.0, 1.0, rng.uniform(0.0, 1.0)]))
        case = f'{op} trial {trial}: {height}x{width}, m={magnitude}, sign={sign}, {len(boxes)} boxes'

        projected_t = project_boxes(torch.from_numpy(boxes), torch.tensor(matrix))
        projected = project_boxes_np(boxes, matrix)
        assert _same(projected, projected_t), case
        kept_t, keep_t = clip_and_filter(projected_t, height, width, min_size=min_size, min_visible=min_visible)
        kept, keep = clip_and_filter_np(projected, height, width, min_size=min_size, min_visible=min_visible)
        assert _same(kept, kept_t), case
        assert keep.dtype == np.bool_ and np.array_equal(keep, keep_t.numpy()), case


@pytest.mark.parametrize('projective', [False, True])
def test_random_matrices_equal_torch_bit_for_bit(projective):
    """Any affine or projective matrix, not only the table's: the general corner path."""
    rng = np.random.default_rng(7 + projective)
    for trial in range(300):
        matrix = rng.normal(0.0, 1.0, (3, 3)) * [[1, 1, 300], [1, 1, 300], [1e-3, 1e-3, 1]]
        if not projective:
            matrix[2] = [0.0, 0.0, 1.0]
        boxes = _fuzz_boxes(rng, int(rng.integers(1, 40)), 600, 800)
        expected = project_boxes(torch.from_numpy(boxes), torch.tensor(matrix))
        assert _same(project_boxes_np(boxes, matrix), expected), f'trial {trial}'


def test_signed_zero_kept_as_torch_clamp_does():
    """torch's clamp returns x when x equals the bound, so -0.0 stays -0.0; np.maximum would not."""
    boxes = np.array([[-0.0, -0.0, 5.0, 5.0], [-2.0, 1.0, 3.0, 4.0]], np.float32)
    kept, keep = clip_and_filter_np(boxes, 10, 10)
    kept_t, keep_t = clip_and_filter(torch.from_numpy(boxes), 10, 10)
    assert _same(kept, kept_t) and np.signbit(kept[0, 0]) and not np.signbit(kept[1, 0])
    assert keep.tolist() == keep_t.tolist() == [True, True]


def test_hand_computed_flip_and_drop():
    flip_lr = np.array([[-1.0, 0.0, 10.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    boxes = np.array([[1.0, 2.0, 3.0, 4.0], [-5.0, 0.0, 0.5, 10.0]], np.float32)
    projected = project_boxes_np(boxes, flip_lr)
    assert projected.tolist() == [[7.0, 2.0, 9.0, 4.0], [9.5, 0.0, 15.0, 10.0]]
    kept, keep = clip_and_filter_np(projected, 10, 10)
    # The second box keeps 0.5 of 5.5 px of width inside: 9% visible, and 0.5 px < min_size.
    assert kept.tolist() == [[7.0, 2.0, 9.0, 4.0]] and keep.tolist() == [True, False]


def test_empty_boxes():
    empty = np.zeros((0, 4), np.float32)
    assert project_boxes_np(empty, np.eye(3)).shape == (0, 4)
    kept, keep = clip_and_filter_np(empty, 5, 5)
    assert kept.shape == (0, 4) and kept.dtype == np.float32 and keep.shape == (0,) and keep.dtype == np.bool_
    check_boxes_np(empty)


@pytest.mark.parametrize('boxes', [
    np.array([[5.0, 5.0, 1.0, 9.0]], np.float32),
    np.array([[0.0, 0.0, 3.0, 4.0], [0.0, 4.0, 3.0, 2.0]], np.float32),
    np.array([[0.0, 0.0, np.nan, 1.0]], np.float32),
    np.array([[-np.inf, 0.0, 1.0, 1.0], [0.0, 0.0, np.inf, np.inf]], np.float32),
    np.zeros(4, np.float32),
    np.zeros((2, 5), np.float32),
    np.zeros((1, 2, 4), np.float32),
], ids=['x2<x1', 'y2<y1', 'nan', 'inf', '1d', '5 columns', '3d'])
def test_check_boxes_np_raises_what_torch_raises(boxes):
    with pytest.raises(ValueError) as expected:
        check_boxes(torch.from_numpy(boxes))
    with pytest.raises(ValueError) as got:
        check_boxes_np(boxes)
    assert str(got.value) == str(expected.value)


def test_check_boxes_np_accepts_valid_boxes():
    check_boxes_np(np.array([[0.0, 0.0, 0.0, 0.0], [-3e38, -1.0, 3e38, 1.0], [1.0, 2.0, 1.5, 2.0]], np.float32))


@pytest.mark.parametrize('op', [op.name for op in OPS])
def test_apply_op_np_boxes_follow_the_torch_rule(op):
    """Geometric ops: the boxes and mask of the torch helpers on the op's own matrix; others
    project nothing: a copy of the boxes (never the caller's array) and every box kept."""
    spec = next(s for s in OPS if s.name == op)
    rng = np.random.default_rng(3)
    height, width = 37, 53
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    boxes = _fuzz_boxes(rng, 24, height, width)
    magnitude = spec.magnitude_at(7)
    params = sample_params(spec, 1, height, width, [torch.from_numpy(boxes)],
                           generator=torch.Generator().manual_seed(0), box_prob=1.0).select(0)
    _, kept, keep = apply_op_np(op, image, boxes, magnitude, params, min_size=0.5, min_visible=0.4)
    if spec.kind != 'geometric':
        assert kept.tobytes() == boxes.tobytes() and not np.shares_memory(kept, boxes) and keep.all()
        return
    sign = float(params.sign[0])
    matrix = get_kernel(op, 'matrix')(torch.tensor([magnitude], dtype=torch.float64),
                                      torch.tensor([sign], dtype=torch.float64), height, width)[0]
    kept_t, keep_t = clip_and_filter(project_boxes(torch.from_numpy(boxes), matrix), height, width,
                                     min_size=0.5, min_visible=0.4)
    assert _same(kept, kept_t) and np.array_equal(keep, keep_t.numpy())
