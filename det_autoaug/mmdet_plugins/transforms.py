"""MMDetection pipeline transforms: one per op of the table (``'DA' + op name``) and ``PolicyAugment``.

The per-op transforms are generated from :data:`det_autoaug.ops.table.OPS` (never listed by
hand) and registered into ``mmdet.registry.TRANSFORMS`` as ``'DA' + name`` (``DARotate``,
``DAShearX``, ``DATranslateY_Only_BBoxes``, ...), a prefix that cannot clash with mmdet's own
``Rotate``/``ShearX``. Both kinds are thin adapters over the cv2 kernels
(:func:`det_autoaug.ops.cv2_ops.apply_op_np` through :func:`det_autoaug.policy.apply.run_chain_np`).

Shared behaviour:

- Randomness: each call seeds a fresh ``torch.Generator`` from numpy's global generator (which
  mmengine seeds per dataloader worker), so runs are reproducible and no per-call state is kept
  on the transform (:func:`det_autoaug.policy.adapters.numpy_seeded_generator`, where the rules
  of the other policy adapters are listed too).
- Boxes: geometric ops move ``gt_bboxes`` by the op's matrix, clip them, and drop the boxes that
  became too small (``min_size`` px) or mostly left the image (``min_visible``), together with
  their ``gt_bboxes_labels`` and ``gt_ignore_flags``. mmdet's own geometric transforms never drop
  boxes, so no ``FilterAnnotations`` is needed after these.
- ``homography_matrix`` (3x3 float32, continuous pixel coordinates) is composed as
  ``M @ previous`` by transforms that may move pixels (geometric ops, and ``PolicyAugment``).
- ``img_shape`` never changes.
- Box validation does not depend on the draw: every call checks ``gt_bboxes`` (finite, ``x1 <= x2``,
  ``y1 <= y2``, the rule of :func:`det_autoaug.ops.boxes.check_boxes`) before it samples anything,
  and raises ``ValueError`` naming the bad boxes, whether or not an op then runs.
  ``PolicyAugment(sanitize_boxes=True)`` drops them instead, with their labels, flags and masks
  (as torchvision's ``SanitizeBoundingBoxes``).
- Channel order: colour kernels weigh channels as RGB; mmdet loads BGR images, so with
  ``channel_order='bgr'`` (the default, as ``LoadImageFromFile``) the image is viewed as RGB
  for the ops whose result depends on the channel order.
- Instance masks and segmentation maps are not transformed: geometric ops (and a
  ``PolicyAugment`` whose policy holds one) raise ``ValueError`` when ``gt_masks`` or
  ``gt_seg_map`` are present (pixel-only ops leave them valid).
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Sequence, Type

import mmdet.datasets.transforms  # noqa: F401  (registers mmdet's names before the clash check)
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes, autocast_box_type

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..ops.table import MAX_LEVEL, OPS, OpSpec, check_magnitude, get_op
from ..policy.adapters import SANITIZE_HINT, invalid_boxes, invalid_boxes_message, numpy_seeded_generator, runner_epoch
from ..policy.apply import run_chain_np
from ..policy.sampling import (
    ChainStep,
    Policy,
    PolicySpec,
    PublishedPolicy,
    SearchedPolicy,
    TrivialAugmentPolicy,
    build_policy,
)

#: Prefix of the per-op transform names.
PREFIX = 'DA'
_CHANNEL_ORDERS = ('bgr', 'rgb')
# Kinds whose result depends on which channel is red: grey weights (Color, Contrast) live in
# colour kernels; bbox-only and cutout kernels treat channels alike, except Equalize/Solarize
# inside boxes, which are per channel too. Only 'colour' needs the RGB view.
_ORDER_DEPENDENT_KINDS = ('colour',)


def _registered(name: str) -> Optional[type]:
    """The class registered as ``name`` in mmdet's TRANSFORMS or its parents (mmcv), if any."""
    registry = TRANSFORMS
    while registry is not None:
        if name in registry.module_dict:
            return registry.module_dict[name]
        registry = registry.parent
    return None


