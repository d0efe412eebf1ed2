"""Policies and their draws: which chain of ops each image gets.

A *chain* is the list of :class:`~det_autoaug.policy.step.ChainStep` one image goes through, in
order. Three kinds of policy sample chains, all through a ``torch.Generator`` (a seeded run is reproducible):

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

:func:`build_policy` makes any of them from a name, a dict, a path or a loaded policy file.
Whether a step then runs, and with which parameters, is drawn when the chain is applied
(:mod:`det_autoaug.policy.apply`).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..ops.table import OpSpec, get_op
from .policy_file import PolicyFile, load_policy_file, schedule_index
from .published import PUBLISHED_POLICIES
from .step import ChainStep

PolicySpec = Union[str, 'os.PathLike[str]', PolicyFile, Mapping[str, Any]]


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
            return [o.step() for o in self.file.subpolicies[index].ops]
        probs, apply_prob = self.distribution(epoch, train_epochs)
        if not float(torch.rand(1, generator=generator)) < apply_prob:
            return []
        picks = torch.multinomial(probs, self.file.ops_per_policy, replacement=True, generator=generator)
        entries = self.file.entries
        return [entries[i].step() for i in picks.tolist()]

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
