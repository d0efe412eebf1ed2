"""Policies: sampling a chain of ops per image, and applying chains (cv2 and batched torch).

A *chain* is the list of :class:`ChainStep` one image goes through, in order. Three kinds of
policy sample chains, all through a ``torch.Generator`` (a seeded run is reproducible):

- :class:`PublishedPolicy` (``'autoaug_det_v0'`` .. ``'autoaug_det_v3'``): one sub-policy drawn
  uniformly; each step keeps its published probability.
- :class:`TrivialAugmentPolicy` (``'trivialaugment'``, or ``dict(name='trivialaugment',
  space=...)``): one op drawn uniformly from a search space's distinct ops, its magnitude
  uniform between the identity and the op's AutoAugment strength (:func:`trivial_augment_range`),
  always applied; no search.
- :class:`SearchedPolicy` (a policy file): with probability ``apply_prob`` the image gets
  ``ops_per_policy`` entries drawn from ``probs`` with replacement, each with probability 1;
  otherwise the chain is empty. With a trajectory, training epoch ``e`` of ``train_epochs`` uses
  snapshot ``floor(e / ((train_epochs + 0.1) / num_snapshots))`` (the DDAS schedule). A file
  with ``subpolicies`` (DADA, version 2) instead draws one sub-policy with its probability and
  returns its ops, each with its own probability (the trajectory is then informational only).

Applying a step (:func:`apply_chain_np`, :func:`apply_chains_torch`) draws, per image and in
this order from the image's generator: for ops other than bbox-only ones, a uniform number
(the step runs when it is below ``prob``); then the op's parameters
(:func:`det_autoaug.ops.params.sample_params`). Bbox-only ops follow the TensorFlow rule: they are
always called and each box is selected with probability ``prob / 3``. Because every image draws
from its own generator, :func:`apply_chains_torch` with generators ``image_generators(g, B)``
augments image ``i`` exactly as :func:`apply_chain_np` with ``image_generators(g, B)[i]`` (up to
the kernels' interpolation and rounding differences), whatever else is in the batch.

:func:`to_mmdet_autoaugment` exports a policy as a stock ``mmdet`` ``AutoAugment`` config.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..ops.cv2_ops import apply_op_np
from ..ops.params import OpParams, sample_params
from ..ops.table import OpSpec, get_op
from ..ops.torch_geometric import geometric_matrix
from ..ops.torch_ops import apply_op
from .policy_file import PolicyFile, load_policy_file, schedule_index
from .published import PUBLISHED_POLICIES

PolicySpec = Union[str, 'os.PathLike[str]', PolicyFile, Mapping[str, Any]]
GeneratorOrList = Union[torch.Generator, Sequence[torch.Generator]]


@dataclass(frozen=True)
class ChainStep:
    """One step of a chain: ``op`` (table name) at ``magnitude``, run with probability ``prob``.

    For bbox-only ops ``prob`` is the TensorFlow one: the op always runs and each box is selected
    with probability ``prob / 3``.
    """

    op: str
    magnitude: float
    prob: float


def _check_prob(prob: Any, what: str) -> float:
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= float(prob) <= 1.0:
        raise ValueError(f'{what}: prob={prob!r} is invalid: expected a probability in [0, 1]')
    return float(prob)


class Policy:
    """What every policy offers: a name and :meth:`sample_chain`."""

    name: str = ''

    @property
    def uses_epoch(self) -> bool:
        """Whether :meth:`sample_chain` depends on the epoch (a searched policy with a trajectory)."""
        return False

    def sample_chain(self, generator: Optional[torch.Generator], epoch: Optional[int] = None,
                     train_epochs: Optional[int] = None) -> List[ChainStep]:
        raise NotImplementedError


class PublishedPolicy(Policy):
    """A list of sub-policies; per image one is drawn uniformly and applied step by step.

    Args:
        name: policy name (for reprs and errors).
        sub_policies: sub-policies of ``(op, prob, level)`` steps, TF names allowed, levels on the
            0..14 scale mapped with the detection convention.

    Raises:
        ValueError: empty policy or sub-policy, unknown op, bad probability or level.
    """

    def __init__(self, name: str, sub_policies: Sequence[Sequence[Tuple[str, float, float]]]) -> None:
        if not sub_policies:
            raise ValueError(f'policy {name!r} has no sub-policies: expected at least one')
        subs = []
        for i, sub in enumerate(sub_policies):
            if not sub:
                raise ValueError(f'policy {name!r}: sub-policy {i} is empty: expected at least one step')
            steps = []
            for j, (op, prob, level) in enumerate(sub):
                where = f'policy {name!r} sub-policy {i} step {j} ({op})'
                try:
                    spec = get_op(op)
                except KeyError as e:
                    raise ValueError(f'{where}: {e.args[0]}') from None
                steps.append(ChainStep(spec.name, spec.magnitude_at(level, 'det'), _check_prob(prob, where)))
            subs.append(tuple(steps))
        self.name = name
        self.sub_policies: Tuple[Tuple[ChainStep, ...], ...] = tuple(subs)

    def sample_chain(self, generator: Optional[torch.Generator], epoch: Optional[int] = None,
                     train_epochs: Optional[int] = None) -> List[ChainStep]:
        """One sub-policy drawn uniformly (``epoch`` and ``train_epochs`` are ignored)."""
        index = int(torch.randint(len(self.sub_policies), (1,), generator=generator))
        return list(self.sub_policies[index])

    def __repr__(self) -> str:
        return f'PublishedPolicy({self.name!r}, {len(self.sub_policies)} sub-policies)'


#: Names of the TrivialAugment policies and the search space each draws its ops from by default.
TRIVIAL_AUGMENT: Dict[str, str] = {'trivialaugment': 'det_default'}
TRIVIAL_AUGMENT_MAX_LEVEL = 10.0  # the top of the AutoAugment scale (14 only extends it for DDAS)


def trivial_augment_range(spec: OpSpec) -> Tuple[float, float]:
    """The interval TrivialAugment draws ``spec``'s magnitude from, uniformly.

    From the identity (magnitude 0) to the op's strength at the top of the AutoAugment scale:
    the smallest interval holding 0 and the magnitudes at levels 0 and 10. The level functions
    are monotone, so it holds every level in ``[0, 10]``, and it is the same in the detection and
    DDAS conventions (they differ only in the direction of Posterize and Solarize). Examples:
    Rotate ``[0, 30]`` degrees (and a random sign when applied), Color ``[-0.9, 0.9]`` (factor
    0.1 .. 1.9), Solarize ``[0, 256]``, Posterize ``[0, 7]`` bits removed. Magnitude-free ops
    (a level mapping that does not depend on the level: Identity, FlipLR, Equalize, ...) keep
    their fixed magnitude: ``(1, 1)``.

    Args:
        spec: the op.

    Returns:
        ``(low, high)``, inside ``spec.magnitude_range``.
    """
    weakest, strongest = spec.magnitude_at(0.0), spec.magnitude_at(TRIVIAL_AUGMENT_MAX_LEVEL)
    if weakest == strongest:
        return weakest, strongest
    return min(0.0, weakest, strongest), max(0.0, weakest, strongest)


class TrivialAugmentPolicy(Policy):
    """TrivialAugment (Mueller and Hutter, ICCV 2021) on a search space: no search, no parameters.

    Per image, in this order from the generator: one op drawn uniformly from the space's
    distinct ops (each op once, whatever its number of magnitude entries; Identity included when
    the space has it), then a magnitude uniform in :func:`trivial_augment_range` of the op. The
    step always runs (``prob`` 1). Signed ops draw their sign when applied, as everywhere
    (:func:`det_autoaug.ops.params.sample_params`: -1 or +1 with probability 1/2); the colour
    factors are signed through their range (Color ``[-0.9, 0.9]``). A bbox-only op selects each
    box with probability 1/3 (the TensorFlow ``prob / 3`` rule). The baseline any searched policy
    has to beat.

    Args:
        name: policy name (for reprs and errors).
        space: the search space whose ops are drawn (:data:`det_autoaug.ops.spaces.SPACES`):
            ``'det_default'`` for detection, ``'ddas_cifar'`` or ``'ddas_imagenet'`` for
            classification.

    Raises:
        ValueError: unknown space.
    """

    def __init__(self, name: str = 'trivialaugment', space: str = 'det_default') -> None:
        from ..ops.spaces import SPACES  # ops.spaces imports nothing of the policy layer
        if not isinstance(space, str) or space not in SPACES:
            raise ValueError(f'policy {name!r}: space={space!r} is unknown: expected one of {sorted(SPACES)}')
        self.name = name
        self.space = space
        self.ops: Tuple[str, ...] = tuple(dict.fromkeys(entry.op for entry in SPACES[space]))
        self.ranges: Tuple[Tuple[float, float], ...] = tuple(trivial_augment_range(get_op(op)) for op in self.ops)

    def sample_chain(self, generator: Optional[torch.Generator], epoch: Optional[int] = None,
                     train_epochs: Optional[int] = None) -> List[ChainStep]:
        """One op, uniform over the space's ops, at a uniform magnitude (``epoch`` is ignored)."""
        index = int(torch.randint(len(self.ops), (1,), generator=generator))
        low, high = self.ranges[index]
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        return [ChainStep(self.ops[index], low + u * (high - low), 1.0)]

    def __repr__(self) -> str:
        return f'TrivialAugmentPolicy({self.name!r}, space={self.space!r}, {len(self.ops)} ops)'


