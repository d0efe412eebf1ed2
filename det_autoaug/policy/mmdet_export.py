"""Export to MMDetection: a policy as a stock ``mmdet`` ``AutoAugment`` pipeline config.

:func:`export_mmdet_autoaugment` converts each chain to mmdet transforms at fixed magnitudes
(``_MMDET_EQUIVALENT``: our op -> mmdet's transform and conventions) and measures how far the
exported distribution over chains is from the policy's (:class:`MmdetExport`);
:func:`to_mmdet_autoaugment` returns just the config. Writes plain dicts and imports no OpenMMLab
module; building the config needs mmdet.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..ops.table import OPS
from .sampling import ChainStep, Policy, PolicySpec, PublishedPolicy, SearchedPolicy, build_policy

#: A sub-policy that does nothing: mmdet has no Identity transform and AutoAugment rejects empty
#: sub-policies, so a transform that never runs stands in for it.
IDENTITY_SUBPOLICY = ({'type': 'mmdet.Equalize', 'prob': 0.0},)
#: Scope of the exported transform types: AutoAugment builds its sub-policies through mmcv's
#: registry, which finds mmdet's transforms only by scoped name unless mmdet is the default scope.
MMDET_SCOPE = 'mmdet.'
#: Relative change above which the export warns that mmdet's rounding alters a magnitude.
ROUNDING_WARN_FRACTION = 0.05


#: Our op -> the mmdet transform at a fixed magnitude (``None``: the identity), read from each
#: op's ``OpSpec.mmdet`` (:mod:`det_autoaug.ops.mmdet_convert`). Ops missing here (bbox-only ops,
#: BBox_Cutout, Blur, Smooth) have no mmdet equivalent.
_MMDET_EQUIVALENT: Dict[str, Callable[[float], Optional[dict]]] = {
    op.name: op.mmdet for op in OPS if op.mmdet is not None}


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
        subs = [[o.step() for o in sp.ops] for sp in ranked]
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
            return [entries[int(j)].step() for j in picks]
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
    to about 0.01 for a near-uniform 67-entry policy at ``top_k=25``). Either way the
    total-variation distance from the policy (:class:`MmdetExport`) is the mass of the chains
    left out; past ``tolerance`` the export warns with the distance, the augmentation
    probabilities and the ``top_k`` that would be within it, or raises with ``strict=True``.

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
