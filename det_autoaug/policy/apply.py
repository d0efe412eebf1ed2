"""Applying chains: one image with the cv2 kernels, a batch with the batched torch kernels.

One applier per backend, over chains of :class:`~det_autoaug.policy.step.ChainStep`. numpy: one
image through :func:`det_autoaug.ops.cv2_ops.apply_op_np`; :func:`apply_chain_np` returns
``(image, boxes, keep)``, :func:`run_chain_np` adds the composed matrix of the geometric steps,
:func:`run_chain_traced` also the steps that ran (one loop, so the same draws and results). torch:
:func:`apply_chains_torch`, a batch through :func:`det_autoaug.ops.torch_ops.apply_op`, any device,
for every torch caller: the policy adapters (per-image draws, the default), the classification
comparison (``draws='per_op'``), the search's batch copies (``draws='per_op', draw_runs=False``,
with differentiable magnitudes and DADA's gates).

Applying a step draws, per image and in this order from the image's generator: for ops other
than bbox-only ones, a uniform number (the step runs when it is below ``prob``); then the op's
parameters (:func:`det_autoaug.ops.params.sample_params`). Bbox-only ops follow the TensorFlow
rule: they are always called and each box is selected with probability ``prob / 3``
(``apply_chains_torch(draws='per_op')`` draws the same things per op instead of per image). Because
every image draws from its own generator, :func:`apply_chains_torch` with generators
``image_generators(g, B)`` augments image ``i`` exactly as :func:`apply_chain_np` with
``image_generators(g, B)[i]`` (up to the kernels' interpolation and rounding differences),
whatever else is in the batch.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..ops.cv2_ops import apply_op_np
from ..ops.params import OpParams, sample_params
from ..ops.table import OpSpec, get_op
from ..ops.torch_geometric import geometric_matrix
from ..ops.torch_ops import apply_op
from .step import ChainStep

GeneratorOrList = Union[torch.Generator, Sequence[torch.Generator]]
#: The images of a group with their steps: ``(image index, step)``.
Members = List[Tuple[int, ChainStep]]
#: ``draw(spec, members, boxes) -> (members whose step runs, their parameters)``, one per ``draws``.
Draw = Callable[[OpSpec, Members, List[Tensor]], Tuple[Members, Optional[OpParams]]]


def image_generators(generator: Optional[torch.Generator], n: int) -> List[torch.Generator]:
    """``n`` independent CPU generators seeded from ``generator`` (one per image of a batch)."""
    seeds = torch.randint(0, 2 ** 62, (n,), generator=generator)
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def _step_params(spec: OpSpec, step: ChainStep, height: int, width: int, boxes: Tensor,
                 generator: Optional[torch.Generator], box_prob: Optional[float],
                 device: Union[str, torch.device, None] = None, draw_run: bool = True) -> Optional[OpParams]:
    """Draw whether ``step`` runs (unless ``draw_run`` is False) and its parameters; ``None`` when it
    does not run."""
    if spec.bbox_only:
        box_prob = step.prob / 3.0 if box_prob is None else box_prob
    else:
        if draw_run and not float(torch.rand(1, generator=generator)) < step.prob:
            return None
        box_prob = 1.0 / 3.0  # unused by ops that are not bbox-only
    return sample_params(spec, 1, height, width, [boxes], generator=generator, box_prob=box_prob,
                         device=device)


def _compose_keep(keep: Union[np.ndarray, Tensor],
                  step_keep: Union[np.ndarray, Tensor]) -> Union[np.ndarray, Tensor]:
    """Fold a step's keep mask (over the current boxes) into the mask over the original boxes."""
    keep = keep.clone() if isinstance(keep, Tensor) else keep.copy()
    index = keep.nonzero()[0] if isinstance(keep, np.ndarray) else keep.nonzero().flatten()
    keep[index[~step_keep]] = False
    return keep


