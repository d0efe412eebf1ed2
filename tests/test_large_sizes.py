"""Property tests of both mmdet adapters on images from 1 px to 2,000 px (issue 15, item 6).

Every op of the table runs through ``PolicyAugment`` (pipeline transform, cv2 kernels) and
``BatchPolicyAugment`` (batch augment, torch kernels) on a fixed, seeded set of cases:
non-square images from 1 x 1 to 2,000 x 1,500 px, up to 200 boxes inside the image (random
ones, the whole image, boxes on the border, zero-width, zero-height and sub-pixel ones, ones on
whole pixels), distinct labels, and magnitudes at 0, at both ends of the op's range and in
between. Big images get few ops each, so the file runs in well under a minute.

The expectations are computed here, in float64 numpy, from the documented rules (docs/ops.md
and the module doc of ``det_autoaug.ops.boxes``), not with the package's own helpers:

- the output image has the input's shape and dtype (the batch's padding is never written);
- geometric ops map each box to the enclosing box of its corners moved by the op's map, with
  either sign, clipped to the image; a box is kept iff its clipped width and height are at
  least ``MIN_SIZE`` and at least ``MIN_VISIBLE`` of its area stays inside (a box within
  round-off of a threshold may go either way). So every kept box is finite, inside the image,
  with ``x1 < x2`` and ``y1 < y2``, and zero-width and zero-height boxes that stay so are dropped;
- other ops return the boxes unchanged and drop none;
- labels (and ignore flags) are those of the kept boxes, in the same order;
- magnitude 0 leaves the pixels unchanged (uint8 exactly, float up to round-off) and, as a
  geometric op still clips and filters, every box the drop rule keeps, unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, List, Sequence, Tuple

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.structures import InstanceData

from det_autoaug.mmdet_plugins.batch_augment import IMAGENET_MEAN, IMAGENET_STD, BatchPolicyAugment
from det_autoaug.mmdet_plugins.transforms import PolicyAugment
from det_autoaug.ops import OPS, apply_op, get_op
from det_autoaug.ops.boxes import MIN_SIZE, MIN_VISIBLE
from det_autoaug.policy.policy import ChainStep, Policy

ALL = [op.name for op in OPS]
SIZES = [(1, 1), (1, 2000), (2000, 3), (3, 1999), (2, 7), (37, 1), (61, 45), (480, 64), (900, 1400),
         (1400, 900), (1333, 2000), (2000, 1500)]
BIG = 500_000                      # pixels: one image over this per op and adapter (runtime)
SMALL = [s for s in SIZES if s[0] * s[1] <= BIG]
BOX_COUNTS = [0, 1, 4, 30, 200]
PAD_DIVISOR = 32
# Round-off allowances: box coordinates are float32 (about 1e-3 px at 2,000 px); a box this
# close to a threshold of the drop rule may be kept or dropped.
BOX_ATOL = 0.02
SIZE_MARGIN = 1e-3
VISIBLE_MARGIN = 1e-4
MEAN, STD = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
# Float identity on the 0..255 scale: a warp by the identity goes through kornia's normalised
# float32 grid, off by up to ~0.06 at 2,000 px; un- and re-normalising adds ~1e-4.
FLOAT_IDENTITY_ATOL = 0.1


# ----------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    height: int
    width: int
    magnitude: float
    boxes: int
    grey: bool
    seed: int

    def __str__(self) -> str:
        return (f'{self.height}x{self.width} m={self.magnitude:g} boxes={self.boxes} '
                f'{"grey" if self.grey else "rgb"} seed={self.seed}')


def _magnitudes(name: str, rng: np.random.RandomState) -> List[float]:
    """0, both ends of the range (the low end only where it is not 0) and a random value."""
    lo, hi = get_op(name).magnitude_range
    return [0.0, hi] + ([lo] if lo != 0.0 else []) + [float(rng.uniform(lo, hi))]


def _cases(name: str, adapter: str) -> List[Case]:
    """A fixed set of cases for ``name``: every magnitude once, on sizes drawn with one big image."""
    rng = np.random.RandomState([ALL.index(name), adapter == 'batch'])
    big = [s for s in SIZES if s[0] * s[1] > BIG]
    magnitudes = _magnitudes(name, rng)
    shapes = [big[rng.randint(len(big))]] + [SMALL[rng.randint(len(SMALL))] for _ in magnitudes[1:]]
    order = rng.permutation(len(magnitudes))
    return [Case(*shapes[i], magnitude=m, boxes=int(rng.choice(BOX_COUNTS)), grey=rng.rand() < 0.15,
                 seed=int(rng.randint(2 ** 31))) for i, m in zip(order, magnitudes)]


def _random_boxes(rng: np.random.RandomState, height: int, width: int, n: int) -> np.ndarray:
    """``n`` valid boxes inside the image, ``(n, 4)`` float32, a mix of the kinds in the module doc."""
    x = np.sort(rng.uniform(0, width, (n, 2)), axis=1)
    y = np.sort(rng.uniform(0, height, (n, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    kind = rng.randint(0, 7, n)
    edges = np.array([0.0, 0.0, width, height])
    on_border = (kind == 1)[:, None] & (rng.rand(n, 4) < 0.5)
    boxes = np.where(on_border, edges, boxes)
    boxes[kind == 2, 2] = boxes[kind == 2, 0]                  # zero width
    boxes[kind == 3, 3] = boxes[kind == 3, 1]                  # zero height
    sub = kind == 4                                            # under one pixel each way
    boxes[sub, 2] = np.minimum(boxes[sub, 0] + rng.uniform(0, 1, sub.sum()), width)
    boxes[sub, 3] = np.minimum(boxes[sub, 1] + rng.uniform(0, 1, sub.sum()), height)
    boxes[kind == 5] = np.round(boxes[kind == 5])              # on whole pixels
    boxes[kind == 6] = edges                                   # the whole image
    return boxes.astype(np.float32)


def _random_annotations(case: Case, rng: np.random.RandomState
                        ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes, distinct labels in a random order, and random ignore flags."""
    boxes = _random_boxes(rng, case.height, case.width, case.boxes)
    labels = (rng.permutation(case.boxes) + 1000).astype(np.int64)
    return boxes, labels, rng.rand(case.boxes) < 0.3


