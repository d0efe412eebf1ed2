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
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..ops.params import sample_params
from ..ops.torch_ops import apply_op
from ..policy.adapters import gather_instance_boxes, scatter_instance_boxes


def augment_batch(data_batch: Dict, chain: Sequence[tuple], generator: torch.Generator,
                  device: torch.device | str = 'cpu', bgr: bool = True, min_size: float = MIN_SIZE,
                  min_visible: float = MIN_VISIBLE, differentiable: bool = False) -> Dict:
    """Apply ``chain`` (ops in order, each at its magnitude) to every image of a batch.

    Args:
        data_batch: ``dict(inputs=[(C, H, W) uint8], data_samples=[DetDataSample])`` as mmdet's
            dataloader yields it, or a classification batch (``inputs`` a ``(B, C, H, W)``
            tensor or a list of images, labels in ``data_samples``); not modified.
        chain: ``(op_name, magnitude)`` pairs, applied in order to every image (random
            parameters such as signs differ per image). With ``differentiable``, a step may be
            ``(op_name, magnitude, gate)``: the images become ``x + gate * (op(x) - x)`` (gate
            ``None``: 1; a scalar or one value per image of the batch), and boxes follow the op
            only where the gate is above 0.5.
        generator: source of the random op parameters.
        device: where the images are augmented (the training device).
        bgr: inputs are BGR (mmdet's ``LoadImageFromFile``); the ops see RGB.
        min_size: drop rule, see :mod:`det_autoaug.ops.boxes`.
        min_visible: drop rule, see :mod:`det_autoaug.ops.boxes`.
        differentiable: work on float images (0..255 scale) so that gradients reach tensor
            magnitudes and gates; the output images are then float.

    Returns:
        A new batch dict: images on ``device``; detection data samples copied with their boxes
        moved and the dropped instances removed (labels, flags and every other per-instance
        field); other data samples passed through.
    """
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
    for shape, idx in groups.items():
        images = torch.stack([inputs[i] for i in idx])
        if bgr and images.shape[1] == 3:
            images = images.flip(1)
        if with_boxes:
            boxes, n_gts = map(list, zip(*[gather_instance_boxes(samples[i], device) for i in idx]))
        else:
            boxes, n_gts = [torch.zeros(0, 4, device=device) for _ in idx], [0] * len(idx)
        keeps = [torch.ones(len(b), dtype=torch.bool, device=device) for b in boxes]
        for op, magnitude, *gate in chain:
            params = sample_params(op, len(idx), shape[-2], shape[-1], boxes, generator=generator, device=device)
            result = apply_op(op, images, boxes, magnitude if differentiable else float(magnitude), params,
                              min_size=min_size, min_visible=min_visible)
            applied = [True] * len(idx)
            if gate and gate[0] is not None:
                g = gate[0].to(device).reshape(-1)
                g = g.expand(len(idx)) if g.numel() == 1 else g[torch.tensor(idx, device=device)]
                images = images + g.view(-1, 1, 1, 1).to(images.dtype) * (result.images - images)
                applied = (g.detach() > 0.5).tolist()
            else:
                images = result.images
            for j, k in enumerate(result.keep):
                if applied[j]:
                    keeps[j] = keeps[j].clone()
                    keeps[j][keeps[j].nonzero().squeeze(1)] = k.to(device)
                    boxes[j] = result.boxes[j]
        if bgr and images.shape[1] == 3:
            images = images.flip(1)
        for j, i in enumerate(idx):
            out_inputs[i] = images[j]
            if with_boxes:
                scatter_instance_boxes(samples[i], boxes[j], keeps[j], n_gts[j])
    out = dict(data_batch)
    out.update(inputs=torch.stack(out_inputs) if stacked else out_inputs, data_samples=samples)
    return out