class SearchedPolicy(Policy):
    """A policy file: augment with probability ``apply_prob`` by ``ops_per_policy`` drawn entries.

    Args:
        policy_file: the validated file.
        train_epochs: number of training epochs, for the trajectory schedule; can also be given
            per call to :meth:`sample_chain`.
    """

    def __init__(self, policy_file: PolicyFile, train_epochs: Optional[int] = None) -> None:
        if train_epochs is not None and (isinstance(train_epochs, bool) or not isinstance(train_epochs, int)
                                         or train_epochs < 1):
            raise ValueError(f'train_epochs={train_epochs!r} is invalid: expected None or an int >= 1')
        self.file = policy_file
        self.name = policy_file.path or f'{policy_file.searcher}:{policy_file.space}'
        self.train_epochs = train_epochs
        self._final = (torch.tensor(policy_file.probs, dtype=torch.float64), policy_file.apply_prob)
        self._snapshots = [(torch.tensor(s.probs, dtype=torch.float64), s.apply_prob)
                           for s in policy_file.trajectory]

    @property
    def uses_epoch(self) -> bool:
        return bool(self._snapshots) and not self.file.subpolicies

    def distribution(self, epoch: Optional[int] = None,
                     train_epochs: Optional[int] = None) -> Tuple[Tensor, float]:
        """``(probs, apply_prob)`` used at ``epoch``: the scheduled snapshot, else the final policy.

        The schedule applies when the file has a trajectory and both ``epoch`` and
        ``train_epochs`` (argument, else the constructor's) are known.
        """
        train_epochs = train_epochs if train_epochs is not None else self.train_epochs
        if self._snapshots and epoch is not None and train_epochs is not None:
            return self._snapshots[schedule_index(epoch, train_epochs, len(self._snapshots))]
        return self._final

    def sample_chain(self, generator: Optional[torch.Generator], epoch: Optional[int] = None,
                     train_epochs: Optional[int] = None) -> List[ChainStep]:
        """Empty with probability ``1 - apply_prob``, else ``ops_per_policy`` entries with prob 1.

        With sub-policies: one drawn with its probability, its ops with their own probabilities.
        """
        if self.file.subpolicies:
            weights = torch.tensor([sp.prob for sp in self.file.subpolicies], dtype=torch.float64)
            index = int(torch.multinomial(weights, 1, generator=generator))
            return [ChainStep(o.op, o.magnitude, o.prob) for o in self.file.subpolicies[index].ops]
        probs, apply_prob = self.distribution(epoch, train_epochs)
        if not float(torch.rand(1, generator=generator)) < apply_prob:
            return []
        picks = torch.multinomial(probs, self.file.ops_per_policy, replacement=True, generator=generator)
        entries = self.file.entries
        return [ChainStep(entries[i].op, entries[i].magnitude, 1.0) for i in picks.tolist()]

    def __repr__(self) -> str:
        return (f'SearchedPolicy({self.name!r}, {len(self.file.entries)} entries, '
                f'apply_prob={self.file.apply_prob:.3g}, {len(self._snapshots)} snapshots)')


