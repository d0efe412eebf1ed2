"""Validation of a policy-file document: :func:`policy_from_dict` and the check of each field.

Each check parses one field and returns it (as the record types of
:mod:`det_autoaug.policy.file_schema`), or raises ``ValueError`` with the path, the field
(``subpolicies[0].ops[1]``) and what was expected. Booleans are not numbers, and every list is
bounded by the schema's limits.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Tuple

from ..ops.spaces import SpaceEntry
from ..ops.table import MAX_LEVEL, get_op
from .file_schema import (
    MAX_ENTRIES,
    MAX_EPOCH,
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