def _register(cls: type, name: str) -> type:
    existing = _registered(name)
    if existing is not None and existing.__module__ != __name__:
        raise RuntimeError(f'cannot register det_autoaug transform {name!r}: mmdet.registry.TRANSFORMS '
                           f'already holds {existing.__module__}.{existing.__qualname__} under that name')
    # force: a re-import of this module (importlib.reload) replaces our own earlier classes
    TRANSFORMS.register_module(name=name, module=cls, force=existing is not None)
    return cls


def _check_number(name: str, value: Any, lo: float, hi: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value < lo or (hi is not None and value > hi):
        expected = f'[{lo:g}, {hi:g}]' if hi is not None else f'>= {lo:g}'
        raise ValueError(f'{name}={value!r} is invalid: expected a number in {expected}')
    return float(value)


def _check_channel_order(channel_order: str) -> str:
    if channel_order not in _CHANNEL_ORDERS:
        raise ValueError(f'channel_order={channel_order!r} is invalid: expected one of {_CHANNEL_ORDERS}')
    return channel_order


def _reject_masks(results: dict, what: str) -> None:
    for key in ('gt_masks', 'gt_seg_map'):
        if results.get(key) is not None:
            raise ValueError(f'{what} moves pixels but does not transform {key!r}: instance masks and '
                             'segmentation maps are not supported by det_autoaug geometric ops; remove '
                             f'{key!r} (e.g. LoadAnnotations(with_mask=False)) or use pixel-only ops')


# Per-instance result keys, indexed together when invalid boxes are dropped.
_INSTANCE_KEYS = ('gt_bboxes_labels', 'gt_ignore_flags', 'gt_masks')


def _check_input_boxes(results: dict, what: str, sanitize: Optional[bool]) -> None:
    """Validate ``gt_bboxes`` on every call (not only when an op runs); drop bad ones if ``sanitize``.

    ``sanitize=None``: the transform has no such option (the error does not suggest it).
    """
    boxes = results.get('gt_bboxes')
    if boxes is None:
        return
    tensor = boxes.tensor if isinstance(boxes, BaseBoxes) else torch.as_tensor(np.asarray(boxes, np.float32))
    bad = invalid_boxes(tensor)
    if not bool(bad.any()):
        return
    if not sanitize:
        hint = '' if sanitize is None else SANITIZE_HINT
        raise ValueError(invalid_boxes_message(f'{what}: gt_bboxes', tensor, bad, hint))
    keep = (~bad).numpy()
    results['gt_bboxes'] = boxes[torch.from_numpy(keep)] if isinstance(boxes, BaseBoxes) else boxes[keep]
    for key in _INSTANCE_KEYS:
        if results.get(key) is not None:
            results[key] = results[key][keep]


def _apply(results: dict, chain: Sequence[ChainStep], *, box_prob: Optional[float], min_size: float,
           min_visible: float, channel_order: str, record_matrix: bool) -> dict:
    """Run ``chain`` on ``results`` in place of its image, boxes, labels, flags and matrix."""
    image = results['img']
    rgb_view = (channel_order == 'bgr' and image.ndim == 3 and image.shape[2] == 3
                and any(get_op(s.op).kind in _ORDER_DEPENDENT_KINDS for s in chain))
    if rgb_view:
        image = np.ascontiguousarray(image[..., ::-1])
    boxes = results.get('gt_bboxes')
    box_array = None
    if boxes is not None:
        box_array = boxes.numpy() if isinstance(boxes, BaseBoxes) else np.asarray(boxes, np.float32)
    out, new_boxes, keep, matrix = run_chain_np(image, box_array, chain, numpy_seeded_generator(),
                                                box_prob=box_prob, min_size=min_size, min_visible=min_visible)
    results['img'] = np.ascontiguousarray(out[..., ::-1]) if rgb_view else out
    if boxes is not None:
        tensor = torch.from_numpy(np.ascontiguousarray(new_boxes, dtype=np.float32))
        results['gt_bboxes'] = type(boxes)(tensor) if isinstance(boxes, BaseBoxes) else tensor.numpy()
        if not keep.all():
            for key in ('gt_bboxes_labels', 'gt_ignore_flags'):
                if results.get(key) is not None:
                    results[key] = results[key][keep]
    if record_matrix:
        previous = results.get('homography_matrix')
        composed = matrix if previous is None else matrix @ previous
        results['homography_matrix'] = composed.astype(np.float32)
    return results


_KEYS_DOC = """
    Required Keys:

    - img (np.uint8, (H, W, 3) or (H, W))
    - gt_bboxes (BaseBoxes[torch.float32]) (optional)
    - gt_bboxes_labels (np.int64) (optional)
    - gt_ignore_flags (bool) (optional)

    Modified Keys:

    - img
    - gt_bboxes
    - gt_bboxes_labels
    - gt_ignore_flags
{added}"""


class TableOpTransform(BaseTransform):
    """Base of the generated per-op transforms; ``op_name`` is set by each subclass.

    Args:
        prob: probability that the op runs, in ``[0, 1]``. For bbox-only ops this is the
            TensorFlow probability: the op always runs and each box is selected with probability
            ``prob / 3`` (unless ``box_prob`` is given).
        level: level on the 0..14 scale, mapped with the detection convention
            (``OpSpec.magnitude_at(level, 'det')``).
        magnitude: the magnitude itself, in the op's ``magnitude_range`` (``0`` is the identity).
            Give exactly one of ``level`` and ``magnitude``, unless the op is magnitude-free (its
            level mapping is constant), where neither is needed.
        box_prob: bbox-only ops: probability that each box is selected (default ``prob / 3``).
        min_size: geometric ops drop boxes narrower or shorter than this (px), >= 0.
        min_visible: geometric ops drop boxes with less than this fraction left in the image.
        channel_order: ``'bgr'`` (mmdet's default) or ``'rgb'``: the order of ``results['img']``.

    Raises:
        ValueError: any argument out of range, or both / neither of ``level`` and ``magnitude``.
    """

    op_name: str = ''

    def __init__(self, prob: float = 1.0, level: Optional[float] = None, magnitude: Optional[float] = None,
                 box_prob: Optional[float] = None, min_size: float = MIN_SIZE, min_visible: float = MIN_VISIBLE,
                 channel_order: str = 'bgr') -> None:
        spec = get_op(self.op_name)
        what = f'{PREFIX}{spec.name}'
        self.prob = _check_number(f'{what}: prob', prob, 0.0, 1.0)
        if level is not None and magnitude is not None:
            raise ValueError(f'{what}: got level={level!r} and magnitude={magnitude!r}: expected exactly one')
        free = spec.magnitude_at(0) == spec.magnitude_at(MAX_LEVEL)
        if level is not None:
            _check_number(f'{what}: level', level, 0.0, MAX_LEVEL)
            self.magnitude = spec.magnitude_at(level, 'det')
        elif magnitude is not None:
            if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)):
                raise ValueError(f'{what}: magnitude={magnitude!r} is invalid: expected a number')
            check_magnitude(spec, magnitude)
            self.magnitude = float(magnitude)
        elif free:
            self.magnitude = spec.magnitude_at(0)
        else:
            raise ValueError(f'{what}: expected exactly one of level (0..{MAX_LEVEL:g}) and magnitude '
                             f'(in [{spec.magnitude_range[0]:g}, {spec.magnitude_range[1]:g}], {spec.unit})')
        self.level = level
        self.box_prob = None if box_prob is None else _check_number(f'{what}: box_prob', box_prob, 0.0, 1.0)
        self.min_size = _check_number(f'{what}: min_size', min_size, 0.0)
        self.min_visible = _check_number(f'{what}: min_visible', min_visible, 0.0, 1.0)
        self.channel_order = _check_channel_order(channel_order)

    @property
    def spec(self) -> OpSpec:
        return get_op(self.op_name)

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Apply the op (with probability ``prob``) to ``results``; see the class doc for the keys."""
        geometric = self.spec.kind == 'geometric'
        _check_input_boxes(results, f'{PREFIX}{self.op_name}', sanitize=None)
        if geometric:
            _reject_masks(results, f'{PREFIX}{self.op_name}')
        return _apply(results, [ChainStep(self.op_name, self.magnitude, self.prob)], box_prob=self.box_prob,
                      min_size=self.min_size, min_visible=self.min_visible, channel_order=self.channel_order,
                      record_matrix=geometric)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(prob={self.prob}, magnitude={self.magnitude:.6g}, level={self.level}, '
                f'box_prob={self.box_prob}, min_size={self.min_size}, min_visible={self.min_visible}, '
                f'channel_order={self.channel_order!r})')


def _make_transform(spec: OpSpec) -> Type[TableOpTransform]:
    lo, hi = spec.magnitude_range
    added = '\n    Added Keys:\n\n    - homography_matrix (np.float32, 3x3; composed as M @ previous)\n' \
        if spec.kind == 'geometric' else ''
    doc = (f'``{spec.name}`` of the det_autoaug op table as an mmdet transform: {spec.doc}.\n\n'
           f'    Magnitude: {spec.unit}, in [{lo:g}, {hi:g}]; identity at 0'
           f'{"; a random sign multiplies it" if spec.signed else ""}. At level 10: '
           f'{spec.magnitude_at(10):.4g}.\n' + _KEYS_DOC.format(added=added)
           + '\n    Args: see :class:`TableOpTransform`.\n    ')
    name = f'{PREFIX}{spec.name}'
    cls = type(name, (TableOpTransform,), {'op_name': spec.name, '__doc__': doc, '__module__': __name__})
    cls.__qualname__ = name
    return cls


#: Op name -> its generated transform class (also a module attribute, so it pickles).
OP_TRANSFORMS: Dict[str, Type[TableOpTransform]] = {}
for _spec in OPS:
    _cls = _register(_make_transform(_spec), f'{PREFIX}{_spec.name}')
    OP_TRANSFORMS[_spec.name] = _cls
    setattr(sys.modules[__name__], _cls.__name__, _cls)
del _spec, _cls


def _policy_moves_pixels(policy: Policy) -> bool:
    """Whether any op the policy can draw is geometric."""
    if isinstance(policy, PublishedPolicy):
        steps = [s for sub in policy.sub_policies for s in sub if s.prob > 0]
    elif isinstance(policy, SearchedPolicy):
        steps = list(policy.file.entries)
    elif isinstance(policy, TrivialAugmentPolicy):
        return any(get_op(op).kind == 'geometric' for op in policy.ops)
    else:
        return True
    return any(get_op(s.op).kind == 'geometric' for s in steps)


class PolicyAugment(BaseTransform):
    """Apply an augmentation policy to each image: one chain of ops sampled per call.

    The policy is built when the transform is (so a config with a bad name or file fails at
    build time): a published policy (``'autoaug_det_v0'`` .. ``'autoaug_det_v3'``: one
    sub-policy drawn uniformly per image, each step with its probability), TrivialAugment
    (``'trivialaugment'``: one op of ``det_default`` per image at a uniform magnitude, or
    ``dict(name='trivialaugment', space=...)``) or a policy file (augment with probability
    ``apply_prob`` by ``ops_per_policy`` entries drawn from ``probs``).

    Policy files with a trajectory follow the DDAS schedule by epoch: the current epoch is the
    runner's (:func:`det_autoaug.policy.adapters.runner_epoch`), the number of training epochs is
    ``train_epochs``, else the runner's ``max_epochs`` (an epoch past it counts as the last).
    Outside a runner (no epoch in the hub) the final policy is used. Dataloader
    workers see the hub as it was when they were started: with ``persistent_workers=True`` they
    keep the first epoch's snapshot, so use ``persistent_workers=False`` (or
    ``BatchPolicyAugment``) with scheduled policies.

    Required Keys:

    - img (np.uint8, (H, W, 3) or (H, W))
    - gt_bboxes (BaseBoxes[torch.float32]) (optional)
    - gt_bboxes_labels (np.int64) (optional)
    - gt_ignore_flags (bool) (optional)

    Modified Keys:

    - img
    - gt_bboxes
    - gt_bboxes_labels
    - gt_ignore_flags

    Added Keys:

    - homography_matrix (np.float32, 3x3; composed as M @ previous, identity when nothing moved)

    Args:
        policy: published policy name, ``dict(name=..., space=...)`` or policy-file path
            (:func:`det_autoaug.policy.sampling.build_policy`).
        train_epochs: number of training epochs, for the schedule of a trajectory (default: the
            runner's ``max_epochs``).
        min_size: geometric ops drop boxes narrower or shorter than this (px).
        min_visible: geometric ops drop boxes with less than this fraction left in the image.
        channel_order: ``'bgr'`` (mmdet's default) or ``'rgb'``: the order of ``results['img']``.
        sanitize_boxes: input boxes that are not finite or have ``x2 < x1`` / ``y2 < y1`` raise
            ``ValueError`` on every call (default), whether or not an op is drawn; with ``True``
            they are dropped with their labels, flags and masks instead.

    Raises:
        ValueError: unknown policy name, invalid policy file, bad arguments; at call time,
            invalid input boxes (unless ``sanitize_boxes``).
        FileNotFoundError: the policy file does not exist.
    """

    def __init__(self, policy: PolicySpec, train_epochs: Optional[int] = None, min_size: float = MIN_SIZE,
                 min_visible: float = MIN_VISIBLE, channel_order: str = 'bgr', sanitize_boxes: bool = False) -> None:
        if not isinstance(sanitize_boxes, bool):
            raise ValueError(f'PolicyAugment: sanitize_boxes={sanitize_boxes!r} is invalid: expected True or False')
        self.policy_spec = policy
        self.policy = build_policy(policy, train_epochs=train_epochs)
        self.train_epochs = train_epochs
        self.min_size = _check_number('PolicyAugment: min_size', min_size, 0.0)
        self.min_visible = _check_number('PolicyAugment: min_visible', min_visible, 0.0, 1.0)
        self.channel_order = _check_channel_order(channel_order)
        self.sanitize_boxes = sanitize_boxes
        self._moves_pixels = _policy_moves_pixels(self.policy)

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Sample a chain for this image and apply it; see the class doc for the keys."""
        _check_input_boxes(results, f'PolicyAugment({self.policy_spec!r})', self.sanitize_boxes)
        generator = numpy_seeded_generator()
        epoch, train_epochs = runner_epoch(self.train_epochs) if self.policy.uses_epoch else (None, None)
        if self._moves_pixels:  # checked on every call, not only when a geometric op is drawn
            _reject_masks(results, f'PolicyAugment({self.policy_spec!r})')
        chain = self.policy.sample_chain(generator, epoch, train_epochs)
        # The chain draws its op parameters from a second generator seeded from the same source,
        # so that its stream does not depend on how many numbers sampling the chain took.
        return _apply(results, chain, box_prob=None, min_size=self.min_size, min_visible=self.min_visible,
                      channel_order=self.channel_order, record_matrix=True)

    def __repr__(self) -> str:
        return (f'PolicyAugment(policy={self.policy_spec!r}, train_epochs={self.train_epochs}, '
                f'min_size={self.min_size}, min_visible={self.min_visible}, '
                f'channel_order={self.channel_order!r}, sanitize_boxes={self.sanitize_boxes})')


_register(PolicyAugment, 'PolicyAugment')

__all__ = ['PREFIX', 'OP_TRANSFORMS', 'TableOpTransform', 'PolicyAugment', 'invalid_boxes'] + [
    c.__name__ for c in OP_TRANSFORMS.values()]
