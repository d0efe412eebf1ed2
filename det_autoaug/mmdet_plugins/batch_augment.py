"""``BatchPolicyAugment``: a detection policy applied on the training device, as an mmdet batch augment.

Use it in a config: one line on top of any stock mmdet config, whatever its normalisation::

    model = dict(data_preprocessor=dict(batch_augments=[
        dict(type='BatchPolicyAugment', policy='autoaug_det_v0')]))

Normalisation: the augment reads ``mean``, ``std`` and the channel order from the data
preprocessor it is built in (ImageNet, caffe-style FCOS, RTMDet's, grey: whatever the stock
config says). ``DetDataPreprocessor`` builds its ``batch_augments`` in its ``__init__``, after its
own ``mean``/``std``; when it assigns them (``self.batch_augments = nn.ModuleList(...)``) a torch
module-registration hook installed by this module binds every ``BatchPolicyAugment`` in the list
to that preprocessor (:meth:`BatchPolicyAugment.bind`), copying its values. Any
``ImgDataPreprocessor`` subclass that builds its batch augments this way is served. ``mean``,
``std`` and ``channel_order`` given explicitly are checked against the preprocessor's and a
mismatch raises ``ValueError`` naming both. A module appended to ``batch_augments`` later, or
used on its own, is not bound: build it with :meth:`BatchPolicyAugment.from_preprocessor` or call
``bind``; unbound and without explicit values it assumes mmdet's ImageNet normalisation and warns.

Where it runs: ``DetDataPreprocessor.forward`` calls its batch augments only when called with
``training=True`` (validation and test never see them), after it has converted the channels,
normalised, padded and stacked the images and written ``batch_input_shape``/``pad_shape`` into
the data samples. So this module receives a normalised, padded ``(B, C, H, W)`` float batch.
For each image it

1. checks its boxes (``gt_instances`` and ``ignored_instances``): not finite, ``x2 < x1`` or
   ``y2 < y1`` raise ``ValueError`` on every call, whether or not an op is drawn
   (``sanitize_boxes=True`` drops those instances instead);
2. crops the valid region ``data_sample.img_shape`` (padding never enters the image, and the
   geometric matrices and pixel-sized magnitudes use the true image size); images of the same
   size are augmented together as one batch;
3. un-normalises it to the 0..255 pixel scale with the preprocessor's ``mean``/``std``, snaps
   values within ``1e-3`` of an integer to it (:data:`SNAP_TOLERANCE`: the round trip through
   float32 brings some uint8 levels back just below themselves, and a threshold op, Solarize or
   Posterize, would put them one step off; values farther from an integer, from an earlier float
   batch augment, are kept) and converts it to RGB if the preprocessor's output is BGR;
4. applies the chain of ops the policy draws for it (:meth:`Policy.sample_chain`), via the
   batched torch kernels (:func:`det_autoaug.policy.apply.apply_chains_torch`) on the batch's
   device;
5. re-normalises and writes it back into its crop. The padding is never written, so it keeps
   the pad value the preprocessor used.

Boxes of ``gt_instances`` and ``ignored_instances`` follow geometric ops; instances whose boxes
are dropped (see :mod:`det_autoaug.ops.boxes`) are removed with every per-instance field
(labels, flags, ...) by indexing the ``InstanceData`` with the keep mask. ``bboxes`` keep their
type (tensor or ``HorizontalBoxes``). ``homography_matrix`` is not updated: mmdet reads it only
to map test-time predictions back to the original image, and batch augments never run at test
time. Instance masks are not transformed, so a batch whose ``gt_instances`` hold ``masks``
raises ``ValueError``.

Randomness: one CPU ``torch.Generator`` draws every chain and every op parameter. With
``seed=None`` its seed is drawn from torch's global generator on the first call, so a run
seeded by mmengine (``randomness=dict(seed=...)``) is reproducible; an integer ``seed`` fixes
the stream regardless of the global state. Policy files with a trajectory are followed by
epoch (the DDAS schedule, :func:`det_autoaug.policy.policy_file.schedule_index`): the epoch and the
number of training epochs are the runner's, read by :func:`det_autoaug.policy.adapters.runner_epoch`
(an epoch past ``max_epochs`` counts as the last); outside a runner the final policy is used.
The gather and scatter of the instances, the epoch and the seeding rule are shared with the
other policy adapters (:mod:`det_autoaug.policy.adapters`).
"""
from __future__ import annotations

