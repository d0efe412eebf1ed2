"""The policy file (schema ``det_autoaug.policy``, version 1): writing, reading, validation.

Reading and writing live here (:func:`load_policy_file`, :func:`save_policy_file`, and
:func:`schedule_index`, the snapshot a training epoch uses); the record types and limits in
:mod:`det_autoaug.policy.file_schema`, the validation (:func:`policy_from_dict`) in
:mod:`det_autoaug.policy.file_checks`; this module re-exports both.

A policy file is the JSON a searcher writes and :class:`~det_autoaug.policy.sampling.SearchedPolicy`
reads (see ``docs/architecture.md``, "Policy file (version 1)")::

    {"schema": "det_autoaug.policy", "version": 1, "searcher": "ddas", "space": "det_default",
     "entries": [{"op": "Rotate", "magnitude": 9.0, "level": 3.0}, ...],
     "probs": [...], "apply_prob": 0.35, "ops_per_policy": 2,
     "trajectory": [{"epoch": 0, "probs": [...], "apply_prob": 0.35}, ...],
     "meta": {...}}

Every problem is reported when the file is read (or before it is written), with the path, the
field (``subpolicies[0].ops[1]``) and what was expected, so a training config fails at build
time, not in a dataloader worker. Booleans are not numbers (``"version": true`` is refused), and
every field is bounded, so a hostile or corrupt file fails fast instead of hanging a dataloader:

- the file: at most :data:`MAX_FILE_BYTES` (8 MiB; a 67-entry space with a 1,000-epoch
  trajectory takes about 2 MB), UTF-8, lists and objects nested at most :data:`MAX_DEPTH` (32) deep;
- ``entries`` (and so ``probs``): at most :data:`MAX_ENTRIES` (4,096);
- ``ops_per_policy`` and the ops of one sub-policy: at most :data:`MAX_OPS_PER_POLICY` (16);
- ``subpolicies``: at most :data:`MAX_SUBPOLICIES` (4,096);
- ``trajectory``: at most :data:`MAX_SNAPSHOTS` (10,000) snapshots, epochs at most
  :data:`MAX_EPOCH` (1,000,000).
"""
from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from typing import Any, Mapping, Optional, Sequence, Union

from ..ops.spaces import SpaceEntry
from ..utils.json_file import read_json, write_json_atomic
from .file_checks import policy_from_dict
from .file_schema import (
    MAX_DEPTH,
    MAX_ENTRIES,
    MAX_EPOCH,
    MAX_FILE_BYTES,
    MAX_OPS_PER_POLICY,
    MAX_SNAPSHOTS,
    MAX_SUBPOLICIES,
    PROB_TOLERANCE,
    SCHEMA,
    VERSION,
    VERSION_SUBPOLICIES,
    PolicyFile,
    Snapshot,
    SubPolicy,
    SubPolicyOp,
)

__all__ = [
    'SCHEMA', 'VERSION', 'VERSION_SUBPOLICIES', 'PROB_TOLERANCE', 'MAX_FILE_BYTES', 'MAX_DEPTH', 'MAX_ENTRIES',
    'MAX_OPS_PER_POLICY', 'MAX_SUBPOLICIES', 'MAX_SNAPSHOTS', 'MAX_EPOCH', 'PathLike',
    'Snapshot', 'SubPolicyOp', 'SubPolicy', 'PolicyFile', 'policy_from_dict',
    'load_policy_file', 'save_policy_file', 'schedule_index',
]

PathLike = Union[str, 'os.PathLike[str]']


def load_policy_file(path: PathLike) -> PolicyFile:
    """Read and validate a policy file.

    Args:
        path: the JSON file.

    Returns:
        The :class:`PolicyFile`.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a directory.
        ValueError: larger than :data:`MAX_FILE_BYTES`, not UTF-8, not JSON, nested deeper than
            :data:`MAX_DEPTH`, or not a valid policy file (the message names the path and the field).
    """
    path = os.fspath(path)
    doc = read_json(path, 'policy file', max_bytes=MAX_FILE_BYTES, max_depth=MAX_DEPTH)
    return policy_from_dict(doc, path)


def _plain(values: Any) -> list:
    """A list of Python floats from a list, tuple, numpy array or tensor."""
    if hasattr(values, 'tolist'):
        values = values.tolist()
    return [float(v) for v in values]


