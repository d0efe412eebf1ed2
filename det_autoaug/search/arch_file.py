"""The architecture file (schema ``det_autoaug.arch``, version 1) of a joint architecture search.

Written beside the policy file by the ``'daas_joint'`` searcher (``arch.json`` in the work dir);
read by ``tools/train_cls.py --arch`` to train the found architecture::

    {"schema": "det_autoaug.arch", "version": 1, "searcher": "daas_joint",
     "network": {"type": "DAChoiceNet", "widths": [...], ...},   // rebuilds the supernet, or null
     "candidates": [["conv3x3", ...], ...],                      // per block
     "arch": ["sepconv3x3", ...],                                // per block: the most probable op
     "probs": [[0.2, ...], ...],                                 // per block: softmax of its logits
     "trajectory": [{"epoch": 1, "probs": [[...], ...]}, ...],
     "meta": {...}}
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from ..utils.json_file import read_json, write_json_atomic

SCHEMA = 'det_autoaug.arch'
VERSION = 1
FILE_NAME = 'arch.json'
PROB_TOLERANCE = 1e-4

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class ArchFile:
    """A validated architecture file.

    Attributes:
        searcher: the searcher that wrote it.
        candidates: per block, the names of its candidate ops.
        arch: per block, the chosen op (the most probable one).
        probs: per block, the probability of each candidate.
        network: the config of the searched supernet (``None`` if it records none).
        trajectory: ``{'epoch', 'probs'}`` snapshots.
        meta: free-form metadata.
    """

    searcher: str
    candidates: Tuple[Tuple[str, ...], ...]
    arch: Tuple[str, ...]
    probs: Tuple[Tuple[float, ...], ...]
    network: Optional[Dict[str, Any]] = None
    trajectory: Tuple[Dict[str, Any], ...] = ()
    meta: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {'schema': SCHEMA, 'version': VERSION, 'searcher': self.searcher, 'network': self.network,
                'candidates': [list(c) for c in self.candidates], 'arch': list(self.arch),
                'probs': [list(p) for p in self.probs],
                'trajectory': [{'epoch': t['epoch'], 'probs': [list(p) for p in t['probs']]} for t in self.trajectory],
                'meta': {k: self.meta[k] for k in sorted(self.meta)}}


def _check_block_probs(probs: Any, candidates: Tuple[Tuple[str, ...], ...], name: str,
                       where: str) -> Tuple[Tuple[float, ...], ...]:
    if not isinstance(probs, (list, tuple)) or len(probs) != len(candidates):
        raise ValueError(f'{where}{name} must hold one list of probabilities per block ({len(candidates)}), '
                         f'got {probs!r}')
    out = []
    for b, (row, offered) in enumerate(zip(probs, candidates)):
        if not isinstance(row, (list, tuple)) or len(row) != len(offered):
            raise ValueError(f'{where}{name}[{b}]={row!r}: expected {len(offered)} probabilities, one per '
                             f'candidate {offered}')
        if any(isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0
               for p in row) or abs(sum(row) - 1.0) > PROB_TOLERANCE:
            raise ValueError(f'{where}{name}[{b}]={row!r}: expected finite numbers >= 0 summing to 1')
        out.append(tuple(float(p) for p in row))
    return tuple(out)


def arch_from_dict(doc: Any, path: Optional[str] = None) -> ArchFile:
    """Validate an arch-file document.

    Raises:
        ValueError: wrong schema or version, or inconsistent content (the message says which field).
    """
    where = f'arch file {path}: ' if path else 'arch: '
    if not isinstance(doc, Mapping) or doc.get('schema') != SCHEMA:
        schema = doc.get('schema') if isinstance(doc, Mapping) else type(doc).__name__
        raise ValueError(f'{where}schema is {schema!r}: expected {SCHEMA!r}')
    if doc.get('version') != VERSION:
        raise ValueError(f'{where}schema version mismatch: got {doc.get("version")!r}, expected {VERSION}')
    candidates = doc.get('candidates')
    if not isinstance(candidates, (list, tuple)) or not candidates or not all(
            isinstance(c, (list, tuple)) and c and all(isinstance(n, str) for n in c) for c in candidates):
        raise ValueError(f'{where}candidates must be a non-empty list of non-empty lists of op names, '
                         f'got {candidates!r}')
    candidates = tuple(tuple(c) for c in candidates)
    arch = doc.get('arch')
    if not isinstance(arch, (list, tuple)) or len(arch) != len(candidates):
        raise ValueError(f'{where}arch must name one op per block ({len(candidates)}), got {arch!r}')
    for b, (name, offered) in enumerate(zip(arch, candidates)):
        if name not in offered:
            raise ValueError(f'{where}arch[{b}]={name!r} is not a candidate of block {b}: expected one of {offered}')
    probs = _check_block_probs(doc.get('probs'), candidates, 'probs', where)
    trajectory = doc.get('trajectory') or []
    if not isinstance(trajectory, (list, tuple)):
        raise ValueError(f'{where}trajectory must be a list of snapshots, got {trajectory!r}')
    snapshots = []
    for i, item in enumerate(trajectory):
        epoch = item.get('epoch') if isinstance(item, Mapping) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ValueError(f'{where}trajectory[{i}]={item!r}: expected {{"epoch": int, "probs": [...]}}')
        snapshots.append({'epoch': item['epoch'],
                          'probs': _check_block_probs(item.get('probs'), candidates, f'trajectory[{i}].probs', where)})
    network = doc.get('network')
    if network is not None and not isinstance(network, Mapping):
        raise ValueError(f'{where}network must be a config dict or null, got {network!r}')
    searcher, meta = doc.get('searcher'), doc.get('meta') or {}
    if not isinstance(searcher, str) or not isinstance(meta, Mapping):
        raise ValueError(f'{where}searcher must be a string and meta a dict, got {searcher!r} and {meta!r}')
    return ArchFile(searcher=searcher, candidates=candidates, arch=tuple(arch), probs=probs,
                    network=None if network is None else dict(network), trajectory=tuple(snapshots), meta=dict(meta))


def save_arch_file(path: PathLike, *, searcher: str, candidates: Sequence[Sequence[str]],
                   probs: Sequence[Sequence[float]], network: Optional[Mapping[str, Any]] = None,
                   trajectory: Optional[Sequence[Mapping[str, Any]]] = None,
                   meta: Optional[Mapping[str, Any]] = None, arch: Optional[Sequence[str]] = None) -> ArchFile:
    """Validate and write an arch file atomically.

    Args:
        path: destination (parent folders are created).
        searcher: searcher name.
        candidates: per block, the candidate names.
        probs: per block, one probability per candidate.
        network: config that rebuilds the supernet (JSON-serialisable), or ``None``.
        trajectory: optional ``{'epoch', 'probs'}`` snapshots.
        meta: JSON-serialisable metadata; ``created`` (UTC) is added when absent.
        arch: per block the chosen op (default: the most probable one; the searcher passes the
            argmax of its logits, which ties in the rounded probabilities cannot change).

    Returns:
        The written :class:`ArchFile`.

    Raises:
        ValueError: invalid content, or ``network``/``meta`` not JSON-serialisable.
    """
    path = os.fspath(path)
    rows = [[float(p) for p in row] for row in probs]
    meta = dict(meta or {})
    meta.setdefault('created', datetime.now(timezone.utc).isoformat(timespec='seconds'))
    doc = {'schema': SCHEMA, 'version': VERSION, 'searcher': searcher, 'network': network,
           'candidates': [list(c) for c in candidates],
           'arch': list(arch) if arch is not None else [list(c)[max(range(len(r)), key=r.__getitem__)]
                                                        for c, r in zip(candidates, rows)],
           'probs': rows, 'trajectory': [dict(t) for t in trajectory or []], 'meta': meta}
    written = arch_from_dict(doc, path)
    write_json_atomic(path, written.to_dict(), 'arch file', what='network or meta')
    return written


def load_arch_file(path: PathLike) -> ArchFile:
    """Read and validate an arch file, or the ``arch.json`` of a search work dir.

    Raises:
        FileNotFoundError: no such file (or the folder holds no ``arch.json``).
        ValueError: not JSON, or not a valid arch file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, FILE_NAME)
    doc = read_json(path, 'arch file', f' (a daas_joint search writes {FILE_NAME} in its work dir)')
    return arch_from_dict(doc, path)