import math
import warnings
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.module import register_module_module_registration_hook

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..policy.adapters import (
    SANITIZE_HINT,
    gather_instance_boxes,
    invalid_boxes,
    invalid_boxes_message,
    plain_boxes,
    runner_epoch,
    scatter_instance_boxes,
    seed_once,
)

#: Un-normalised pixels this close to an integer are that integer (module doc, step 3). float32
#: round-off on the 0..255 scale is below 1e-4.
SNAP_TOLERANCE = 1e-3
#: mmdet's default normalisation (ImageNet statistics, RGB order, 0..255 scale).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
CHANNEL_ORDERS = ('rgb', 'bgr')
Stats = Tuple[float, ...]


def _as_stats(values: Sequence[float], name: str) -> Stats:
    try:
        stats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f'{name}={values!r}: expected a sequence of 1 or 3 numbers') from None
    if len(stats) not in (1, 3):
        raise ValueError(f'{name}={values!r}: expected 1 or 3 numbers (one per channel), got {len(stats)}')
    if not all(math.isfinite(v) for v in stats):
        raise ValueError(f'{name}={values!r}: expected finite numbers')
    if name == 'std' and any(v <= 0 for v in stats):
        raise ValueError(f'std={values!r}: expected positive numbers')
    return stats


def _same_stats(a: Stats, b: Stats) -> bool:
    """Equal per channel up to float32 round-off; one value stands for three equal ones."""
    if len(a) != len(b):
        a, b = (a * 3 if len(a) == 1 else a), (b * 3 if len(b) == 1 else b)
    return all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-5) for x, y in zip(a, b))


def snap_to_integers(pixels: Tensor) -> Tensor:
    """``pixels`` with every value within :data:`SNAP_TOLERANCE` of an integer set to that integer."""
    nearest = pixels.round()
    return torch.where((pixels - nearest).abs() <= SNAP_TOLERANCE, nearest, pixels)


def preprocessor_normalisation(preprocessor: nn.Module) -> Tuple[Stats, Stats, str]:
    """``(mean, std, channel_order)`` of a built mmengine ``ImgDataPreprocessor``.

    Without normalisation (no ``mean``/``std``) they are ``(0,)`` and ``(1,)``. The channel order
    is that of the preprocessor's output: ``'rgb'`` when it converts channels (``bgr_to_rgb=True``
    with mmdet's BGR loader), else ``'bgr'``.

    Raises:
        ValueError: ``preprocessor`` is not an image data preprocessor.
    """
    if not hasattr(preprocessor, '_enable_normalize') or not hasattr(preprocessor, '_channel_conversion'):
        raise ValueError(f'{type(preprocessor).__name__} is not an mmengine ImgDataPreprocessor (such as '
                         "mmdet's DetDataPreprocessor): cannot read its normalisation")
    if preprocessor._enable_normalize:
        mean = tuple(float(v) for v in preprocessor.mean.flatten().tolist())
        std = tuple(float(v) for v in preprocessor.std.flatten().tolist())
    else:
        mean, std = (0.0,), (1.0,)
    return mean, std, 'rgb' if preprocessor._channel_conversion else 'bgr'


