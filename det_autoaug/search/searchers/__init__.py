"""Searchers behind the one search hook, built from a registry: DDAS (default), DADA (as published;
``'DADAShared'``: its variant with per-op shared parameters), DAAS and DAAS's joint architecture and
augmentation search (the interface: :class:`.base.Searcher`).

Each searcher has a config type, what ``PolicySearchHook(searcher=dict(type='DDAS', ...))`` names,
and a name, what policy files, checkpoints and log keys record (``'ddas'``); either builds it.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Type, Union

from ...ops.spaces import SpaceEntry
from ..context import SearchContext, SearchContextMixin, TorchSearchContext
from .base import Searcher, distinct_ops, select_images
from .daas import DAASSearcher
from .daas_joint import DAASJointSearcher
from .dada import DADASharedSearcher
from .dada_published import DADASearcher
from .ddas import DDASSearcher

#: Config type -> searcher class (``PolicySearchHook(searcher=dict(type=...))``).
SEARCHER_TYPES: Dict[str, Type[Searcher]] = {
    'DDAS': DDASSearcher, 'DADA': DADASearcher, 'DADAShared': DADASharedSearcher, 'DAAS': DAASSearcher,
    'DAASJoint': DAASJointSearcher}
#: Searcher name (``Searcher.name``: policy files, checkpoints, ``--searcher`` of the tools) -> class.
SEARCHERS: Dict[str, Type[Searcher]] = {cls.name: cls for cls in SEARCHER_TYPES.values()}


def register_searcher(type_name: str):
    """Class decorator: register a :class:`~.base.Searcher` subclass under config type ``type_name``
    and its ``name``.

    Raises:
        ValueError: the type or the name is taken, or the class is no ``Searcher`` with a name.
    """
    def register(cls: Type[Searcher]) -> Type[Searcher]:
        if not (isinstance(cls, type) and issubclass(cls, Searcher) and cls.name):
            raise ValueError(f'register_searcher({type_name!r}): {cls!r} is not a Searcher subclass with a name')
        if type_name in SEARCHER_TYPES or cls.name in SEARCHERS:
            raise ValueError(f'register_searcher({type_name!r}): type {type_name!r} or name {cls.name!r} is taken')
        SEARCHER_TYPES[type_name] = cls
        SEARCHERS[cls.name] = cls
        return cls
    return register


def searcher_class(kind: str) -> Type[Searcher]:
    """The searcher class of a config type (``'DDAS'``) or a name (``'ddas'``).

    Raises:
        ValueError: neither a known type nor a known name (the message lists both).
    """
    cls = SEARCHER_TYPES.get(kind) if isinstance(kind, str) else None
    cls = cls or (SEARCHERS.get(kind) if isinstance(kind, str) else None)
    if cls is None:
        raise ValueError(f'searcher={kind!r} is unknown: expected one of the types {sorted(SEARCHER_TYPES)} '
                         f'or the names {sorted(SEARCHERS)}')
    return cls


def build_searcher(searcher: Union[str, Mapping[str, Any]], entries: Sequence[SpaceEntry],
                   cfg: Optional[Mapping[str, Any]] = None) -> Searcher:
    """Build a searcher over the search-space ``entries``.

    Args:
        searcher: a config, ``dict(type='DDAS', lr_alpha=0.01)`` (the type, then the searcher's
            keyword arguments), or a type or name (``'DDAS'``, ``'ddas'``) with the arguments in ``cfg``.
        entries: the search-space entries.
        cfg: keyword arguments of the searcher (with a type or name only).

    Raises:
        ValueError: unknown type or name, or a keyword the searcher does not take (the message lists
            them), or a bad value (the searcher's own message).
    """
    if isinstance(searcher, Mapping):
        if cfg is not None:
            raise ValueError('build_searcher: give the keyword arguments in the searcher config or in cfg, not both')
        cfg = dict(searcher)
        if 'type' not in cfg:
            raise ValueError(f'searcher config {cfg!r} has no type: expected one of {sorted(SEARCHER_TYPES)}')
        kind, where = cfg.pop('type'), 'the searcher config'
    else:
        kind, where, cfg = searcher, 'searcher_cfg', dict(cfg or {})
    cls = searcher_class(kind)
    try:
        return cls(entries, **cfg)
    except TypeError as e:
        raise ValueError(f'{where} {sorted(cfg)} does not fit searcher {kind!r}: {e}') from None


__all__ = ['SEARCHERS', 'SEARCHER_TYPES', 'build_searcher', 'register_searcher', 'searcher_class', 'Searcher',
           'SearchContext', 'SearchContextMixin', 'TorchSearchContext',
           'select_images', 'distinct_ops', 'DDASSearcher', 'DADASearcher', 'DADASharedSearcher', 'DAASSearcher',
           'DAASJointSearcher']