class FixedChains(Policy):
    """A stand-in policy that hands out the given chains in turn, one per ``sample_chain`` call."""

    def __init__(self, chains: Sequence[Sequence[ChainStep]]) -> None:
        self.chains: Iterator[Sequence[ChainStep]] = iter(chains)

    def sample_chain(self, generator, epoch=None, train_epochs=None) -> List[ChainStep]:
        return list(next(self.chains))


# ----------------------------------------------------------------------------- reference

def _maps(name: str, magnitude: float, height: int, width: int) -> List[np.ndarray]:
    """The op's 3x3 map in continuous pixel coordinates, one per possible sign (docs/ops.md)."""
    if get_op(name).kind != 'geometric' or magnitude == 0.0:
        return [np.eye(3)]
    if name == 'FlipLR':
        return [np.array([[-1.0, 0, width], [0, 1, 0], [0, 0, 1]])]
    if name == 'FlipUD':
        return [np.array([[1.0, 0, 0], [0, -1, height], [0, 0, 1]])]
    maps = []
    for m in (magnitude, -magnitude):
        if name == 'Rotate':
            cos, sin = math.cos(math.radians(m)), math.sin(math.radians(m))
            cx, cy = width / 2, height / 2
            maps.append(np.array([[cos, sin, cx - cos * cx - sin * cy], [-sin, cos, cy + sin * cx - cos * cy],
                                  [0, 0, 1]]))
        elif name == 'ShearX':
            maps.append(np.array([[1.0, m, 0], [0, 1, 0], [0, 0, 1]]))
        elif name == 'ShearY':
            maps.append(np.array([[1.0, 0, 0], [m, 1, 0], [0, 0, 1]]))
        elif name == 'TranslateX':
            maps.append(np.array([[1.0, 0, m * width], [0, 1, 0], [0, 0, 1]]))
        elif name == 'TranslateY':
            maps.append(np.array([[1.0, 0, 0], [0, 1, m * height], [0, 0, 1]]))
        else:
            raise KeyError(f'no reference map for geometric op {name!r}')
    return maps


