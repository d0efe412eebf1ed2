"""The policy file (schema ``det_autoaug.policy``, version 1): writing, reading, validation.

A policy file is the JSON a searcher writes and :class:`~det_autoaug.policy.policy.SearchedPolicy`
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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from ..ops.spaces import SpaceEntry
from ..ops.table import MAX_LEVEL, get_op
from ..utils.json_file import read_json, write_json_atomic

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

PathLike = Union[str, 'os.PathLike[str]']


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


# ----------------------------------------------------------------------------- validation

def _where(path: Optional[str]) -> str:
    return f'policy file {path}: ' if path else 'policy: '


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_length(items: Any, limit: int, name: str, where: str) -> None:
    if len(items) > limit:
        raise ValueError(f'{where}{name} has {len(items)} items: the limit is {limit}')


def _check_probs(probs: Any, n: int, name: str, where: str) -> Tuple[float, ...]:
    if not isinstance(probs, (list, tuple)):
        raise ValueError(f'{where}{name} must be a list of {n} probabilities, got {type(probs).__name__}')
    if len(probs) != n:
        raise ValueError(f'{where}{name} has {len(probs)} values but there are {n} entries: expected one '
                         'probability per entry')
    for i, p in enumerate(probs):
        if not _is_number(p) or p < 0:
            raise ValueError(f'{where}{name}[{i}]={p!r} is invalid: expected a finite number >= 0')
    total = float(sum(probs))
    if abs(total - 1.0) > PROB_TOLERANCE:
        raise ValueError(f'{where}{name} sums to {total:.6g}: expected 1 (tolerance {PROB_TOLERANCE:g})')
    return tuple(float(p) for p in probs)


def _check_apply_prob(value: Any, name: str, where: str) -> float:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f'{where}{name}={value!r} is invalid: expected a probability in [0, 1]')
    return float(value)


def _check_entry(item: Any, name: str, where: str) -> SpaceEntry:
    """Validate one op at a magnitude; ``name`` is its field (``entries[3]``, ``subpolicies[0].ops[1]``)."""
    if isinstance(item, SpaceEntry):
        item = {'op': item.op, 'magnitude': item.magnitude, 'level': item.level}
    if not isinstance(item, Mapping) or 'op' not in item or 'magnitude' not in item:
        raise ValueError(f'{where}{name}={item!r:.200} is malformed: expected {{"op": str, '
                         '"magnitude": number, "level": number or null}')
    try:
        spec = get_op(item['op']) if isinstance(item['op'], str) else None
    except KeyError:
        spec = None
    if spec is None:
        raise ValueError(f'{where}{name} has unknown op {item["op"]!r:.200}: expected an op of '
                         'det_autoaug.ops.table.OPS (see det_autoaug.available_ops())')
    magnitude = item['magnitude']
    lo, hi = spec.magnitude_range
    if not _is_number(magnitude) or not lo - 1e-9 <= magnitude <= hi + 1e-9:
        raise ValueError(f'{where}{name} ({spec.name}) has magnitude {magnitude!r:.200} out of range: '
                         f'expected a value in [{lo:g}, {hi:g}] ({spec.unit})')
    level = item.get('level')
    if level is not None and (not _is_number(level) or not 0.0 <= level <= MAX_LEVEL):
        raise ValueError(f'{where}{name} ({spec.name}) has level {level!r:.200}: expected null or a '
                         f'number in [0, {MAX_LEVEL:g}]')
    return SpaceEntry(spec.name, float(magnitude), None if level is None else float(level))


def _check_trajectory(trajectory: Any, n: int, where: str) -> Tuple[Snapshot, ...]:
    if trajectory is None:
        return ()
    if not isinstance(trajectory, (list, tuple)):
        raise ValueError(f'{where}trajectory must be a list of {{"epoch", "probs", "apply_prob"}} items, '
                         f'got {type(trajectory).__name__}')
    _check_length(trajectory, MAX_SNAPSHOTS, 'trajectory', where)
    snapshots = []
    for i, item in enumerate(trajectory):
        if isinstance(item, Snapshot):
            item = {'epoch': item.epoch, 'probs': list(item.probs), 'apply_prob': item.apply_prob}
        if not isinstance(item, Mapping) or not {'epoch', 'probs', 'apply_prob'} <= set(item):
            raise ValueError(f'{where}trajectory[{i}] is malformed: expected an object with "epoch", '
                             f'"probs" and "apply_prob", got {item!r:.200}')
        epoch = item['epoch']
        if not _is_int(epoch) or not 0 <= epoch <= MAX_EPOCH:
            raise ValueError(f'{where}trajectory[{i}].epoch={epoch!r:.200} is invalid: expected an int in '
                             f'[0, {MAX_EPOCH}]')
        if snapshots and epoch < snapshots[-1].epoch:
            raise ValueError(f'{where}trajectory[{i}].epoch={epoch} comes after epoch '
                             f'{snapshots[-1].epoch}: expected non-decreasing epochs')
        probs = _check_probs(item['probs'], n, f'trajectory[{i}].probs', where)
        apply_prob = _check_apply_prob(item['apply_prob'], f'trajectory[{i}].apply_prob', where)
        snapshots.append(Snapshot(epoch, probs, apply_prob))
    return tuple(snapshots)


def _check_subpolicies(subpolicies: Any, where: str) -> Tuple[SubPolicy, ...]:
    if not isinstance(subpolicies, (list, tuple)) or not subpolicies:
        raise ValueError(f'{where}"subpolicies" must be a non-empty list of {{"prob", "ops"}} objects, '
                         f'got {subpolicies!r:.200}')
    _check_length(subpolicies, MAX_SUBPOLICIES, 'subpolicies', where)
    parsed = []
    for i, item in enumerate(subpolicies):
        if isinstance(item, SubPolicy):
            item = {'prob': item.prob, 'ops': [vars(o) for o in item.ops]}
        if not isinstance(item, Mapping) or not {'prob', 'ops'} <= set(item):
            raise ValueError(f'{where}subpolicies[{i}] is malformed: expected an object with "prob" and "ops", '
                             f'got {item!r:.200}')
        prob = _check_apply_prob(item['prob'], f'subpolicies[{i}].prob', where)
        ops = item['ops']
        if not isinstance(ops, (list, tuple)) or not ops:
            raise ValueError(f'{where}subpolicies[{i}].ops must be a non-empty list of {{"op", "magnitude", '
                             f'"prob"}}, got {ops!r:.200}')
        _check_length(ops, MAX_OPS_PER_POLICY, f'subpolicies[{i}].ops', where)
        steps = []
        for j, op in enumerate(ops):
            if not isinstance(op, Mapping) or 'prob' not in op:
                raise ValueError(f'{where}subpolicies[{i}].ops[{j}]={op!r:.200} is malformed: expected '
                                 '{"op": str, "magnitude": number, "prob": number}')
            entry = _check_entry(op, f'subpolicies[{i}].ops[{j}]', where)
            steps.append(SubPolicyOp(entry.op, entry.magnitude,
                                     _check_apply_prob(op['prob'], f'subpolicies[{i}].ops[{j}].prob', where)))
        parsed.append(SubPolicy(prob, tuple(steps)))
    total = sum(sp.prob for sp in parsed)
    if abs(total - 1.0) > PROB_TOLERANCE:
        raise ValueError(f'{where}subpolicies probs sum to {total:.6g}: expected 1 (tolerance {PROB_TOLERANCE:g})')
    return tuple(parsed)


def policy_from_dict(doc: Any, path: Optional[str] = None) -> PolicyFile:
    """Validate a policy-file document and return it as a :class:`PolicyFile`.

    Args:
        doc: the parsed JSON.
        path: where it came from, for the error messages.

    Raises:
        ValueError: anything that does not follow the schema; the message names the path, the
            field and what was expected.
    """
    where = _where(path)
    if not isinstance(doc, Mapping):
        raise ValueError(f'{where}expected a JSON object at the top level, got {type(doc).__name__}')
    if doc.get('schema') != SCHEMA:
        raise ValueError(f'{where}"schema" is {doc.get("schema")!r:.200}: expected {SCHEMA!r} (is this a '
                         'det_autoaug policy file?)')
    has_subpolicies = 'subpolicies' in doc
    if not _is_int(doc.get('version')):
        raise ValueError(f'{where}"version" is {doc.get("version")!r:.200}: expected the integer {VERSION} '
                         f'({VERSION_SUBPOLICIES} for files with "subpolicies")')
    if doc.get('version') != (VERSION_SUBPOLICIES if has_subpolicies else VERSION):
        if doc.get('version') == VERSION_SUBPOLICIES:
            raise ValueError(f'{where}schema version mismatch: file has {VERSION_SUBPOLICIES}, this det_autoaug '
                             f'reads {VERSION} (and {VERSION_SUBPOLICIES} only for files with "subpolicies")')
        if doc.get('version') == VERSION and has_subpolicies:
            raise ValueError(f'{where}"subpolicies" needs schema version {VERSION_SUBPOLICIES}, the file has '
                             f'version {VERSION}')
        raise ValueError(f'{where}schema version mismatch: file has {doc.get("version")!r}, this '
                         f'det_autoaug reads {VERSION} (and {VERSION_SUBPOLICIES} for files with "subpolicies")')
    for key in ('searcher', 'space'):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ValueError(f'{where}"{key}" is {doc.get(key)!r:.200}: expected a non-empty string')
    entries = doc.get('entries')
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError(f'{where}"entries" must be a non-empty list of {{"op", "magnitude", "level"}}, '
                         f'got {entries!r:.200}')
    _check_length(entries, MAX_ENTRIES, 'entries', where)
    parsed = tuple(_check_entry(item, f'entries[{i}]', where) for i, item in enumerate(entries))
    probs = _check_probs(doc.get('probs'), len(parsed), 'probs', where)
    apply_prob = _check_apply_prob(doc.get('apply_prob'), 'apply_prob', where)
    ops = doc.get('ops_per_policy', 2)
    if not _is_int(ops) or not 1 <= ops <= MAX_OPS_PER_POLICY:
        raise ValueError(f'{where}ops_per_policy={ops!r:.200} is invalid: expected an int in '
                         f'[1, {MAX_OPS_PER_POLICY}]')
    trajectory = _check_trajectory(doc.get('trajectory'), len(parsed), where)
    meta = doc.get('meta') or {}
    if not isinstance(meta, Mapping):
        raise ValueError(f'{where}"meta" must be an object, got {type(meta).__name__}')
    subpolicies = _check_subpolicies(doc['subpolicies'], where) if has_subpolicies else ()
    return PolicyFile(searcher=doc['searcher'], space=doc['space'], entries=parsed, probs=probs,
                      apply_prob=apply_prob, ops_per_policy=ops, trajectory=trajectory, meta=dict(meta),
                      path=path, subpolicies=subpolicies)


# ----------------------------------------------------------------------------- I/O

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
