"""The policy file's schema: its version numbers, its size limits and its record types.

:class:`PolicyFile` is a validated file (:func:`det_autoaug.policy.policy_file.policy_from_dict`
builds it, :meth:`PolicyFile.to_dict` writes it back); :class:`Snapshot` is one trajectory item,
:class:`SubPolicy` and :class:`SubPolicyOp` the sub-policies of a version-2 file. The limits bound
every field so that a corrupt file fails fast (``det_autoaug/policy/policy_file.py`` lists them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from ..ops.spaces import SpaceEntry
from .step import ChainStep

SCHEMA = 'det_autoaug.policy'
VERSION = 1
#: Version of files holding "subpolicies" (version 1 plus that field, required). Version-1 readers
#: ignore unknown keys, so such files carry another version number: an old reader then rejects
#: them loudly instead of silently sampling the entries instead of the sub-policies.
VERSION_SUBPOLICIES = 2
PROB_TOLERANCE = 1e-4
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32
MAX_ENTRIES = 4096
MAX_OPS_PER_POLICY = 16
MAX_SUBPOLICIES = 4096
MAX_SNAPSHOTS = 10_000
MAX_EPOCH = 1_000_000


@dataclass(frozen=True)
class Snapshot:
    """One trajectory item: the policy after search epoch ``epoch``."""

    epoch: int
    probs: Tuple[float, ...]
    apply_prob: float


@dataclass(frozen=True)
class SubPolicyOp:
    """One op of a sub-policy: ``op`` at ``magnitude``, applied with probability ``prob``."""

    op: str
    magnitude: float
    prob: float

    def step(self) -> ChainStep:
        """This op as the step a chain applier takes."""
        return ChainStep(self.op, self.magnitude, self.prob)


@dataclass(frozen=True)
class SubPolicy:
    """A sub-policy drawn with probability ``prob``; its ops run in order, each with its own prob."""

    prob: float
    ops: Tuple[SubPolicyOp, ...]


@dataclass(frozen=True)
class PolicyFile:
    """A validated policy file.

    Attributes:
        searcher: which searcher wrote it (``'ddas'``, ...).
        space: name of the search space the entries come from.
        entries: the space's entries, op names resolved to table names.
        probs: one probability per entry (sums to 1).
        apply_prob: probability that an image is augmented at all.
        ops_per_policy: entries drawn (with replacement) per augmented image.
        trajectory: the per-epoch snapshots, in order (empty when the file has none).
        meta: free-form metadata (creation time, config, iterations, ...).
        path: where the file was read from (``None`` for one built in memory).
        subpolicies: optional sub-policies (version 2, written by DADA): when present, an image
            draws one sub-policy with its ``prob`` and applies its ops, each with its own
            ``prob``; ``entries``/``probs``/``apply_prob`` then only summarise them.
    """

    searcher: str
    space: str
    entries: Tuple[SpaceEntry, ...]
    probs: Tuple[float, ...]
    apply_prob: float
    ops_per_policy: int
    trajectory: Tuple[Snapshot, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    path: Optional[str] = None
    subpolicies: Tuple[SubPolicy, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        """The JSON document, keys in the schema's order."""
        doc: Dict[str, Any] = {
            'schema': SCHEMA, 'version': VERSION_SUBPOLICIES if self.subpolicies else VERSION,
            'searcher': self.searcher, 'space': self.space,
            'entries': [{'op': e.op, 'magnitude': e.magnitude, 'level': e.level} for e in self.entries],
            'probs': list(self.probs), 'apply_prob': self.apply_prob, 'ops_per_policy': self.ops_per_policy,
        }
        if self.trajectory:
            doc['trajectory'] = [{'epoch': s.epoch, 'probs': list(s.probs), 'apply_prob': s.apply_prob}
                                 for s in self.trajectory]
        if self.subpolicies:
            doc['subpolicies'] = [{'prob': sp.prob, 'ops': [{'op': o.op, 'magnitude': o.magnitude, 'prob': o.prob}
                                                            for o in sp.ops]} for sp in self.subpolicies]
        doc['meta'] = {k: self.meta[k] for k in sorted(self.meta)}
        return doc