def _exact_side(matrix: np.ndarray, axis: int, coords: np.ndarray) -> np.ndarray:
    """Whether float32 maps each box's side along ``axis`` exactly, as float64 does: the map
    keeps or mirrors that axis alone, with no shift or a whole-pixel shift of whole-pixel sides."""
    on, off, shift = matrix[axis, axis], matrix[axis, 1 - axis], matrix[axis, 2]
    if off != 0 or abs(on) != 1:
        return np.zeros(len(coords), dtype=bool)
    if shift == 0:
        return np.ones(len(coords), dtype=bool)
    return np.full(len(coords), shift == round(shift)) & (coords == np.round(coords)).all(axis=1)


def _expected(boxes: np.ndarray, matrix: np.ndarray, height: int, width: int
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(clipped boxes (N, 4), kept (N,), unsure (N,))`` by the drop rule, in float64.

    ``unsure`` marks the boxes within round-off of a threshold, which the kernels' float32 may
    put on either side; a side float32 gets exactly too (mapped exactly, or clipped at both
    ends) is never unsure.
    """
    b = boxes.astype(np.float64)
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], axis=1)
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    projected = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)
    clipped = np.clip(projected, 0, [width, height, width, height])
    sides = clipped[:, 2:] - clipped[:, :2]
    area = (projected[:, 2] - projected[:, 0]) * (projected[:, 3] - projected[:, 1])
    visible = np.where(area > 0, sides.prod(axis=1) / np.maximum(area, 1e-300), 0.0)
    kept = (sides >= MIN_SIZE).all(axis=1) & (visible >= MIN_VISIBLE)
    exact = np.stack([_exact_side(matrix, 0, b[:, [0, 2]]), _exact_side(matrix, 1, b[:, [1, 3]])], axis=1)
    exact |= (projected[:, :2] < -BOX_ATOL) & (projected[:, 2:] > np.array([width, height]) + BOX_ATOL)
    unsure = ((np.abs(sides - MIN_SIZE) < SIZE_MARGIN) & ~exact).any(axis=1) \
        | (np.abs(visible - MIN_VISIBLE) < VISIBLE_MARGIN)
    return clipped, kept, unsure


def _kept_index(labels_in: np.ndarray, labels_out: np.ndarray, what: str) -> np.ndarray:
    """Where each output label sits in the input; checks they are input labels, in order."""
    position = {int(label): i for i, label in enumerate(labels_in)}
    assert all(int(label) in position for label in labels_out), f'{what}: labels that were never given'
    index = np.array([position[int(label)] for label in labels_out], dtype=np.int64)
    assert bool(np.all(np.diff(index) > 0)), f'{what}: labels out of order or repeated: {index.tolist()}'
    return index


def assert_boxes_follow_the_op(name: str, magnitude: float, before: np.ndarray, labels_in: np.ndarray,
                               after: np.ndarray, labels_out: np.ndarray, height: int, width: int,
                               what: str) -> np.ndarray:
    """Check the kept boxes and their labels against the reference; returns where they were in the input."""
    assert after.shape == (len(labels_out), 4), f'{what}: {after.shape} boxes for {len(labels_out)} labels'
    assert bool(np.isfinite(after).all()), f'{what}: non-finite boxes'
    assert bool((after[:, :2] >= 0).all() and (after[:, 2] <= width).all() and (after[:, 3] <= height).all()), \
        f'{what}: boxes outside the {height}x{width} image'
    index = _kept_index(labels_in, labels_out, what)
    if get_op(name).kind != 'geometric':
        assert len(index) == len(before), f'{what}: {len(before) - len(index)} boxes dropped by a non-geometric op'
        assert np.array_equal(after, before), f'{what}: boxes changed by a non-geometric op'
        return index
    assert bool((after[:, 2] > after[:, 0]).all() and (after[:, 3] > after[:, 1]).all()), \
        f'{what}: kept boxes with x2 <= x1 or y2 <= y1'
    kept = np.zeros(len(before), dtype=bool)
    kept[index] = True
    problems = []
    for matrix in _maps(name, magnitude, height, width):
        expected, should_keep, unsure = _expected(before, matrix, height, width)
        wrong = (kept != should_keep) & ~unsure
        far = np.abs(after - expected[index]).max(axis=1, initial=0.0) > BOX_ATOL
        if not wrong.any() and not far.any():
            if magnitude == 0.0:
                assert np.array_equal(after, before[index]), f'{what}: magnitude 0 moved boxes'
            return index
        first = np.flatnonzero(wrong)[:3].tolist()
        problems.append(f'keep differs at {first} (input {before[first].tolist()}, expected kept '
                        f'{should_keep[first].tolist()}); {int(np.sum(far))} kept boxes off the reference')
    pytest.fail(f'{what}: no sign of the op explains the boxes: {" | ".join(problems)}')


def _call(what: str, fn):
    try:
        return fn()
    except Exception as e:  # valid input: any exception fails, with the case that raised it
        pytest.fail(f'{what}: {type(e).__name__}: {e}')


# ----------------------------------------------------------------------------- PolicyAugment (cv2)

def _pipeline_image(case: Case, rng: np.random.RandomState) -> np.ndarray:
    shape = (case.height, case.width) if case.grey else (case.height, case.width, 3)
    return rng.randint(0, 256, shape).astype(np.uint8)


@pytest.mark.parametrize('name', ALL)
def test_policy_augment_keeps_boxes_valid_and_labels_aligned(name):
    transform = PolicyAugment('autoaug_det_v0')
    for case in _cases(name, 'pipeline'):
        what = f'PolicyAugment {name} {case}'
        rng = np.random.RandomState(case.seed)
        image = _pipeline_image(case, rng)
        boxes, labels, flags = _random_annotations(case, rng)
        results = dict(img=image.copy(), img_shape=image.shape[:2], ori_shape=image.shape[:2],
                       gt_bboxes=HorizontalBoxes(torch.from_numpy(boxes.copy())),
                       gt_bboxes_labels=labels.copy(), gt_ignore_flags=flags.copy())
        transform.policy = FixedChains([[ChainStep(name, case.magnitude, 1.0)]])
        np.random.seed(case.seed)   # PolicyAugment draws from numpy's global generator
        out = _call(what, lambda: transform(results))

        assert out['img'].shape == image.shape and out['img'].dtype == np.uint8, what
        assert isinstance(out['gt_bboxes'], HorizontalBoxes), what
        index = assert_boxes_follow_the_op(name, case.magnitude, boxes, labels, out['gt_bboxes'].tensor.numpy(),
                                           out['gt_bboxes_labels'], case.height, case.width, what)
        assert np.array_equal(out['gt_ignore_flags'], flags[index]), f'{what}: ignore flags not aligned'
        assert any(np.allclose(out['homography_matrix'], matrix, rtol=1e-6, atol=1e-3)
                   for matrix in _maps(name, case.magnitude, case.height, case.width)), \
            f'{what}: homography_matrix {out["homography_matrix"].tolist()} is not the op\'s map'
        if case.magnitude == 0.0:
            assert np.array_equal(out['img'], image), f'{what}: magnitude 0 changed pixels'


# ----------------------------------------------------------------------------- BatchPolicyAugment (torch)

def _padded(size: int) -> int:
    return -(-size // PAD_DIVISOR) * PAD_DIVISOR


def _instances(boxes: np.ndarray, labels: np.ndarray) -> InstanceData:
    return InstanceData(bboxes=HorizontalBoxes(torch.from_numpy(boxes.copy())),
                        labels=torch.from_numpy(labels.copy()))


def _batch(images: Sequence[Case], channels: int, rng: np.random.RandomState
           ) -> Tuple[torch.Tensor, List[torch.Tensor], List[DetDataSample], List[Tuple[np.ndarray, ...]]]:
    """What ``DetDataPreprocessor`` hands its batch augments: normalised images padded to one size.

    Returns:
        ``(inputs, pixels, samples, annotations)``: the ``(B, C, H, W)`` float32 batch (padding
        0), each image's ``(C, h, w)`` pixels, the data samples (each image's boxes split at random
        between ``gt_instances`` and ``ignored_instances``) and each image's
        ``(boxes, labels, number of gt boxes)``.
    """
    height, width = _padded(max(c.height for c in images)), _padded(max(c.width for c in images))
    mean, std = MEAN[:channels].view(-1, 1, 1), STD[:channels].view(-1, 1, 1)
    inputs = torch.zeros(len(images), channels, height, width)
    pixels, samples, annotations = [], [], []
    for i, c in enumerate(images):
        image = torch.from_numpy(rng.randint(0, 256, (channels, c.height, c.width)).astype(np.float32))
        inputs[i, :, :c.height, :c.width] = (image - mean) / std
        boxes, labels, _ = _random_annotations(c, rng)
        n_gt = int(rng.randint(len(boxes) + 1))
        sample = DetDataSample(metainfo=dict(img_shape=(c.height, c.width), ori_shape=(c.height, c.width),
                                             pad_shape=(height, width), batch_input_shape=(height, width)))
        sample.gt_instances = _instances(boxes[:n_gt], labels[:n_gt])
        sample.ignored_instances = _instances(boxes[n_gt:], labels[n_gt:])
        pixels.append(image)
        samples.append(sample)
        annotations.append((boxes, labels, n_gt))
    return inputs, pixels, samples, annotations


@pytest.mark.parametrize('name', ALL)
def test_batch_policy_augment_keeps_boxes_valid_and_labels_aligned(name):
    lo, hi = get_op(name).magnitude_range
    for case in _cases(name, 'batch'):
        rng = np.random.RandomState(case.seed)
        channels = 1 if case.grey else 3
        order = 'bgr' if rng.rand() < 0.5 else 'rgb'
        # A second, small image in the same padded batch, at its own magnitude (0 with the
        # identity case, so that both images check it).
        companion = Case(*SMALL[rng.randint(len(SMALL))], boxes=int(rng.choice(BOX_COUNTS)), grey=case.grey,
                         magnitude=0.0 if case.magnitude == 0.0 else float(rng.uniform(lo, hi)), seed=case.seed + 1)
        images = [case, companion]
        inputs, pixels, samples, annotations = _batch(images, channels, rng)
        augment = BatchPolicyAugment(policy='autoaug_det_v0', mean=IMAGENET_MEAN[:channels],
                                     std=IMAGENET_STD[:channels], channel_order=order, seed=case.seed)
        augment.policy = FixedChains([[ChainStep(name, c.magnitude, 1.0)] for c in images])
        before = inputs.clone()
        what = f'BatchPolicyAugment {name} {case} {order} with {companion}'
        out, out_samples = _call(what, lambda: augment(inputs, samples))

        assert out.shape == inputs.shape and out.dtype == torch.float32, what
        assert torch.equal(inputs, before), f'{what}: input modified'
        mean, std = MEAN[:channels].view(-1, 1, 1), STD[:channels].view(-1, 1, 1)
        for i, (c, image, sample, (boxes, labels, n_gt)) in enumerate(
                zip(images, pixels, out_samples, annotations)):
            where = f'{what}: image {i} ({c.height}x{c.width})'
            assert torch.equal(out[i, :, c.height:], before[i, :, c.height:]) \
                and torch.equal(out[i, :, :, c.width:], before[i, :, :, c.width:]), f'{where}: padding written'
            result = out[i, :, :c.height, :c.width] * std + mean
            assert bool(torch.isfinite(result).all()), f'{where}: non-finite pixels'
            assert float(result.min()) >= -0.01 and float(result.max()) <= 255.01, f'{where}: pixels outside 0..255'
            if c.magnitude == 0.0:
                assert float((result - image).abs().max()) <= FLOAT_IDENTITY_ATOL, \
                    f'{where}: magnitude 0 changed pixels'
            # gt and ignored boxes move together (one sign per image): check them as one list.
            gt, ignored = sample.gt_instances, sample.ignored_instances
            index = assert_boxes_follow_the_op(
                name, c.magnitude, boxes, labels, torch.cat([gt.bboxes.tensor, ignored.bboxes.tensor]).numpy(),
                torch.cat([gt.labels, ignored.labels]).numpy(), c.height, c.width, where)
            assert bool((index[:len(gt)] < n_gt).all() and (index[len(gt):] >= n_gt).all()), \
                f'{where}: instances moved between gt_instances and ignored_instances'


def test_posterize_at_magnitude_0_keeps_fractional_levels():
    # BatchPolicyAugment un-normalises level 209 to 208.99999; floor(x / 1) made it 208.
    images = torch.tensor([208.99999, 0.5, 255.0]).view(1, 1, 1, 3)
    for magnitude in (0.0, 0.4):   # both keep all 8 bits
        assert torch.equal(apply_op('Posterize', images, None, magnitude).images, images)