def build_policy(spec: PolicySpec, *, train_epochs: Optional[int] = None) -> Policy:
    """Build a policy from a published name (or a dict naming one), a policy-file path or a :class:`PolicyFile`.

    Args:
        spec: ``'autoaug_det_v0'`` .. ``'autoaug_det_v3'``; ``'trivialaugment'``
            (:class:`TrivialAugmentPolicy` on ``det_default``); ``dict(name=..., space=...)``, a
            published name with, for TrivialAugment only, the search space to draw from
            (``dict(name='trivialaugment', space='ddas_cifar')`` for classification); a path to
            a policy file; or a loaded :class:`PolicyFile`.
        train_epochs: training epochs for the trajectory schedule of a searched policy
            (ignored by published policies).

    Raises:
        FileNotFoundError: ``spec`` looks like a path (``.json``, or holds a separator) and no
            such file exists.
        ValueError: unknown name or space, a malformed dict, or an invalid policy file.
    """
    if isinstance(spec, PolicyFile):
        return SearchedPolicy(spec, train_epochs)
    if isinstance(spec, Mapping):
        return _policy_from_mapping(spec)
    if isinstance(spec, str) and spec in PUBLISHED_POLICIES:
        return PublishedPolicy(spec, PUBLISHED_POLICIES[spec])
    if isinstance(spec, str) and spec in TRIVIAL_AUGMENT:
        return TrivialAugmentPolicy(spec, TRIVIAL_AUGMENT[spec])
    if isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        looks_like_path = path.endswith('.json') or os.sep in path or '/' in path
        if os.path.exists(path) or looks_like_path:
            return SearchedPolicy(load_policy_file(path), train_epochs)
        raise ValueError(f'policy {path!r} is neither a published policy '
                         f'{sorted(PUBLISHED_POLICIES) + sorted(TRIVIAL_AUGMENT)} '
                         'nor an existing policy file')
    raise ValueError(f'policy spec {spec!r} is invalid: expected a published policy name, a dict with its '
                     'name, a path or a PolicyFile')


