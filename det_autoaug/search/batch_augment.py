"""Augment a training batch (before its data preprocessor) with a fixed chain of ops.

The DDAS search needs K copies of the same batch, copy k augmented with policy tau_k. mmdet's
training batches are ``dict(inputs=[uint8 (C, H, W)], data_samples=[DetDataSample])`` before
the data preprocessor normalises and pads them, so the ops run here in pixel space, on each
image's own size, and padding never enters the picture. Classification batches (a stacked
``(B, C, H, W)`` tensor or a list of images, data samples without ``gt_instances``) go through
the same function; their labels are not touched.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..policy.adapters import gather_instance_boxes, scatter_instance_boxes
from ..policy.apply import apply_chains_torch
from ..policy.step import ChainStep, as_chain


def augment_batch(data_batch: Dict, chain: Sequence[ChainStep], generator: torch.Generator,
                  device: torch.device | str = 'cpu', bgr: bool = True, min_size: float = MIN_SIZE,
                  min_visible: float = MIN_VISIBLE, differentiable: bool = False) -> Dict:
    """Apply ``chain`` (ops in order, each at its magnitude) to every image of a batch.

    The images of one size go through :func:`det_autoaug.policy.apply.apply_chains_torch` together,
    with ``draws='per_op'`` (each step's random parameters in one draw for them) and
    ``draw_runs=False`` (every step runs: the searcher decided which images get the chain).

    Args:
        data_batch: ``dict(inputs=[(C, H, W) uint8], data_samples=[DetDataSample])`` as mmdet's
            dataloader yields it, or a classification batch (``inputs`` a ``(B, C, H, W)``
            tensor or a list of images, labels in ``data_samples``); not modified.
        chain: :class:`~det_autoaug.policy.step.ChainStep` s, applied in order to every image
            (random parameters such as signs differ per image; ``prob`` is not drawn). With
            ``differentiable``, a step's magnitude may be a tensor that requires grad, and its
            ``gate`` (``None``: 1; a scalar, or one value per image of ``data_batch``) makes the
            images ``x + gate * (op(x) - x)``, boxes following the op only where the gate is above
            0.5. The former ``(op, magnitude[, gate])`` tuples are still accepted.
        generator: source of the random op parameters.
        device: where the images are augmented (the training device).
        bgr: inputs are BGR (mmdet's ``LoadImageFromFile``); the ops see RGB.
        min_size: drop rule, see :mod:`det_autoaug.ops.boxes`.
        min_visible: drop rule, see :mod:`det_autoaug.ops.boxes`.
        differentiable: work on float images (0..255 scale) so that gradients reach tensor
            magnitudes and gates; the output images are then float. Without it magnitudes are
            taken as numbers.

    Returns:
        A new batch dict: images on ``device``; detection data samples copied with their boxes
        moved and the dropped instances removed (labels, flags and every other per-instance
        field); other data samples passed through.
    """
    steps = as_chain(chain)
    if not differentiable:
        steps = [replace(s, magnitude=float(s.magnitude)) if isinstance(s.magnitude, Tensor) else s for s in steps]
    stacked = isinstance(data_batch['inputs'], Tensor)
    inputs: List[Tensor] = [img.to(device) for img in data_batch['inputs']]
    if differentiable:
        inputs = [img.float() for img in inputs]
    samples = data_batch.get('data_samples')
    with_boxes = bool(samples) and hasattr(samples[0], 'gt_instances')
    if with_boxes:
        samples = [s.clone() for s in samples]
    groups: Dict[Tuple[int, ...], List[int]] = defaultdict(list)
    for i, img in enumerate(inputs):
        groups[tuple(img.shape)].append(i)
    out_inputs: List[Tensor] = list(inputs)
    for idx in groups.values():
        images = torch.stack([inputs[i] for i in idx])
        if bgr and images.shape[1] == 3:
            images = images.flip(1)
        if with_boxes:
            boxes, n_gts = map(list, zip(*[gather_instance_boxes(samples[i], device) for i in idx]))
        else:
            boxes, n_gts = [torch.zeros(0, 4, device=device) for _ in idx], [0] * len(idx)
        group_chain = [_group_gate(s, idx, device) for s in steps]
        images, boxes, keeps = apply_chains_torch(images, boxes, [group_chain] * len(idx), generator, draws='per_op',
                                                  draw_runs=False, min_size=min_size, min_visible=min_visible)
        if bgr and images.shape[1] == 3:
            images = images.flip(1)
        for j, i in enumerate(idx):
            out_inputs[i] = images[j]
            if with_boxes:
                scatter_instance_boxes(samples[i], boxes[j], keeps[j], n_gts[j])
    out = dict(data_batch)
    out.update(inputs=torch.stack(out_inputs) if stacked else out_inputs, data_samples=samples)
    return out


def _group_gate(step: ChainStep, idx: List[int], device: Any) -> ChainStep:
    """``step`` with its gate on ``device`` and, when it has one value per image of the batch,
    restricted to the images ``idx`` of one size."""
    if step.gate is None:
        return step
    gate = step.gate.to(device).reshape(-1)
    if gate.numel() > 1:
        gate = gate[torch.tensor(idx, device=device)]
    return replace(step, gate=gate)
