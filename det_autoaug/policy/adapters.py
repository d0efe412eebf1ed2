"""What the policy adapters share: the epoch they read, how each is seeded, the instances they move.

The adapters apply a policy inside someone else's training loop: ``PolicyAugment`` (an mmdet
pipeline transform, :mod:`det_autoaug.mmdet_plugins.transforms`), ``BatchPolicyAugment`` (an
mmdet batch augment, :mod:`det_autoaug.mmdet_plugins.batch_augment`), ``DAClsPolicy`` (a
classification pipeline transform, :mod:`det_autoaug.cls.transforms`), and the search's
augmented copies of a training batch (:func:`det_autoaug.search.batch_augment.augment_batch`).
Nothing here imports OpenMMLab at module level: mmengine is imported when the epoch is read,
and data samples are duck-typed, so :mod:`det_autoaug.search` stays importable without it.

Epoch: every adapter that follows a trajectory reads ``(epoch, train_epochs)`` with
:func:`runner_epoch`.

Seeding: each adapter follows the rule of the place it runs in, one function each below. They
are three rules, not one, because a shared rule would change every seeded run of two of them:

- ``PolicyAugment``: :func:`numpy_seeded_generator`, a fresh generator per call seeded from
  numpy's global RNG. It runs in dataloader workers, where mmengine's ``worker_init_fn`` seeds
  numpy per worker (as every mmdet pipeline transform relies on), and keeps no state on the
  transform.
- ``BatchPolicyAugment``: :func:`seed_once`, one generator for the module's life, seeded on the
  first batch from its ``seed`` or from torch's global generator (seeded by mmengine's
  ``randomness``). It runs once per batch in the training process, so one stream suffices.
- ``DAClsPolicy``: :func:`process_seeded_generator`, one generator per process, re-seeded when
  ``torch.initial_seed()`` changes, i.e. in every new dataloader worker (torch seeds each
  worker from the runner-seeded main generator, with or without mmengine's ``worker_init_fn``).
- ``augment_batch``: no rule of its own; its caller (the search context) passes the generator.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

#: The instance fields of an mmdet data sample whose boxes the ops move.
INSTANCE_FIELDS = ('gt_instances', 'ignored_instances')


def runner_epoch(train_epochs: Optional[int] = None) -> Tuple[Optional[int], Optional[int]]:
    """``(epoch, train_epochs)`` of the running mmengine runner, for a trajectory's schedule.

    Read from mmengine's ``MessageHub`` (runtime info ``'epoch'`` and ``'max_epochs'``, kept by
    the runner's ``RuntimeInfoHook``). Dataloader workers see the hub as it was when they were
    started.

    Args:
        train_epochs: the number of training epochs, if the adapter was given it; ``None``: the
            hub's ``'max_epochs'``.

    Returns:
        ``epoch``: 0-based, ``None`` outside a runner (then the final policy is used).
        ``train_epochs``: the argument, else the hub's ``'max_epochs'`` (``None`` when it is
        missing or 0). An epoch at or past the hub's ``max_epochs`` (an iteration-based loop can
        run past its nominal epochs) is clamped to the last one; against an explicit
        ``train_epochs`` it is not, so that a wrong value raises in
        :func:`det_autoaug.policy.policy_file.schedule_index`.
    """
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    epoch = hub.get_info('epoch')
    epoch = None if epoch is None else int(epoch)
    if train_epochs is not None:
        return epoch, train_epochs
    max_epochs = hub.get_info('max_epochs')
    max_epochs = int(max_epochs) if max_epochs else None
    if epoch is not None and max_epochs is not None:
        epoch = min(epoch, max_epochs - 1)
    return epoch, max_epochs


def numpy_seeded_generator() -> torch.Generator:
    """``PolicyAugment``'s rule: a fresh generator seeded from numpy's global RNG (module doc)."""
    return torch.Generator().manual_seed(int(np.random.randint(0, 2 ** 62, dtype=np.int64)))


def seed_once(seed: Optional[int]) -> torch.Generator:
    """``BatchPolicyAugment``'s rule: a generator seeded with ``seed``, else from torch's global one."""
    return torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(0, 2 ** 62, (1,))))


def process_seeded_generator(cached: Optional[Tuple[int, torch.Generator]]) -> Tuple[int, torch.Generator]:
    """``DAClsPolicy``'s rule: ``cached`` while ``torch.initial_seed()`` is unchanged, else a new one.

    Args:
        cached: ``(process seed, generator)`` from the previous call, or ``None``.

    Returns:
        ``(process seed, generator)``: keep it for the next call.
    """
    seed = torch.initial_seed()
    if cached is None or cached[0] != seed:
        return seed, torch.Generator().manual_seed(seed % 2 ** 63)
    return cached


def invalid_boxes(boxes: Tensor) -> Tensor:
    """Which boxes break the rule of :func:`det_autoaug.ops.boxes.check_boxes`.

    Args:
        boxes: ``(N, 4)`` ``(x1, y1, x2, y2)``, any float or integer dtype.

    Returns:
        ``(N,)`` bool: not finite, ``x2 < x1`` or ``y2 < y1``.
    """
    boxes = boxes.reshape(-1, 4).float()
    return ~torch.isfinite(boxes).all(dim=1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])


#: What the invalid-box error suggests where the adapter can sanitise.
SANITIZE_HINT = ', or pass sanitize_boxes=True to drop such boxes with their labels'


def invalid_boxes_message(what: str, boxes: Tensor, bad: Tensor, hint: str = '') -> str:
    """The error for invalid input boxes: how many, where, their values, what was expected."""
    index = bad.nonzero().flatten()
    values = boxes.reshape(-1, 4)[index[:3]].tolist()
    more = f' (and {len(index) - 3} more)' if len(index) > 3 else ''
    return (f'{what} holds {len(index)} invalid boxes at {index[:3].tolist()}{more}: {values}; expected finite '
            f'x1 <= x2 and y1 <= y2. Fix the annotations{hint}')


def plain_boxes(bboxes: Any) -> Tensor:
    """The ``(N, 4)`` tensor of mmdet boxes (``HorizontalBoxes``) or of a plain tensor."""
    return bboxes.tensor if hasattr(bboxes, 'tensor') else bboxes


def gather_instance_boxes(sample: Any, device: torch.device | str) -> Tuple[Tensor, int]:
    """The boxes of a data sample's gt and ignored instances, for the kernels.

    Args:
        sample: an mmdet ``DetDataSample`` (any object with ``get(field)`` returning an
            ``InstanceData`` or ``None``).
        device: where the kernels run.

    Returns:
        ``(boxes, n_gt)``: the gt boxes, then the ignored ones, as one float32 tensor on
        ``device``; a missing field contributes no boxes.

    Shape:
        boxes: ``(n_gt + n_ignored, 4)`` ``(x1, y1, x2, y2)``.
    """
    parts = []
    for key in INSTANCE_FIELDS:
        instances = sample.get(key)
        if instances is not None and 'bboxes' in instances:
            parts.append(plain_boxes(instances.bboxes).to(device=device, dtype=torch.float32).reshape(-1, 4))
        else:
            parts.append(torch.zeros(0, 4, device=device))
    return torch.cat(parts), int(parts[0].shape[0])


def scatter_instance_boxes(sample: Any, boxes: Tensor, keep: Tensor, n_gt: int) -> None:
    """Write the kept boxes back into ``sample``; drop the other instances with all their fields.

    Args:
        sample: the data sample :func:`gather_instance_boxes` read; its instance fields are
            replaced by the kept instances (labels, flags and every other per-instance field
            indexed by the keep mask), whose ``bboxes`` keep their type and dtype.
        boxes: the kept boxes, gt first, as the kernels return them.
        keep: which of the gathered boxes were kept.
        n_gt: the number of gt boxes gathered.

    Shape:
        boxes: ``(keep.sum(), 4)``; keep: ``(n_gt + n_ignored,)`` bool.
    """
    gt_keep, ign_keep = keep[:n_gt], keep[n_gt:]
    n_gt_kept = int(gt_keep.sum())
    for key, mask, new in (('gt_instances', gt_keep, boxes[:n_gt_kept]),
                           ('ignored_instances', ign_keep, boxes[n_gt_kept:])):
        instances = sample.get(key)
        if instances is None or 'bboxes' not in instances:
            continue
        old = instances.bboxes
        kept = instances[mask.to(plain_boxes(old).device)]
        kept.bboxes = type(old)(new.to(old.tensor)) if hasattr(old, 'tensor') else new.to(old)
        setattr(sample, key, kept)