def _run_chain_np(image: np.ndarray, boxes: Optional[np.ndarray], chain: Sequence[ChainStep],
                  generator: Optional[torch.Generator], box_prob: Optional[float], min_size: float,
                  min_visible: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, List[ChainStep]]:
    """The numpy applier: :func:`run_chain_traced`'s result (the public functions return parts of it)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f'image must be an (H, W, C) uint8 numpy array, got {type(image).__name__}')
    boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'boxes must have shape (N, 4), got {boxes.shape}')
    height, width = image.shape[:2]
    keep = np.ones(len(boxes), dtype=bool)
    matrix = np.eye(3)
    applied: List[ChainStep] = []
    out = image
    for step in chain:
        spec = get_op(step.op)
        params = _step_params(spec, step, height, width, torch.from_numpy(boxes), generator, box_prob)
        if params is None:
            continue
        if not spec.bbox_only or bool(params.box_mask[0].any()):
            applied.append(step)
        out, boxes, step_keep = apply_op_np(spec.name, out, boxes, step.magnitude, params,
                                            min_size=min_size, min_visible=min_visible)
        keep = _compose_keep(keep, step_keep)
        if spec.kind == 'geometric':
            m = geometric_matrix(spec.name, torch.tensor([float(step.magnitude)], dtype=torch.float64),
                                 params.sign.to(torch.float64), height, width)[0].numpy()
            matrix = m @ matrix
    if out is image:
        out = image.copy()  # the caller owns the result; the input is never aliased
    return out, boxes, keep, matrix, applied


def run_chain_np(image: np.ndarray, boxes: Optional[np.ndarray], chain: Sequence[ChainStep],
                 generator: Optional[torch.Generator], *, box_prob: Optional[float] = None,
                 min_size: float = MIN_SIZE, min_visible: float = MIN_VISIBLE
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`apply_chain_np` that also returns the composed 3x3 matrix of its geometric steps.

    Args:
        box_prob: overrides the ``prob / 3`` box probability of bbox-only steps.

    Returns:
        ``(image, boxes, keep, matrix)``; ``matrix`` is ``(3, 3)`` float64 in continuous pixel
        coordinates (the identity when no geometric step ran).
    """
    return _run_chain_np(image, boxes, chain, generator, box_prob, min_size, min_visible)[:4]


def run_chain_traced(image: np.ndarray, boxes: Optional[np.ndarray], chain: Sequence[ChainStep],
                     generator: Optional[torch.Generator], *, box_prob: Optional[float] = None,
                     min_size: float = MIN_SIZE, min_visible: float = MIN_VISIBLE
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, List[ChainStep]]:
    """:func:`run_chain_np` that also says which steps acted (for ``tools/browse_policy.py``).

    The same draws in the same order, so the same result.

    Args:
        image, boxes, chain, generator, box_prob, min_size, min_visible: as :func:`run_chain_np`.

    Returns:
        ``(image, boxes, keep, matrix, applied)``: those of :func:`run_chain_np`, and the steps
        that ran, in order (a bbox-only step only when it selected a box).
    """
    return _run_chain_np(image, boxes, chain, generator, box_prob, min_size, min_visible)


