"""Augment an mmdet training batch (before its data preprocessor) with a fixed chain of ops.

The DDAS search needs K copies of the same batch, copy k augmented with policy tau_k. mmdet's
training batches are ``dict(inputs=[uint8 (C, H, W)], data_samples=[DetDataSample])`` before
the data preprocessor normalises and pads them, so the ops run here in pixel space, on each
image's own size, and padding never enters the picture.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..ops.params import sample_params
from ..ops.torch_ops import apply_op


def _instance_boxes(sample) -> Tuple[Tensor, int]:
    """Boxes of the gt and the ignored instances of one sample, concatenated; (boxes, n_gt)."""
    gt = sample.gt_instances.bboxes
    gt = gt.tensor if hasattr(gt, 'tensor') else gt
    ignored = getattr(sample, 'ignored_instances', None)
    if ignored is not None and 'bboxes' in ignored:
        ign = ignored.bboxes.tensor if hasattr(ignored.bboxes, 'tensor') else ignored.bboxes
        return torch.cat([gt, ign.to(gt)]), len(gt)
    return gt, len(gt)


def _set_instances(sample, boxes: Tensor, keep: Tensor, n_gt: int) -> None:
    """Write the kept boxes back, dropping dropped instances with all their per-instance fields."""
    from mmdet.structures.bbox import HorizontalBoxes
    keep = keep.to(boxes.device)
    gt_keep, ign_keep = keep[:n_gt], keep[n_gt:]
    n_gt_kept = int(gt_keep.sum())
    gt = sample.gt_instances[gt_keep.to(sample.gt_instances.bboxes.device)]
    gt.bboxes = HorizontalBoxes(boxes[:n_gt_kept].to(gt.bboxes.device))
    sample.gt_instances = gt
    if len(ign_keep):
        ignored = sample.ignored_instances[ign_keep.to(sample.ignored_instances.bboxes.device)]
        ignored.bboxes = HorizontalBoxes(boxes[n_gt_kept:].to(ignored.bboxes.device))
        sample.ignored_instances = ignored


def augment_det_batch(data_batch: Dict, chain: Sequence[Tuple[str, float]], generator: torch.Generator,
                      device: torch.device | str = 'cpu', bgr: bool = True, min_size: float = MIN_SIZE,
                      min_visible: float = MIN_VISIBLE) -> Dict:
    """Apply ``chain`` (ops in order, each at its magnitude) to every image of an mmdet batch.

    Args:
        data_batch: ``dict(inputs=[(C, H, W) uint8], data_samples=[DetDataSample])`` as the
            dataloader yields it; not modified.
        chain: ``(op_name, magnitude)`` pairs, applied in order to every image (random
            parameters such as signs differ per image).
        generator: source of the random op parameters.
        device: where the images are augmented (the training device).
        bgr: inputs are BGR (mmdet's ``LoadImageFromFile``); the ops see RGB.
        min_size: drop rule, see :mod:`det_autoaug.ops.boxes`.
        min_visible: drop rule, see :mod:`det_autoaug.ops.boxes`.

    Returns:
        A new batch dict: images on ``device``, data samples copied with their boxes moved and
        the dropped instances removed (labels, flags and every other per-instance field).
    """
    inputs: List[Tensor] = [img.to(device) for img in data_batch['inputs']]
    samples = [s.clone() for s in data_batch['data_samples']]
    groups: Dict[Tuple[int, ...], List[int]] = defaultdict(list)
    for i, img in enumerate(inputs):
        groups[tuple(img.shape)].append(i)
    out_inputs: List[Tensor] = list(inputs)
    for shape, idx in groups.items():
        images = torch.stack([inputs[i] for i in idx])
        if bgr and images.shape[1] == 3:
            images = images.flip(1)
        boxes, n_gts = zip(*[_instance_boxes(samples[i]) for i in idx])
        boxes = [b.to(device=device, dtype=torch.float32) for b in boxes]
        keeps = [torch.ones(len(b), dtype=torch.bool, device=device) for b in boxes]
        for op, magnitude in chain:
            params = sample_params(op, len(idx), shape[-2], shape[-1], boxes, generator=generator, device=device)
            result = apply_op(op, images, boxes, float(magnitude), params, min_size=min_size,
                              min_visible=min_visible)
            images, boxes = result.images, list(result.boxes)
            for j, k in enumerate(result.keep):
                keeps[j] = keeps[j].clone()
                keeps[j][keeps[j].nonzero().squeeze(1)] = k.to(device)
        if bgr and images.shape[1] == 3:
            images = images.flip(1)
        for j, i in enumerate(idx):
            out_inputs[i] = images[j]
            _set_instances(samples[i], boxes[j], keeps[j], n_gts[j])
    return dict(inputs=out_inputs, data_samples=samples)