def _policy_from_mapping(spec: Mapping[str, Any]) -> Policy:
    """A published policy from ``{'name': ..., 'space': ...}`` (``space``: TrivialAugment only)."""
    names = sorted(PUBLISHED_POLICIES) + sorted(TRIVIAL_AUGMENT)
    unknown = sorted(set(spec) - {'name', 'space'})
    if unknown:
        raise ValueError(f'policy spec {dict(spec)!r} has unknown keys {unknown}: expected "name" and, for '
                         'TrivialAugment, "space"')
    name = spec.get('name')
    if not isinstance(name, str) or name not in names:
        raise ValueError(f'policy spec {dict(spec)!r}: name={name!r} is not a published policy: expected one '
                         f'of {names}')
    if name in TRIVIAL_AUGMENT:
        return TrivialAugmentPolicy(name, spec.get('space', TRIVIAL_AUGMENT[name]))
    if 'space' in spec:
        raise ValueError(f'policy spec {dict(spec)!r}: published policy {name!r} has fixed ops; "space" is '
                         'for TrivialAugment only')
    return PublishedPolicy(name, PUBLISHED_POLICIES[name])


# ----------------------------------------------------------------------------- applying chains

def image_generators(generator: Optional[torch.Generator], n: int) -> List[torch.Generator]:
    """``n`` independent CPU generators seeded from ``generator`` (one per image of a batch)."""
    seeds = torch.randint(0, 2 ** 62, (n,), generator=generator)
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def _step_params(spec: OpSpec, step: ChainStep, height: int, width: int, boxes: Tensor,
                 generator: Optional[torch.Generator], box_prob: Optional[float],
                 device: Union[str, torch.device, None] = None) -> Optional[OpParams]:
    """Draw whether ``step`` runs and its parameters; ``None`` when it does not run."""
    if spec.bbox_only:
        box_prob = step.prob / 3.0 if box_prob is None else box_prob
    else:
        if not float(torch.rand(1, generator=generator)) < step.prob:
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
    if not isinstance(image, np.ndarray):
        raise ValueError(f'image must be an (H, W, C) uint8 numpy array, got {type(image).__name__}')
    boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'boxes must have shape (N, 4), got {boxes.shape}')
    height, width = image.shape[:2]
    keep = np.ones(len(boxes), dtype=bool)
    matrix = np.eye(3)
    out = image
    for step in chain:
        spec = get_op(step.op)
        params = _step_params(spec, step, height, width, torch.from_numpy(boxes), generator, box_prob)
        if params is None:
            continue
        out, boxes, step_keep = apply_op_np(spec.name, out, boxes, step.magnitude, params,
                                            min_size=min_size, min_visible=min_visible)
        keep = _compose_keep(keep, step_keep)
        if spec.kind == 'geometric':
            m = geometric_matrix(spec.name, torch.tensor([float(step.magnitude)], dtype=torch.float64),
                                 params.sign.to(torch.float64), height, width)[0].numpy()
            matrix = m @ matrix
    if out is image:
        out = image.copy()  # the caller owns the result; the input is never aliased
    return out, boxes, keep, matrix


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
    out, boxes, keep, _ = run_chain_np(image, boxes, chain, generator, min_size=min_size,
                                       min_visible=min_visible)
    return out, boxes, keep


def _cat_params(params: Sequence[OpParams]) -> OpParams:
    """Concatenate per-image parameters (batches of one) into one batch."""
    return OpParams(sign=torch.cat([p.sign for p in params]), center=torch.cat([p.center for p in params]),
                    box_index=torch.cat([p.box_index for p in params]),
                    box_mask=[m for p in params for m in p.box_mask],
                    box_center=[c for p in params for c in p.box_center])


