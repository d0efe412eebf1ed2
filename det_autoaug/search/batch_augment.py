"""Augment a training batch (before its data preprocessor) with a fixed chain of ops.

The DDAS search needs K copies of the same batch, copy k augmented with policy tau_k. mmdet's
training batches are ``dict(inputs=[uint8 (C, H, W)], data_samples=[DetDataSample])`` before
the data preprocessor normalises and pads them, so the ops run here in pixel space, on each
image's own size, and padding never enters the picture. Classification batches (a stacked
``(B, C, H, W)`` tensor or a list of images, data samples without ``gt_instances``) go through
the same function; their labels are not touched.

Two routes make the copies, chosen by :func:`copy_route` (``backend='auto'``, what the search
context passes unless told otherwise):

- ``'cv2'``: hard copies (``differentiable=False``, no gates) of uint8 images for a CPU device.
  Each image goes through :func:`det_autoaug.ops.cv2_ops.apply_op_np`, which is 8-19x faster per
  image than the torch kernels on the CPU (kornia's warps above all).
- ``'torch'``: everything else: CUDA devices (one batched kernel per op), differentiable copies
  (DADA: magnitudes and gates carry gradients), float images, steps with gates;
  :func:`det_autoaug.policy.apply.apply_chains_torch` with ``draws='per_op', draw_runs=False``.

Both routes draw the random parameters the same way: per group of images of one size, per step,
one :func:`~det_autoaug.ops.params.sample_params` call for the group with the same box
probability, so the same generator calls in the same order. For one seed the two routes give

- the same boxes, keep masks, labels and every other per-instance field, bit for bit, and the
  generator in the same state afterwards: the cv2 kernels replay the torch kernels' parameters,
  and the boxes of the whole-image geometric ops are moved by the torch route's own float32
  matrices through the numpy twins of its box rule (:func:`~det_autoaug.ops.boxes.project_boxes_np`,
  :func:`~det_autoaug.ops.boxes.clip_and_filter_np`); the cv2 kernels' own float64 matrices can
  move a coordinate by an ulp, and with it a box across the drop threshold;
- pixels that agree up to interpolation and rounding (:mod:`det_autoaug.ops.cv2_ops`): each op
  alone differs by at most 1 grey level (0 for flips, look-up tables and cutouts); in a chain a
  statistics op after an interpolating one can spread that (Equalize after a warp: a few pixels
  by up to ~100 levels, the mean by < 0.1). ``tests/test_copies_cv2.py`` measures both.

So a seeded search on the CPU computes other pixels, and hence other losses, rewards and
probabilities, than before this route existed (or than with ``backend='torch'``): a copy of a
given chain draws the same parameters and keeps the same boxes and labels, but what the searcher
learns from it, and so the chains it picks later, can differ. Seeded searches on CUDA and
differentiable copies are unchanged.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE, clip_and_filter_np, project_boxes_np
from ..ops.cv2_ops import apply_op_np
from ..ops.table import get_op
from ..ops.torch_geometric import geometric_matrix
from ..policy.adapters import gather_instance_boxes, scatter_instance_boxes
from ..policy.apply import apply_chains_torch, draw_per_op
from ..policy.step import ChainStep, as_chain

#: The values of ``augment_batch(backend=...)``.
COPY_BACKENDS = ('auto', 'torch', 'cv2')


def copy_route(inputs: Sequence[Tensor], device: torch.device | str, differentiable: bool,
               steps: Sequence[ChainStep], backend: str = 'auto') -> str:
    """The route :func:`augment_batch` takes: ``'cv2'`` or ``'torch'`` (module doc).

    Args:
        inputs: the batch's images (a list, or a stacked tensor).
        device: where the copies go (the training device).
        differentiable: as :func:`augment_batch`.
        steps: the chain.
        backend: ``'auto'``: ``'cv2'`` for hard copies of uint8 images without gates on a CPU
            device, else ``'torch'``; ``'torch'`` or ``'cv2'``: that route (tests, benchmarks).

    Raises:
        ValueError: unknown ``backend``, or ``'cv2'`` for copies it cannot make (differentiable,
            gated or not uint8).
    """
    if backend not in COPY_BACKENDS:
        raise ValueError(f'backend={backend!r} is invalid: expected one of {COPY_BACKENDS}')
    if backend == 'torch':
        return 'torch'
    hard = not differentiable and all(s.gate is None for s in steps)
    uint8 = all(img.dtype == torch.uint8 for img in inputs)
    if backend == 'cv2':
        if not (hard and uint8):
            raise ValueError(f"backend='cv2' makes hard copies of uint8 images only: got differentiable="
                             f"{differentiable}, gates {[s.gate is not None for s in steps]}, dtypes "
                             f"{sorted({str(img.dtype) for img in inputs})}")
        return 'cv2'
    return 'cv2' if hard and uint8 and torch.device(device).type == 'cpu' else 'torch'


def augment_batch(data_batch: Dict, chain: Sequence[ChainStep], generator: torch.Generator,
                  device: torch.device | str = 'cpu', bgr: bool = True, min_size: float = MIN_SIZE,
                  min_visible: float = MIN_VISIBLE, differentiable: bool = False, backend: str = 'auto') -> Dict:
    """Apply ``chain`` (ops in order, each at its magnitude) to every image of a batch.

    The images of one size are augmented together: each step's random parameters in one draw for
    them (``draws='per_op'``), and every step runs (``draw_runs=False``: the searcher decided which
    images get the chain); then by the cv2 kernels image by image or by the batched torch kernels
    (:func:`copy_route`, module doc).

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
        device: where the images are augmented (the training device; the cv2 route works on the
            CPU and moves its results there).
        bgr: inputs are BGR (mmdet's ``LoadImageFromFile``); the ops see RGB.
        min_size: drop rule, see :mod:`det_autoaug.ops.boxes`.
        min_visible: drop rule, see :mod:`det_autoaug.ops.boxes`.
        differentiable: work on float images (0..255 scale) so that gradients reach tensor
            magnitudes and gates; the output images are then float. Without it magnitudes are
            taken as numbers.
        backend: ``'auto'``, ``'torch'`` or ``'cv2'``, see :func:`copy_route`.

    Returns:
        A new batch dict: images on ``device``; detection data samples copied with their boxes
        moved and the dropped instances removed (labels, flags and every other per-instance
        field); other data samples passed through.
    """
    steps = as_chain(chain)
    if not differentiable:
        steps = [replace(s, magnitude=float(s.magnitude)) if isinstance(s.magnitude, Tensor) else s for s in steps]
    route = copy_route(data_batch['inputs'], device, differentiable, steps, backend)
    work = 'cpu' if route == 'cv2' else device
    stacked = isinstance(data_batch['inputs'], Tensor)
    inputs: List[Tensor] = [img.to(work) for img in data_batch['inputs']]
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
        if with_boxes:
            boxes, n_gts = map(list, zip(*[gather_instance_boxes(samples[i], work) for i in idx]))
        else:
            boxes, n_gts = [torch.zeros(0, 4, device=work) for _ in idx], [0] * len(idx)
        if route == 'cv2':
            images, boxes, keeps = _copies_cv2([inputs[i] for i in idx], boxes, steps, generator, bgr,
                                               min_size, min_visible)
        else:
            images, boxes, keeps = _copies_torch(torch.stack([inputs[i] for i in idx]), boxes, steps, idx,
                                                 generator, bgr, min_size, min_visible)
        for j, i in enumerate(idx):
            out_inputs[i] = images[j].to(device)
            if with_boxes:
                scatter_instance_boxes(samples[i], boxes[j], keeps[j], n_gts[j])
    out = dict(data_batch)
    out.update(inputs=torch.stack(out_inputs) if stacked else out_inputs, data_samples=samples)
    return out


def _copies_torch(images: Tensor, boxes: List[Tensor], steps: Sequence[ChainStep], idx: List[int],
                  generator: torch.Generator, bgr: bool, min_size: float,
                  min_visible: float) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    """The torch route for the images ``idx`` of one size, stacked in ``images``."""
    flip = bgr and images.shape[1] == 3
    if flip:
        images = images.flip(1)
    group_chain = [_group_gate(s, idx, images.device) for s in steps]
    images, boxes, keeps = apply_chains_torch(images, boxes, [group_chain] * len(idx), generator, draws='per_op',
                                              draw_runs=False, min_size=min_size, min_visible=min_visible)
    return (images.flip(1) if flip else images), boxes, keeps


def _copies_cv2(images: List[Tensor], boxes: List[Tensor], steps: Sequence[ChainStep], generator: torch.Generator,
                bgr: bool, min_size: float, min_visible: float) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
    """The cv2 route for images of one size (CPU ``(C, H, W)`` uint8): per step, the draw of
    :func:`~det_autoaug.policy.apply.apply_chains_torch` (``draws='per_op', draw_runs=False``), then
    :func:`~det_autoaug.ops.cv2_ops.apply_op_np` image by image with that image's parameters."""
    if not steps:
        return [img.clone() for img in images], boxes, [torch.ones(len(b), dtype=torch.bool) for b in boxes]
    height, width = images[0].shape[1:]
    flip = bgr and images[0].shape[0] == 3
    arrays = [img.permute(1, 2, 0).numpy()[..., ::-1] if flip else img.permute(1, 2, 0).numpy() for img in images]
    box_arrays = [b.numpy() for b in boxes]
    keeps = [np.ones(len(b), dtype=bool) for b in box_arrays]
    draw = draw_per_op(generator, False, height, width)   # the torch route's draw (module doc)
    for step in steps:
        spec = get_op(step.op)
        _, params = draw(spec, [(j, step) for j in range(len(arrays))], [torch.from_numpy(b) for b in box_arrays])
        if spec.moves_boxes:  # the torch route's float32 matrices, for its boxes bit for bit (module doc)
            magnitudes = torch.full((len(arrays),), float(step.magnitude), dtype=torch.float32)
            matrices = geometric_matrix(spec.name, magnitudes, params.sign.to(torch.float32), height, width).numpy()
        for j in range(len(arrays)):
            if spec.moves_boxes:
                arrays[j] = apply_op_np(spec, arrays[j], None, step.magnitude, params.select(j))[0]
                box_arrays[j], step_keep = clip_and_filter_np(project_boxes_np(box_arrays[j], matrices[j]), height,
                                                              width, min_size=min_size, min_visible=min_visible)
            else:
                arrays[j], box_arrays[j], step_keep = apply_op_np(spec, arrays[j], box_arrays[j], step.magnitude,
                                                                  params.select(j))
            keeps[j][keeps[j].nonzero()[0][~step_keep]] = False
    out = [torch.from_numpy(np.ascontiguousarray((a[..., ::-1] if flip else a).transpose(2, 0, 1))) for a in arrays]
    return out, [torch.from_numpy(b) for b in box_arrays], [torch.from_numpy(k) for k in keeps]


def _group_gate(step: ChainStep, idx: List[int], device: Any) -> ChainStep:
    """``step`` with its gate on ``device`` and, when it has one value per image of the batch,
    restricted to the images ``idx`` of one size."""
    if step.gate is None:
        return step
    gate = step.gate.to(device).reshape(-1)
    if gate.numel() > 1:
        gate = gate[torch.tensor(idx, device=device)]
    return replace(step, gate=gate)