def save_policy_file(path: PathLike, *, searcher: str, space: str, entries: Sequence[SpaceEntry],
                     probs: Sequence[float], apply_prob: float, ops_per_policy: int = 2,
                     trajectory: Optional[Sequence[Mapping[str, Any]]] = None,
                     meta: Optional[Mapping[str, Any]] = None,
                     subpolicies: Optional[Sequence[Mapping[str, Any]]] = None) -> PolicyFile:
    """Validate a policy and write it as a version-1 policy file (2 with sub-policies), atomically.

    The document is validated first (the same checks as :func:`load_policy_file`), then written
    to a temporary file in the same folder and renamed over ``path``, so a reader never sees a
    half-written file. Keys are written in the schema's order (``meta`` sorted).

    Args:
        path: destination (parent folders are created).
        searcher: searcher name (``'ddas'``).
        space: search-space name.
        entries: the space's entries, in order.
        probs: one probability per entry, summing to 1 (list, array or tensor).
        apply_prob: probability that an image is augmented, in ``[0, 1]``.
        ops_per_policy: entries drawn per augmented image, in ``[1, MAX_OPS_PER_POLICY]``.
        trajectory: optional snapshots ``{'epoch', 'probs', 'apply_prob'}`` (as
            :meth:`det_autoaug.search.core.DDASPolicy.snapshot` records them).
        meta: optional JSON-serialisable metadata; ``created`` (UTC, ISO 8601) is added when absent.
        subpolicies: optional ``[{"prob": p, "ops": [{"op", "magnitude", "prob"}, ...]}, ...]``
            (probs summing to 1); the file then has version 2 and is sampled by sub-policy.

    Returns:
        The written :class:`PolicyFile`.

    Raises:
        ValueError: invalid content, or ``meta`` that is not JSON-serialisable.
    """
    path = os.fspath(path)
    meta = dict(meta or {})
    meta.setdefault('created', datetime.now(timezone.utc).isoformat(timespec='seconds'))
    doc = {
        'schema': SCHEMA, 'version': VERSION, 'searcher': searcher, 'space': space,
        'entries': [e if isinstance(e, Mapping) else {'op': e.op, 'magnitude': float(e.magnitude),
                                                      'level': e.level} for e in entries],
        'probs': _plain(probs), 'apply_prob': float(apply_prob), 'ops_per_policy': ops_per_policy,
        'trajectory': None if trajectory is None else [
            {'epoch': t['epoch'], 'probs': _plain(t['probs']), 'apply_prob': float(t['apply_prob'])}
            if isinstance(t, Mapping) else t for t in trajectory],
        'meta': meta,
    }
    if subpolicies is not None:
        doc['version'] = VERSION_SUBPOLICIES
        doc['subpolicies'] = [dict(sp, ops=[dict(o, magnitude=float(o['magnitude']), prob=float(o['prob']))
                                            for o in sp['ops']], prob=float(sp['prob']))
                              if isinstance(sp, Mapping) else sp for sp in subpolicies]
    policy = policy_from_dict(doc, path)
    write_json_atomic(path, policy.to_dict(), 'policy file')
    return policy


def schedule_index(epoch: int, train_epochs: int, num_snapshots: int) -> int:
    """Snapshot used by training epoch ``epoch``: ``floor(epoch / ((train_epochs + 0.1) / num_snapshots))``.

    Args:
        epoch: 0-based training epoch, ``0 <= epoch < train_epochs``.
        train_epochs: number of training epochs, >= 1.
        num_snapshots: number of snapshots in the trajectory, >= 1.

    Raises:
        ValueError: any argument out of range.
    """
    if num_snapshots < 1:
        raise ValueError(f'num_snapshots={num_snapshots!r} is invalid: expected >= 1')
    if isinstance(train_epochs, bool) or not isinstance(train_epochs, int) or train_epochs < 1:
        raise ValueError(f'train_epochs={train_epochs!r} is invalid: expected an int >= 1')
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < train_epochs:
        raise ValueError(f'epoch={epoch!r} is out of range: expected an int in [0, {train_epochs}) '
                         '(is train_epochs the number of training epochs?)')
    return min(int(math.floor(epoch / ((train_epochs + 0.1) / num_snapshots))), num_snapshots - 1)