def apply_chain_np(image: np.ndarray, boxes: Optional[np.ndarray], chain: Sequence[ChainStep],
                   generator: Optional[torch.Generator], *, min_size: float = MIN_SIZE,
                   min_visible: float = MIN_VISIBLE) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply a chain to one image with the cv2 kernels (CPU data pipelines).

    Args:
        image: ``(H, W, 3)`` RGB (or ``(H, W, 1)`` / ``(H, W)`` grey) uint8. Not modified.
        boxes: ``(N, 4)`` ``(x1, y1, x2, y2)`` in pixels, or ``None``. Not modified.
        chain: the steps, in order.
        generator: the image's generator; every draw goes through it (module doc).
        min_size: geometric steps drop boxes narrower or shorter than this (px).
        min_visible: geometric steps drop boxes with less than this fraction left in the image.

    Returns:
        ``(image, boxes, keep)``: the new image, the kept boxes ``(M, 4)`` float32 and ``keep``
        ``(N,)`` bool over the input boxes (composed across steps): index labels and flags with it.

    Raises:
        KeyError: unknown op in the chain.
        ValueError: bad image, boxes or magnitude.
    """
    return _run_chain_np(image, boxes, chain, generator, None, min_size, min_visible)[:3]


def _cat_params(params: Sequence[OpParams]) -> OpParams:
    """Concatenate per-image parameters (batches of one) into one batch."""
    return OpParams(sign=torch.cat([p.sign for p in params]), center=torch.cat([p.center for p in params]),
                    box_index=torch.cat([p.box_index for p in params]),
                    box_mask=[m for p in params for m in p.box_mask],
                    box_center=[c for p in params for c in p.box_center])


def apply_chains_torch(images: Tensor, boxes: Optional[Sequence[Tensor]], chains: Sequence[Sequence[ChainStep]],
                       generator: GeneratorOrList, *, draws: str = 'per_image', draw_runs: bool = True,
                       min_size: float = MIN_SIZE, min_visible: float = MIN_VISIBLE
                       ) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    """Apply one chain per image to a batch with the batched torch kernels.

    For each chain position the images are grouped by op and :func:`~det_autoaug.ops.torch_ops.apply_op`
    runs once per group (magnitudes as a per-image tensor, or the steps' one magnitude tensor, so that
    a magnitude that requires grad gets its gradient); results are scattered back. A step with a
    ``gate`` maps its images to ``x + gate * (op(x) - x)`` and moves their boxes where the gate is
    above 0.5.

    Args:
        images: ``(B, C, H, W)`` uint8, or float on the 0..255 scale, any device. Not modified.
        boxes: ``B`` tensors ``(N_i, 4)``, or ``None``.
        chains: ``B`` chains (possibly empty, possibly of different lengths).
        generator: ``draws='per_image'``: one CPU generator (``B`` per-image generators are derived
            from it with :func:`image_generators`), or the ``B`` per-image generators themselves;
            ``draws='per_op'``: one CPU generator.
        draws: how the random numbers are drawn. ``'per_image'``: from each image's own generator,
            per step the run decision then the parameters (module doc), so that image ``i`` gets
            what :func:`apply_chain_np` gives it with the same generator, whatever else is in the
            batch. ``'per_op'``: per chain position and op, the run decisions of the op's images
            in one draw, then their parameters in one draw (fewer, larger draws: the
            classification comparison, the search's batch copies).
        draw_runs: ``False``: every step runs and no run decision is drawn (the search, where the
            searcher or a gate decides); bbox-only ops still select each box with ``prob / 3``.
        min_size: geometric steps drop boxes narrower or shorter than this (px).
        min_visible: geometric steps drop boxes with less than this fraction left in the image.

    Returns:
        ``(images, boxes, keeps)``: ``(B, C, H, W)`` in the input dtype; ``B`` tensors ``(M_i, 4)``;
        ``B`` bool tensors ``(N_i,)`` over the input boxes (composed across steps).

    Raises:
        ValueError: ``chains``, ``boxes`` or the generators not one per image; unknown ``draws``;
            bad inputs.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f'images must be a (B, C, H, W) tensor, got {getattr(images, "shape", type(images))}')
    batch, _, height, width = images.shape
    if len(chains) != batch:
        raise ValueError(f'got {len(chains)} chains for {batch} images: expected one per image')
    if boxes is None:
        boxes = [torch.zeros(0, 4, device=images.device) for _ in range(batch)]
    if len(boxes) != batch:
        raise ValueError(f'got {len(boxes)} box tensors for {batch} images: expected one per image')
    if draws == 'per_image':
        draw = _draw_per_image(generator, batch, draw_runs, height, width)
    elif draws == 'per_op':
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"draws='per_op' takes one torch.Generator, got {type(generator).__name__}")
        draw = draw_per_op(generator, draw_runs, height, width)
    else:
        raise ValueError(f"draws={draws!r} is invalid: expected 'per_image' or 'per_op'")
    out = images if images.requires_grad else images.clone()
    current = list(boxes)
    keeps = [torch.ones(b.shape[0], dtype=torch.bool, device=b.device) for b in boxes]
    for position in range(max((len(c) for c in chains), default=0)):
        groups: Dict[Tuple[str, Optional[float]], List[Tuple[int, ChainStep]]] = {}
        for i, chain in enumerate(chains):
            if position < len(chain):
                step = chain[position]
                spec = get_op(step.op)
                # per op, one draw for the group: of one box probability (sample_params takes one)
                key = (spec.name, step.prob / 3.0 if spec.bbox_only and draws == 'per_op' else None)
                groups.setdefault(key, []).append((i, step))
        for (name, _), members in groups.items():
            members, params = draw(get_op(name), members, current)
            if not members:
                continue
            index = [i for i, _ in members]
            whole = index == list(range(batch))
            where = torch.tensor(index, device=images.device)
            before = out if whole else out[where]
            result = apply_op(name, before, [current[i] for i in index],
                              _group_magnitude([s for _, s in members], images.device), params,
                              min_size=min_size, min_visible=min_visible)
            new, applied = _gated(before, result.images, [s for _, s in members], index, batch)
            if whole:
                out = new
            elif out.requires_grad or new.requires_grad:
                out = out.index_put((where,), new)  # out of place: autograd may still need ``out``
            else:
                out[where] = new
            for j, i in enumerate(index):
                if applied[j]:
                    current[i] = result.boxes[j]
                    keeps[i] = _compose_keep(keeps[i], result.keep[j])
    return out, current, keeps