def apply_chains_torch(images: Tensor, boxes: Optional[Sequence[Tensor]], chains: Sequence[Sequence[ChainStep]],
                       generator: GeneratorOrList, *, min_size: float = MIN_SIZE,
                       min_visible: float = MIN_VISIBLE) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    """Apply one chain per image to a batch with the batched torch kernels.

    For each chain position the images are grouped by op and :func:`~det_autoaug.ops.torch_ops.apply_op`
    runs once per group (magnitudes as a per-image tensor); results are scattered back.

    Args:
        images: ``(B, C, H, W)`` uint8, or float on the 0..255 scale, any device. Not modified.
        boxes: ``B`` tensors ``(N_i, 4)``, or ``None``.
        chains: ``B`` chains (possibly empty, possibly of different lengths).
        generator: one CPU generator (``B`` per-image generators are derived from it with
            :func:`image_generators`), or the ``B`` per-image generators themselves.
        min_size: geometric steps drop boxes narrower or shorter than this (px).
        min_visible: geometric steps drop boxes with less than this fraction left in the image.

    Returns:
        ``(images, boxes, keeps)``: ``(B, C, H, W)`` in the input dtype; ``B`` tensors ``(M_i, 4)``;
        ``B`` bool tensors ``(N_i,)`` over the input boxes (composed across steps).

    Raises:
        ValueError: ``chains``, ``boxes`` or the generators not one per image; bad inputs.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f'images must be a (B, C, H, W) tensor, got {getattr(images, "shape", type(images))}')
    batch, _, height, width = images.shape
    if len(chains) != batch:
        raise ValueError(f'got {len(chains)} chains for {batch} images: expected one chain per image')
    if boxes is None:
        boxes = [torch.zeros(0, 4, device=images.device) for _ in range(batch)]
    if len(boxes) != batch:
        raise ValueError(f'got {len(boxes)} box tensors for {batch} images: expected one per image')
    if isinstance(generator, torch.Generator) or generator is None:
        generators = image_generators(generator, batch)
    else:
        generators = list(generator)
        if len(generators) != batch:
            raise ValueError(f'got {len(generators)} generators for {batch} images: expected one per image')
    out = images.clone()
    current = list(boxes)
    keeps = [torch.ones(b.shape[0], dtype=torch.bool, device=b.device) for b in boxes]
    for position in range(max((len(c) for c in chains), default=0)):
        groups: Dict[str, List[Tuple[int, float, OpParams]]] = {}
        for i, chain in enumerate(chains):
            if position >= len(chain):
                continue
            step = chain[position]
            spec = get_op(step.op)
            # drawn on the CPU (the generators are CPU ones); apply_op moves each group's params once
            params = _step_params(spec, step, height, width, current[i], generators[i], None, device='cpu')
            if params is not None:
                groups.setdefault(spec.name, []).append((i, float(step.magnitude), params))
        for name, members in groups.items():
            index = [i for i, _, _ in members]
            where = torch.tensor(index, device=images.device)
            magnitude = torch.tensor([m for _, m, _ in members], dtype=torch.float64, device=images.device)
            result = apply_op(name, out[where], [current[i] for i in index], magnitude,
                              _cat_params([p for _, _, p in members]), min_size=min_size,
                              min_visible=min_visible)
            out[where] = result.images
            for j, i in enumerate(index):
                current[i] = result.boxes[j]
                keeps[i] = _compose_keep(keeps[i], result.keep[j])
    return out, current, keeps


# ----------------------------------------------------------------------------- export to mmdet

#: A sub-policy that does nothing: mmdet has no Identity transform and AutoAugment rejects empty
#: sub-policies, so a transform that never runs stands in for it.
IDENTITY_SUBPOLICY = ({'type': 'mmdet.Equalize', 'prob': 0.0},)
#: Scope of the exported transform types: AutoAugment builds its sub-policies through mmcv's
#: registry, which finds mmdet's transforms only by scoped name unless mmdet is the default scope.
MMDET_SCOPE = 'mmdet.'
#: Relative change above which the export warns that mmdet's rounding alters a magnitude.
ROUNDING_WARN_FRACTION = 0.05


def _enhance(name: str) -> Callable[[float], Optional[dict]]:
    def convert(m: float) -> Optional[dict]:
        factor = 1.0 + m
        if not 0.0 <= factor <= 2.0:
            raise ValueError(f'{name} factor {factor:.4g} (magnitude {m:.4g}) is outside mmdet {name}\'s '
                             'range [0, 2]')
        return None if m == 0 else {'type': name, 'min_mag': factor, 'max_mag': factor}
    return convert


def _geometric(name: str, to_mmdet: Callable[[float], float]) -> Callable[[float], Optional[dict]]:
    def convert(m: float) -> Optional[dict]:
        value = float(to_mmdet(m))
        return None if m == 0 else {'type': name, 'min_mag': value, 'max_mag': value, 'reversal_prob': 0.5,
                                    'img_border_value': 128}
    return convert


def _flag(name: str, **kwargs: Any) -> Callable[[float], Optional[dict]]:
    return lambda m: {'type': name, **kwargs} if m > 0 else None


def _solarize_add(m: float) -> Optional[dict]:
    if m > 110.0:
        raise ValueError(f'SolarizeAdd magnitude {m:.4g} is outside mmdet SolarizeAdd\'s range [0, 110]')
    return None if m == 0 else {'type': 'SolarizeAdd', 'min_mag': float(m), 'max_mag': float(m)}


def _posterize(m: float) -> Optional[dict]:
    bits = float(max(1, 8 - int(round(m))))
    return None if bits == 8 else {'type': 'Posterize', 'min_mag': bits, 'max_mag': bits}


def _solarize(m: float) -> Optional[dict]:
    return None if m == 0 else {'type': 'Solarize', 'min_mag': 256.0 - m, 'max_mag': 256.0 - m}


def _cutout(m: float) -> Optional[dict]:
    return None if m == 0 else {'type': 'CutOut', 'n_holes': 1, 'cutout_ratio': (float(m), float(m)),
                                'fill_in': (128, 128, 128)}


#: Our op -> the mmdet transform at a fixed magnitude (``None``: the identity). mmdet's
#: conventions: Shear in degrees (``atan`` of our factor), Translate a fraction of the side,
#: Color/Contrast/Brightness/Sharpness a factor (``1 + m``), Solarize a threshold, Posterize bits
#: kept. Ops missing here (bbox-only ops, BBox_Cutout, Blur, Smooth) have no mmdet equivalent.
_MMDET_EQUIVALENT: Dict[str, Callable[[float], Optional[dict]]] = {
    'Identity': lambda m: None,
    'FlipLR': _flag('RandomFlip', direction='horizontal'),
    'FlipUD': _flag('RandomFlip', direction='vertical'),
    'AutoContrast': _flag('AutoContrast'),
    'Equalize': _flag('Equalize'),
    'Invert': _flag('Invert'),
    'Rotate': _geometric('Rotate', lambda m: m),
    'ShearX': _geometric('ShearX', lambda m: math.degrees(math.atan(m))),
    'ShearY': _geometric('ShearY', lambda m: math.degrees(math.atan(m))),
    'TranslateX': _geometric('TranslateX', lambda m: m),
    'TranslateY': _geometric('TranslateY', lambda m: m),
    'Posterize': _posterize,
    'Solarize': _solarize,
    'SolarizeAdd': _solarize_add,
    'Color': _enhance('Color'),
    'Contrast': _enhance('Contrast'),
    'Brightness': _enhance('Brightness'),
    'Sharpness': _enhance('Sharpness'),
    'Cutout': _cutout,
}


def _to_mmdet_step(step: ChainStep, rounded: List[str]) -> Optional[dict]:
    """The mmdet transform dict of a supported step, ``None`` if it is a no-op."""
    if step.prob == 0:
        return None
    transform = _MMDET_EQUIVALENT[step.op](step.magnitude)
    if transform is None:
        return None
    if 'min_mag' in transform:
        # mmdet's level_to_mag rounds every magnitude to one decimal: write what mmdet will use,
        # and report roundings that change the magnitude noticeably.
        value = transform['min_mag']
        transform['min_mag'] = transform['max_mag'] = round(value, 1)
        if abs(round(value, 1) - value) > ROUNDING_WARN_FRACTION * abs(value):
            rounded.append(f'{step.op} {value:.4g} -> {round(value, 1):g}')
    transform['type'] = MMDET_SCOPE + transform['type']
    if transform['type'] == MMDET_SCOPE + 'CutOut':  # CutOut has no prob argument
        return {'type': 'RandomApply', 'transforms': [transform], 'prob': step.prob}
    return {**transform, 'prob': step.prob}


def _exact_distribution(weights: Sequence[float]) -> List[float]:
    """Normalise to floats whose Python ``sum`` is exactly 1 (mmcv's RandomChoice asserts it)."""
    total = float(sum(weights))
    probs = [float(w) / total for w in weights]
    largest = max(range(len(probs)), key=probs.__getitem__)
    for _ in range(8):
        error = 1.0 - sum(probs)
        if error == 0.0:
            break
        probs[largest] += error
    return probs


#: Total-variation distance from the policy above which the export warns (``strict``: raises).
EXPORT_TV_TOLERANCE = 0.1


@dataclass(frozen=True)
class MmdetExport:
    """A policy exported to mmdet's ``AutoAugment``, with how far it is from the policy.

    Distributions are over chains: the exported sub-policies, the policy's sub-policies or
    ordered tuples of entries, and "no augmentation" (``1 - apply_prob`` of a searched policy).
    Since each exported sub-policy carries its chain's probability scaled up, the distance is the
    probability mass of the chains that were not exported (``top_k``, unsupported ops).

    Attributes:
        config: the ``AutoAugment`` config dict.
        tv_distance: total-variation distance between the exported distribution and the
            policy's, in [0, 1].
        augment_prob: the policy's probability of a chain other than "no augmentation".
        exported_augment_prob: the same for the exported config.
        kept: number of exported sub-policies (besides the "no augmentation" one).
        top_k_within_tolerance: the smallest ``top_k`` whose export is within the tolerance
            (``None`` when none is, e.g. when unsupported ops were skipped).
    """

    config: dict
    tv_distance: float
    augment_prob: float
    exported_augment_prob: float
    kept: int
    top_k_within_tolerance: Optional[int]


def _export_candidates(policy: Policy, top_k: int) -> Tuple[Callable[[int], List[ChainStep]], np.ndarray,
                                                             np.ndarray, int, float]:
    """The chains of ``policy`` most probable first: ``(steps_of, probs, supported, limit, identity)``.

    ``probs`` are the chains' probabilities (with ``identity``, the "no augmentation" mass, they
    sum to 1); ``supported`` says which chains have an mmdet equivalent; ``limit`` is how many to
    export.
    """
    def supported_steps(steps: Sequence[ChainStep]) -> bool:
        return all(s.op in _MMDET_EQUIVALENT for s in steps if s.prob > 0)

    if isinstance(policy, PublishedPolicy):
        subs = [list(sub) for sub in policy.sub_policies]
        probs = np.full(len(subs), 1.0 / len(subs))
        return subs.__getitem__, probs, np.array([supported_steps(s) for s in subs]), len(subs), 0.0
    if isinstance(policy, SearchedPolicy) and policy.file.subpolicies:
        ranked = sorted(policy.file.subpolicies, key=lambda sp: -sp.prob)
        subs = [[ChainStep(o.op, o.magnitude, o.prob) for o in sp.ops] for sp in ranked]
        probs = np.array([sp.prob for sp in ranked], dtype=np.float64)
        return subs.__getitem__, probs / probs.sum(), np.array([supported_steps(s) for s in subs]), top_k, 0.0
    if isinstance(policy, SearchedPolicy):
        entry_probs, apply_prob = policy.distribution()
        n, k = len(entry_probs), policy.file.ops_per_policy
        if n ** k > 10 ** 6:
            raise ValueError(f'{n} entries ** {k} ops per policy is too many tuples to rank: expected <= 1e6')
        entries = policy.file.entries
        weights, supported = np.ones(1), np.ones(1, dtype=bool)
        entry_supported = np.array([e.op in _MMDET_EQUIVALENT for e in entries])
        for _ in range(k):  # flattened in the order of itertools.product(range(n), repeat=k)
            weights = np.multiply.outer(weights, entry_probs.numpy()).reshape(-1)
            supported = np.logical_and.outer(supported, entry_supported).reshape(-1)
        order = np.argsort(-weights, kind='stable')

        def steps_of(i: int) -> List[ChainStep]:
            picks = np.unravel_index(order[i], (n,) * k)
            return [ChainStep(entries[int(j)].op, entries[int(j)].magnitude, 1.0) for j in picks]
        return steps_of, apply_prob * weights[order], supported[order], top_k, 1.0 - apply_prob
    raise ValueError(f'cannot export {policy!r}: expected a PublishedPolicy or a SearchedPolicy')


def _top_k_within(probs: np.ndarray, supported: np.ndarray, identity: float, tolerance: float) -> Optional[int]:
    """The fewest supported chains, most probable first, that leave at most ``tolerance`` out."""
    kept = np.cumsum(np.where(supported, probs, 0.0)) + identity
    reached = np.flatnonzero(kept >= 1.0 - tolerance - 1e-12)
    return None if not len(reached) else max(1, int(supported[:reached[0] + 1].sum()))


def export_mmdet_autoaugment(policy: Union[Policy, PolicySpec], top_k: int = 25, skip_unsupported: bool = False,
                             *, keep_apply_prob: bool = True, tolerance: float = EXPORT_TV_TOLERANCE,
                             strict: bool = False) -> MmdetExport:
    """Export a policy as a stock mmdet ``AutoAugment`` config and measure what the export lost.

    Published policies keep their sub-policies, uniformly weighted. A searched policy (its final
    probabilities, not the trajectory) becomes the ``top_k`` most probable ordered tuples of
    ``ops_per_policy`` entries, weighted ``apply_prob * p_i * p_j ...``, plus one identity
    sub-policy carrying ``1 - apply_prob``. A near-uniform policy spreads its mass over many
    tuples, so ``top_k`` of them carry little of it: by default (``keep_apply_prob=True``) the
    kept tuples are renormalised among themselves to share ``apply_prob``, so the chance that an
    image is augmented is kept; with ``False`` everything kept is renormalised together and the
    identity sub-policy takes most of the mass (the chance of augmenting falls, e.g. from 0.35
    to about 0.01 for a near-uniform 67-entry policy at ``top_k=25``). Either way the total-variation distance from the policy
    (:class:`MmdetExport`) is the mass of the chains left out; past ``tolerance`` the export
    warns with the distance, the augmentation probabilities and the ``top_k`` that would be
    within it, or raises with ``strict=True``.

    Magnitudes are fixed (``min_mag == max_mag``), converted to mmdet's conventions and rounded
    to one decimal as mmdet's ``level_to_mag`` does anyway (a warning lists those that change by
    more than ``ROUNDING_WARN_FRACTION``, typically Translate ratios). Behaviour differences
    to know: mmdet's geometric transforms clip boxes but never drop degenerate ones (add
    ``FilterAnnotations`` after it), mmdet's CutOut uses ``(m * W, m * H)`` rectangles placed by
    their top-left corner, and the colour transforms assume BGR images as mmdet loads them.

    Args:
        policy: a :class:`Policy` or anything :func:`build_policy` accepts.
        top_k: sub-policies kept from a searched policy (besides the identity one), >= 1.
        skip_unsupported: ops without an mmdet equivalent (bbox-only ops, BBox_Cutout, Blur,
            Smooth) raise ``ValueError`` by default; with ``True`` the sub-policies holding them
            are dropped (their probability mass is removed and the rest renormalised) with a warning.
        keep_apply_prob: (default True) a searched policy without sub-policies: the identity sub-policy keeps
            exactly ``1 - apply_prob`` and the kept tuples share ``apply_prob``.
        tolerance: total-variation distance in ``[0, 1]`` above which the export warns.
        strict: raise ``ValueError`` instead of warning past ``tolerance``.

    Returns:
        The :class:`MmdetExport`; its ``config`` is ``dict(type='AutoAugment', policies=[[...],
        ...], prob=[...])`` with scoped transforms (``'mmdet.Rotate'``), so the config builds
        whatever the default scope.

    Raises:
        ValueError: unsupported ops (unless skipped), nothing left to export, magnitudes outside
            mmdet's ranges, bad arguments, or (``strict``) a distance past ``tolerance``.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f'top_k={top_k!r} is invalid: expected an int >= 1')
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0.0 <= tolerance <= 1.0:
        raise ValueError(f'tolerance={tolerance!r} is invalid: expected a total-variation distance in [0, 1]')
    for name, flag in (('keep_apply_prob', keep_apply_prob), ('strict', strict)):
        if not isinstance(flag, bool):
            raise ValueError(f'{name}={flag!r} is invalid: expected True or False')
    if not isinstance(policy, Policy):
        policy = build_policy(policy)
    steps_of, probs, supported, limit, identity_weight = _export_candidates(policy, top_k)

    policies: List[list] = []
    kept: List[float] = []
    unsupported: Dict[str, int] = {}
    rounded: List[str] = []
    for i in range(len(probs)):
        if len(policies) == limit:
            break
        steps = steps_of(i)
        if not supported[i]:
            for op in sorted({s.op for s in steps if s.prob > 0 and s.op not in _MMDET_EQUIVALENT}):
                unsupported[op] = unsupported.get(op, 0) + 1
            continue
        converted = [t for t in (_to_mmdet_step(s, rounded) for s in steps) if t is not None]
        policies.append(converted or [dict(t) for t in IDENTITY_SUBPOLICY])
        kept.append(float(probs[i]))
    if unsupported and not skip_unsupported:
        raise ValueError(f'policy {policy.name!r} uses ops without an mmdet equivalent: {sorted(unsupported)}; '
                         'use PolicyAugment instead, or pass skip_unsupported=True to drop the sub-policies '
                         'holding them')
    if unsupported:
        warnings.warn(f'to_mmdet_autoaugment: dropped {sum(unsupported.values())} sub-policies of '
                      f'{policy.name!r} holding ops without an mmdet equivalent ({sorted(unsupported)}); '
                      'the remaining probabilities are renormalised', stacklevel=3)
    chains = len(policies)
    if not policies or sum(kept) + identity_weight <= 0:
        raise ValueError(f'nothing of policy {policy.name!r} can be exported to mmdet')
    if rounded:
        warnings.warn('to_mmdet_autoaugment: mmdet rounds magnitudes to one decimal: '
                      + ', '.join(sorted(set(rounded))), stacklevel=3)

    searched = np.array(kept + [identity_weight])
    if keep_apply_prob and identity_weight > 0 and sum(kept) > 0:
        exported = np.array([w * (1.0 - identity_weight) / sum(kept) for w in kept] + [identity_weight])
    else:
        exported = searched / searched.sum()
    tv = float(0.5 * (np.abs(exported - searched).sum() + max(0.0, 1.0 - searched.sum())))
    if identity_weight > 0:
        policies.append([dict(t) for t in IDENTITY_SUBPOLICY])
        kept.append(float(exported[-1]))
    weights = [float(w) for w in exported[:chains]] + kept[chains:]
    result = MmdetExport(
        config={'type': 'AutoAugment', 'policies': policies, 'prob': _exact_distribution(weights)},
        tv_distance=tv, augment_prob=1.0 - identity_weight, exported_augment_prob=float(1.0 - exported[-1]),
        kept=chains, top_k_within_tolerance=_top_k_within(probs, supported, identity_weight, tolerance))
    if tv > tolerance:
        suggestion = (f'top_k={result.top_k_within_tolerance} is within it' if result.top_k_within_tolerance
                      else 'no top_k is within it')
        chance = (f', and the chance that an image is augmented goes from {result.augment_prob:.3g} to '
                  f'{result.exported_augment_prob:.3g} (keep_apply_prob=True keeps it)' if identity_weight > 0 else '')
        message = (f'to_mmdet_autoaugment: the exported AutoAugment is at total-variation distance {tv:.3g} from '
                   f'the distribution of policy {policy.name!r} over chains (tolerance {tolerance:g}): the '
                   f'{chains} exported sub-policies carry {float(searched[:chains].sum()):.3g} of its '
                   f'probability{chance}. {suggestion}; PolicyAugment samples the policy exactly')
        if strict:
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)
    return result


def to_mmdet_autoaugment(policy: Union[Policy, PolicySpec], top_k: int = 25, skip_unsupported: bool = False,
                         *, keep_apply_prob: bool = True, tolerance: float = EXPORT_TV_TOLERANCE,
                         strict: bool = False) -> dict:
    """The ``AutoAugment`` config of :func:`export_mmdet_autoaugment` (same arguments).

    Warns when the export is further than ``tolerance`` (total variation) from the policy, and
    raises instead with ``strict=True``; :func:`export_mmdet_autoaugment` also returns the
    distance.

    Returns:
        ``dict(type='AutoAugment', policies=[[...], ...], prob=[...])``.
    """
    return export_mmdet_autoaugment(policy, top_k, skip_unsupported, keep_apply_prob=keep_apply_prob,
                                    tolerance=tolerance, strict=strict).config
