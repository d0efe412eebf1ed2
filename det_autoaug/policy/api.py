"""Apply a policy to ``(image, boxes, labels)`` in plain numpy or PyTorch, outside MMDetection.

As albumentations and torchvision v2 users expect::

    from det_autoaug.policy import DetPolicy
    aug = DetPolicy('autoaug_det_v0', seed=0)   # or 'trivialaugment', or a policy.json path
    image, boxes, labels = aug(image, boxes, labels)

:class:`DetPolicy` is a thin adapter over the policy layer: :meth:`Policy.sample_chain` draws
each image's chain, :func:`~det_autoaug.policy.apply.apply_chain_np` (numpy, the cv2 kernels)
or :func:`~det_autoaug.policy.apply.apply_chains_torch` (torch, the batched kernels, any
device) applies it; boxes are projected, clipped and filtered by the kernels' one shared rule,
and labels follow the kept boxes.

:func:`describe_steps` names the steps of a chain that ran
(:func:`~det_autoaug.policy.apply.run_chain_traced`, re-exported here, says which), for
``tools/browse_policy.py``.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE, check_boxes
from ..ops.table import MAX_LEVEL, get_op
from .apply import (
    apply_chain_np,
    apply_chains_torch,
    run_chain_traced,  # noqa: F401  (defined here before the numpy appliers became one)
)
from .sampling import ChainStep, Policy, PolicySpec, build_policy


def _boxes_tensor(boxes: Any, name: str) -> Tensor:
    """``boxes`` (tensor, array or nested list, ``(N, 4)`` or empty) as a checked float tensor."""
    if isinstance(boxes, Tensor):
        tensor = boxes.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(boxes, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise ValueError(f'{name} must be an (N, 4) array of (x1, y1, x2, y2) pixels, got {boxes!r}: {e}') from None
    if tensor.numel() == 0:
        tensor = tensor.reshape(0, 4)
    if not tensor.is_floating_point():
        tensor = tensor.float()
    check_boxes(tensor, name)
    return tensor


def _like_boxes(out: Tensor, original: Any) -> Union[np.ndarray, Tensor]:
    """``out`` as the kind of ``original``: a tensor on its device, else a numpy array; its float dtype kept."""
    if isinstance(original, Tensor):
        dtype = original.dtype if original.is_floating_point() else torch.float32
        return out.to(device=original.device, dtype=dtype)
    original_dtype = getattr(original, 'dtype', None)
    dtype = original_dtype if original_dtype is not None and np.issubdtype(original_dtype, np.floating) else np.float32
    return out.cpu().numpy().astype(dtype, copy=False)


def _keep_labels(labels: Any, keep: Union[np.ndarray, Tensor], num_boxes: int, name: str) -> Any:
    """The labels of the kept boxes, in the kind ``labels`` came in (tensor, array or list)."""
    if labels is None:
        return None
    if not hasattr(labels, '__len__') or getattr(labels, 'ndim', 1) != 1:
        raise ValueError(f'{name} must be a 1-d sequence of labels, one per box, got {type(labels).__name__} '
                         f'{tuple(getattr(labels, "shape", ()))}'.rstrip())
    if len(labels) != num_boxes:
        raise ValueError(f'{name} has {len(labels)} entries for {num_boxes} boxes: expected one label per box')
    keep_np = keep.cpu().numpy() if isinstance(keep, Tensor) else np.asarray(keep)
    if isinstance(labels, Tensor):
        return labels[torch.from_numpy(keep_np).to(labels.device)]
    if isinstance(labels, np.ndarray):
        return labels[keep_np]
    return [label for label, kept in zip(labels, keep_np.tolist()) if kept]


def _check_numpy_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8:
        raise ValueError(f'image: a numpy image must have dtype uint8, got {image.dtype} (a float image: pass a '
                         'torch tensor on the 0..255 scale)')
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))) or 0 in image.shape[:2]:
        raise ValueError(f'image: a numpy image must be (H, W, 3) RGB, (H, W, 1) or (H, W), got shape {image.shape}')


def _check_torch_images(images: Tensor) -> None:
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f'image: a tensor image must be uint8 or float on the 0..255 scale, got {images.dtype}')
    if images.shape[1] not in (1, 3) or 0 in images.shape[2:]:
        raise ValueError(f'image: a tensor image must be (C, H, W) or (B, C, H, W) with C 1 or 3, got shape '
                         f'{tuple(images.shape[1:]) if images.shape[0] == 1 else tuple(images.shape)}')
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise ValueError('image holds NaN or infinite pixels: expected finite values on the 0..255 scale')


class DetPolicy:
    """A detection augmentation policy applied to ``(image, boxes, labels)``.

    Each call draws a chain of ops per image from the policy (a published one, TrivialAugment, or
    a searched policy file) and applies it to the pixels and the boxes; boxes that became too
    small or mostly left the image are dropped, and their labels with them.

    Inputs and outputs (every output has the kind of its input: numpy in, numpy out; torch in,
    torch out, on the same device):

    - ``image``: ``(H, W, 3)`` RGB, ``(H, W, 1)`` or ``(H, W)`` uint8 numpy array (the cv2
      kernels); or a torch ``(C, H, W)`` / ``(B, C, H, W)`` tensor, uint8 or float on the 0..255
      scale, any device (the batched torch kernels; C is 3 or 1). Never modified.
    - ``boxes``: ``(N, 4)`` ``(x1, y1, x2, y2)`` in pixels (numpy, torch or a list), or ``None``;
      for a ``(B, C, H, W)`` batch, a list of ``B`` of them. Out: the kept boxes ``(M, 4)``,
      float32 (or the input's float dtype).
    - ``labels``: ``(N,)`` (numpy, torch or a list), or ``None``; a list of ``B`` for a batch.
      Out: the labels of the kept boxes.

    Randomness: every draw comes from the instance's ``torch.Generator``, seeded with ``seed``
    (``None``: a seed drawn from torch's global generator, so ``torch.manual_seed`` makes runs
    reproducible): the same seed and the same calls give the same results.

    Args:
        policy: ``'autoaug_det_v0'`` .. ``'autoaug_det_v3'``, ``'trivialaugment'``, a policy-file
            path, a dict or a :class:`Policy` (anything
            :func:`~det_autoaug.policy.sampling.build_policy` accepts).
        seed: seed of the instance's generator, or ``None``.
        train_epochs: training epochs, for a searched policy's trajectory schedule (then pass
            ``epoch`` to each call); ``None``: the final policy is used.
        min_size: boxes narrower or shorter than this (px) after a geometric op are dropped.
        min_visible: boxes with less than this fraction left in the image are dropped.

    Raises:
        ValueError: unknown policy name or space, invalid policy file, bad ``seed``.
        FileNotFoundError: a policy path that does not exist.

    Example:
        >>> aug = DetPolicy('trivialaugment', seed=0)
        >>> image = np.zeros((64, 64, 3), np.uint8)
        >>> image, boxes, labels = aug(image, np.array([[8., 8., 40., 40.]]), np.array([3]))
    """

    def __init__(self, policy: Union[Policy, PolicySpec] = 'autoaug_det_v0', seed: Optional[int] = None, *,
                 train_epochs: Optional[int] = None, min_size: float = MIN_SIZE,
                 min_visible: float = MIN_VISIBLE) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f'seed={seed!r} is invalid: expected None or an int >= 0')
        self.policy = policy if isinstance(policy, Policy) else build_policy(policy, train_epochs=train_epochs)
        self.train_epochs = train_epochs
        self.seed = int(torch.randint(0, 2 ** 62, (1,))) if seed is None else seed
        self.generator = torch.Generator().manual_seed(self.seed)
        self.filter_kwargs = dict(min_size=float(min_size), min_visible=float(min_visible))

    def sample_chain(self, epoch: Optional[int] = None) -> List[ChainStep]:
        """One image's chain, drawn from the instance's generator (what a call would apply)."""
        return self.policy.sample_chain(self.generator, epoch, self.train_epochs)

    def __call__(self, image: Union[np.ndarray, Tensor], boxes: Any = None, labels: Any = None, *,
                 epoch: Optional[int] = None) -> Tuple[Any, Any, Any]:
        """Augment one image (numpy or ``(C, H, W)`` tensor) or a ``(B, C, H, W)`` batch; see the class doc.

        Args:
            image: the image or batch.
            boxes: its boxes (a list of ``B`` for a batch), or ``None``.
            labels: the boxes' labels (a list of ``B`` for a batch), or ``None``.
            epoch: training epoch, for a searched policy's schedule (with ``train_epochs``).

        Returns:
            ``(image, boxes, labels)``; ``None`` stays ``None``.

        Raises:
            ValueError: an input of the wrong kind, dtype or shape (the message names it), boxes
                that are not finite ``x1 <= x2, y1 <= y2``, or labels not one per box.
        """
        if isinstance(image, np.ndarray):
            return self._apply_numpy(image, boxes, labels, epoch)
        if isinstance(image, Tensor) and image.dim() == 3:
            batch_boxes = None if boxes is None else [boxes]
            batch_labels = None if labels is None else [labels]
            out, out_boxes, out_labels = self._apply_torch(image.unsqueeze(0), batch_boxes, batch_labels, epoch)
            return (out[0], None if out_boxes is None else out_boxes[0],
                    None if out_labels is None else out_labels[0])
        if isinstance(image, Tensor) and image.dim() == 4:
            return self._apply_torch(image, boxes, labels, epoch)
        shape = f' of shape {tuple(image.shape)}' if isinstance(image, Tensor) else ''
        raise ValueError(f'image must be an (H, W, C) uint8 numpy array or a (C, H, W) / (B, C, H, W) torch tensor, '
                         f'got a {type(image).__name__}{shape}')

    def _apply_numpy(self, image: np.ndarray, boxes: Any, labels: Any, epoch: Optional[int]) -> Tuple[Any, Any, Any]:
        _check_numpy_image(image)
        box_tensor = None if boxes is None else _boxes_tensor(boxes, 'boxes')
        num_boxes = 0 if box_tensor is None else len(box_tensor)
        if labels is not None and boxes is None:
            raise ValueError('labels were given without boxes: expected boxes with one label each')
        _keep_labels(labels, np.ones(num_boxes, bool), num_boxes, 'labels')  # checked before any draw
        chain = self.sample_chain(epoch)
        box_array = None if box_tensor is None else box_tensor.cpu().numpy().astype(np.float32)
        out, out_boxes, keep = apply_chain_np(image, box_array, chain, self.generator, **self.filter_kwargs)
        if boxes is None:
            return out, None, None
        return out, _like_boxes(torch.from_numpy(out_boxes), boxes), _keep_labels(labels, keep, num_boxes, 'labels')

    def _apply_torch(self, images: Tensor, boxes: Any, labels: Any, epoch: Optional[int]) -> Tuple[Any, Any, Any]:
        _check_torch_images(images)
        batch = images.shape[0]
        for name, value in (('boxes', boxes), ('labels', labels)):
            if value is not None and (not isinstance(value, (list, tuple)) or len(value) != batch):
                size = f' of {len(value)}' if hasattr(value, '__len__') else ''
                raise ValueError(f'{name}: a ({batch}, C, H, W) batch needs a list of {batch} per-image {name}, got '
                                 f'{type(value).__name__}{size}')
        if labels is not None and boxes is None:
            raise ValueError('labels were given without boxes: expected boxes with one label each')
        box_tensors = None
        if boxes is not None:
            box_tensors = [_boxes_tensor(b, f'boxes[{i}]').to(images.device, torch.float32)
                           for i, b in enumerate(boxes)]
            if labels is not None:
                for i, (b, lab) in enumerate(zip(box_tensors, labels)):
                    _keep_labels(lab, np.ones(len(b), bool), len(b), f'labels[{i}]')
        chains = [self.sample_chain(epoch) for _ in range(batch)]
        out, out_boxes, keeps = apply_chains_torch(images, box_tensors, chains, self.generator, **self.filter_kwargs)
        if boxes is None:
            return out, None, None
        new_boxes = [_like_boxes(b, original) for b, original in zip(out_boxes, boxes)]
        if labels is None:
            return out, new_boxes, None
        return out, new_boxes, [_keep_labels(lab, k, len(b), f'labels[{i}]')
                                for i, (lab, k, b) in enumerate(zip(labels, keeps, box_tensors))]

    def __repr__(self) -> str:
        return f'DetPolicy({self.policy!r}, seed={self.seed})'


def describe_steps(steps: Sequence[ChainStep]) -> str:
    """``'Rotate(±12) + Color(0.4)'``, or ``'no op applied'`` when ``steps`` is empty.

    Magnitudes to 3 significant digits; ``±`` for signed ops at a non-zero magnitude (the sign is
    drawn when applied); magnitude-free ops (Identity, FlipLR, Equalize, ...) by name alone.
    """
    if not steps:
        return 'no op applied'
    parts = []
    for step in steps:
        spec = get_op(step.op)
        if spec.magnitude_at(0.0) == spec.magnitude_at(MAX_LEVEL):
            parts.append(spec.name)
        else:
            parts.append(f'{spec.name}({"±" if spec.signed and step.magnitude else ""}{step.magnitude:.3g})')
    return ' + '.join(parts)