def _draw_per_image(generator: GeneratorOrList, batch: int, draw_runs: bool, height: int, width: int) -> Draw:
    """The :data:`Draw` of ``draws='per_image'``: each image's own generator, run then parameters."""
    if isinstance(generator, torch.Generator) or generator is None:
        generators = image_generators(generator, batch)
    else:
        generators = list(generator)
        if len(generators) != batch:
            raise ValueError(f'got {len(generators)} generators for {batch} images: expected one per image')

    def draw(spec: OpSpec, members: Members, boxes: List[Tensor]) -> Tuple[Members, Optional[OpParams]]:
        running, params = [], []
        for i, step in members:
            # drawn on the CPU (the generators are CPU ones); apply_op moves each group's params once
            p = _step_params(spec, step, height, width, boxes[i], generators[i], None, device='cpu',
                             draw_run=draw_runs)
            if p is not None:
                running.append((i, step))
                params.append(p)
        return running, _cat_params(params) if params else None
    return draw


def draw_per_op(generator: torch.Generator, draw_runs: bool, height: int, width: int) -> Draw:
    """The :data:`Draw` of ``draws='per_op'``: the group's run decisions in one draw, then its parameters
    (also the draw of the search's cv2 copies, :mod:`det_autoaug.search.batch_augment`, so that both
    routes draw alike)."""
    def draw(spec: OpSpec, members: Members, boxes: List[Tensor]) -> Tuple[Members, Optional[OpParams]]:
        if draw_runs and not spec.bbox_only:
            runs = (torch.rand(len(members), generator=generator, dtype=torch.float64)
                    < torch.tensor([float(s.prob) for _, s in members], dtype=torch.float64)).tolist()
            members = [m for m, run in zip(members, runs) if run]
        if not members:
            return members, None
        box_prob = members[0][1].prob / 3.0 if spec.bbox_only else 1.0 / 3.0
        return members, sample_params(spec, len(members), height, width, [boxes[i] for i, _ in members],
                                      generator=generator, box_prob=box_prob, device='cpu')
    return draw


def _group_magnitude(steps: Sequence[ChainStep], device: torch.device) -> Tensor:
    """The magnitudes of a group's steps for :func:`apply_op`: the steps' one tensor when they share
    it (its gradient kept), else a ``(n,)`` float64 tensor."""
    first = steps[0].magnitude
    if isinstance(first, Tensor):
        if all(s.magnitude is first for s in steps):
            return first
        return torch.stack([torch.as_tensor(s.magnitude, dtype=torch.float64).to(device).reshape(())
                            for s in steps])
    return torch.tensor([float(s.magnitude) for s in steps], dtype=torch.float64, device=device)


def _gated(before: Tensor, after: Tensor, steps: Sequence[ChainStep], index: List[int],
           batch: int) -> Tuple[Tensor, List[bool]]:
    """The group's new images and which of them the op moved (their boxes follow): ``after`` where
    a step has no gate, else ``before + gate * (after - before)``, moved where the gate is > 0.5."""
    gate = steps[0].gate
    if any(s.gate is not gate for s in steps):
        raise ValueError(f'the {steps[0].op} steps at one chain position have different gates: expected one gate '
                         'tensor shared by them, or none')
    if gate is None:
        return after, [True] * len(steps)
    g = gate.to(before.device).reshape(-1)
    if g.numel() == 1:
        g = g.expand(len(index))
    elif g.numel() != batch:
        raise ValueError(f'gate has {g.numel()} values for a batch of {batch}: expected 1 or one per image')
    elif len(index) != batch:
        g = g[torch.tensor(index, device=before.device)]
    new = before + g.view(-1, 1, 1, 1).to(before.dtype) * (after - before)
    return new, (g.detach() > 0.5).tolist()