@MODELS.register_module()
class BatchPolicyAugment(nn.Module):
    """Apply a detection augmentation policy to a normalised, padded training batch.

    Args:
        policy: a published policy name (``'autoaug_det_v0'`` .. ``'autoaug_det_v3'``,
            ``'trivialaugment'``), ``dict(name=..., space=...)``, the path of a policy file, or a
            ``PolicyFile``; see
            :func:`det_autoaug.policy.sampling.build_policy`.
        mean: leave ``None``: read from the data preprocessor this module is built in (module
            doc). Given, it must equal the preprocessor's ``mean`` (per channel, in the order of
            its output), else ``ValueError``; used as is outside a preprocessor.
        std: as ``mean``, for the preprocessor's ``std``.
        channel_order: as ``mean``: ``'rgb'`` if the preprocessor's output is RGB
            (``bgr_to_rgb=True`` with mmdet's BGR loader), ``'bgr'`` otherwise (e.g. the
            caffe-style FCOS and the RTMDet configs). The ops see RGB either way.
        seed: seed of the augmentation generator; ``None`` draws it from torch's global
            generator on the first call.
        min_size: geometric ops drop boxes narrower or shorter than this (px).
        min_visible: geometric ops drop boxes with less than this fraction left in the image.
        sanitize_boxes: input boxes that are not finite or have ``x2 < x1`` / ``y2 < y1`` raise
            ``ValueError`` on every call (default); with ``True`` their instances are dropped
            with every field instead.

    Raises:
        ValueError: unknown policy name, invalid policy file, bad ``mean``/``std``/``channel_order``,
            or values that disagree with the data preprocessor's.
        FileNotFoundError: the policy names a file that does not exist.
    """

    def __init__(self, policy: Any = 'autoaug_det_v0', mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, channel_order: Optional[str] = None,
                 seed: Optional[int] = None, min_size: float = MIN_SIZE,
                 min_visible: float = MIN_VISIBLE, sanitize_boxes: bool = False) -> None:
        super().__init__()
        from ..policy.sampling import build_policy
        if channel_order is not None and channel_order not in CHANNEL_ORDERS:
            raise ValueError(f'channel_order={channel_order!r}: expected one of {CHANNEL_ORDERS} or None')
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f'seed={seed!r}: expected an int or None')
        if not isinstance(sanitize_boxes, bool):
            raise ValueError(f'sanitize_boxes={sanitize_boxes!r}: expected True or False')
        self.explicit = dict(mean=None if mean is None else _as_stats(mean, 'mean'),
                             std=None if std is None else _as_stats(std, 'std'),
                             channel_order=channel_order)
        self.policy = build_policy(policy)
        self.seed = seed
        self.sanitize_boxes = sanitize_boxes
        self.filter_kwargs = dict(min_size=float(min_size), min_visible=float(min_visible))
        # Until bound to a preprocessor: the explicit values, else mmdet's default.
        self.channel_order = channel_order or 'rgb'
        mean_t, std_t = self.explicit['mean'] or IMAGENET_MEAN, self.explicit['std'] or IMAGENET_STD
        # Buffers follow the module to the training device; not saved in checkpoints.
        self.register_buffer('mean', torch.tensor(mean_t).view(1, -1, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std_t).view(1, -1, 1, 1), persistent=False)
        self.bound = False
        self._warned = False
        self.generator: Optional[torch.Generator] = None

    def bind(self, preprocessor: nn.Module) -> 'BatchPolicyAugment':
        """Take the normalisation and channel order of the data preprocessor this module runs in.

        Called automatically when a ``DetDataPreprocessor`` builds this module from its
        ``batch_augments`` (module doc).

        Args:
            preprocessor: a built ``ImgDataPreprocessor`` (e.g. ``model.data_preprocessor``).

        Returns:
            ``self``.

        Raises:
            ValueError: explicit ``mean``/``std``/``channel_order`` that disagree with the
                preprocessor's, or not an image data preprocessor.
        """
        mean, std, order = preprocessor_normalisation(preprocessor)
        given = self.explicit
        for name, ours, theirs in (('mean', given['mean'], mean), ('std', given['std'], std)):
            if ours is not None and not _same_stats(ours, theirs):
                raise ValueError(f'BatchPolicyAugment: {name}={list(ours)} disagrees with the data preprocessor '
                                 f"{type(preprocessor).__name__}'s {name}={list(theirs)}; leave {name} unset (it is "
                                 'read from the preprocessor) or make them equal')
        if given['channel_order'] is not None and given['channel_order'] != order:
            raise ValueError(f"BatchPolicyAugment: channel_order={given['channel_order']!r} disagrees with the data "
                             f"preprocessor {type(preprocessor).__name__}, whose output is {order!r} "
                             f'(bgr_to_rgb={order == "rgb"}); leave channel_order unset (it is read from the '
                             'preprocessor) or make them agree')
        device = self.mean.device
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.channel_order = order
        self.bound = True
        return self

    @classmethod
    def from_preprocessor(cls, preprocessor: nn.Module, policy: Any = 'autoaug_det_v0',
                          **kwargs: Any) -> 'BatchPolicyAugment':
        """Build bound to a built ``DetDataPreprocessor``: its normalisation and channel order.

        For a module added to ``preprocessor.batch_augments`` after the preprocessor was built
        (one built from the preprocessor's config is bound automatically).

        Args:
            preprocessor: an ``ImgDataPreprocessor`` (e.g. ``model.data_preprocessor``).
            policy: see the class.
            **kwargs: the other constructor arguments (explicit ``mean``/``std``/``channel_order``
                are checked against the preprocessor's).

        Returns:
            The module; append it to ``preprocessor.batch_augments`` to use it.
        """
        return cls(policy=policy, **kwargs).bind(preprocessor)

    def _generator(self) -> torch.Generator:
        if self.generator is None:
            self.generator = seed_once(self.seed)
        return self.generator

    def forward(self, inputs: Tensor, data_samples: List[Any]) -> Tuple[Tensor, List[Any]]:
        """Augment the batch.

        Args:
            inputs: ``(B, C, H, W)`` float, normalised and padded by the data preprocessor.
            data_samples: ``B`` ``DetDataSample`` with ``img_shape`` and ``gt_instances``;
                updated in place (boxes moved, dropped instances removed).

        Returns:
            ``(inputs, data_samples)``: a new tensor of the same shape, dtype and device (the
            input is not modified) and the same data sample objects.

        Raises:
            ValueError: inputs not a 4-d float tensor, one data sample per image missing,
                instance masks present, or invalid boxes (unless ``sanitize_boxes``).
        """
        from ..policy.apply import apply_chains_torch
        if not isinstance(inputs, Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
            raise ValueError('BatchPolicyAugment expects the (B, C, H, W) float batch of a data '
                             f'preprocessor, got {getattr(inputs, "shape", type(inputs).__name__)}')
        batch, channels, height, width = inputs.shape
        if data_samples is None or len(data_samples) != batch:
            raise ValueError(f'BatchPolicyAugment needs one data sample per image: {batch} images, '
                             f'{None if data_samples is None else len(data_samples)} samples')
        if self.mean.shape[1] not in (1, channels):
            raise ValueError(f'mean has {self.mean.shape[1]} values but the images have {channels} channels')
        if not self.bound and self.explicit['mean'] is None and not self._warned:
            warnings.warn('BatchPolicyAugment runs outside a data preprocessor and was given no mean/std: '
                          "assuming mmdet's ImageNet normalisation; build it from the preprocessor's "
                          'batch_augments, or with BatchPolicyAugment.from_preprocessor', stacklevel=2)
            self._warned = True
        for i, sample in enumerate(data_samples):
            self._check_boxes(sample, i)
        generator = self._generator()
        epoch, max_epochs = runner_epoch()
        chains = [self.policy.sample_chain(generator, epoch=epoch, train_epochs=max_epochs)
                  for _ in range(batch)]

        groups: Dict[Tuple[int, int], List[int]] = defaultdict(list)
        for i, sample in enumerate(data_samples):
            if 'gt_instances' in sample and 'masks' in sample.gt_instances:
                raise ValueError('BatchPolicyAugment does not transform instance masks; use the '
                                 'PolicyAugment pipeline transform for instance segmentation')
            if not chains[i]:
                continue
            h, w = sample.img_shape[:2] if 'img_shape' in sample else (height, width)
            groups[(min(int(h), height), min(int(w), width))].append(i)
        if not groups:
            return inputs, data_samples

        out = inputs.clone()
        mean, std = self.mean.to(inputs), self.std.to(inputs)
        for (h, w), idx in groups.items():
            pixels = snap_to_integers((inputs[idx, :, :h, :w] * std + mean).clamp(0, 255))
            if self.channel_order == 'bgr' and channels == 3:
                pixels = pixels.flip(1)
            boxes, n_gts = zip(*[gather_instance_boxes(data_samples[i], inputs.device) for i in idx])
            images, new_boxes, keeps = apply_chains_torch(pixels, list(boxes), [chains[i] for i in idx],
                                                          generator, **self.filter_kwargs)
            if self.channel_order == 'bgr' and channels == 3:
                images = images.flip(1)
            out[idx, :, :h, :w] = (images - mean) / std
            for j, i in enumerate(idx):
                scatter_instance_boxes(data_samples[i], new_boxes[j], keeps[j], n_gts[j])
        return out, data_samples

    def _check_boxes(self, sample: Any, index: int) -> None:
        """Validate the sample's boxes on every call; drop invalid instances if ``sanitize_boxes``."""
        for key in ('gt_instances', 'ignored_instances'):
            instances = sample.get(key)
            if instances is None or 'bboxes' not in instances:
                continue
            boxes = plain_boxes(instances.bboxes).detach()
            bad = invalid_boxes(boxes)
            if not bool(bad.any()):
                continue
            if not self.sanitize_boxes:
                raise ValueError(invalid_boxes_message(f'BatchPolicyAugment: data_samples[{index}].{key}.bboxes',
                                                       boxes.cpu(), bad.cpu(), SANITIZE_HINT))
            setattr(sample, key, instances[~bad])


def batch_augment_cfg(data_preprocessor: Dict[str, Any], policy: Any = 'autoaug_det_v0',
                      **kwargs: Any) -> Dict[str, Any]:
    """The ``BatchPolicyAugment`` config with a ``DetDataPreprocessor`` config's values written out.

    Not needed for a batch augment built by the preprocessor (it reads them, module doc); the
    explicit values are checked against the preprocessor's when it is built.

    Args:
        data_preprocessor: the ``model.data_preprocessor`` config dict (``mean``, ``std``,
            ``bgr_to_rgb``; missing ``mean``/``std`` mean no normalisation).
        policy: see :class:`BatchPolicyAugment`.
        **kwargs: the other arguments of :class:`BatchPolicyAugment`.

    Returns:
        ``dict(type='BatchPolicyAugment', policy=..., mean=..., std=..., channel_order=...)``.
    """
    mean = data_preprocessor.get('mean')
    std = data_preprocessor.get('std')
    order = 'rgb' if data_preprocessor.get('bgr_to_rgb', False) else 'bgr'
    cfg: Dict[str, Union[str, Any]] = dict(
        type='BatchPolicyAugment', policy=policy,
        mean=list(mean) if mean is not None else [0.0], std=list(std) if std is not None else [1.0],
        channel_order=order)
    cfg.update(kwargs)
    return cfg


def _bind_to_preprocessor(module: nn.Module, name: str, submodule: Optional[nn.Module]) -> None:
    """Global module-registration hook: ``preprocessor.batch_augments = ModuleList([...])`` binds ours."""
    if name != 'batch_augments' or not isinstance(submodule, nn.ModuleList) \
            or not hasattr(module, '_enable_normalize'):
        return None
    for augment in submodule:
        if isinstance(augment, BatchPolicyAugment):
            augment.bind(module)
    return None


# One hook per process, also across importlib.reload of this module.
if '_REGISTRATION_HOOK' in globals():
    _REGISTRATION_HOOK.remove()  # noqa: F821  (defined by the previous import)
_REGISTRATION_HOOK = register_module_module_registration_hook(_bind_to_preprocessor)
