"""Searchers behind the one search hook: DDAS (default), DADA (as published; ``'dada_shared'``: its
variant with per-op shared parameters), DAAS and DAAS's joint architecture and augmentation
search (see :mod:`.base`)."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ...ops.spaces import SpaceEntry
from .base import (DiffStep, SearchContextMixin, Searcher, TorchSearchContext, augment_batch_differentiable,
                   distinct_ops, select_images)
from .daas import DAASPolicy, DAASSearcher
from .daas_joint import DAASJointSearcher
from .dada import DADASharedSearcher
from .dada_published import DADASearcher
from .ddas import DDASSearcher

SEARCHERS = {'ddas': DDASSearcher, 'dada': DADASearcher, 'daas': DAASSearcher, 'daas_joint': DAASJointSearcher,
             'dada_shared': DADASharedSearcher}


def build_searcher(name: str, entries: Sequence[SpaceEntry], cfg: Optional[Mapping[str, Any]] = None) -> Searcher:
    """Build the searcher ``name`` over ``entries`` with its keyword arguments ``cfg``.

    Raises:
        ValueError: unknown searcher, or a keyword it does not take (the message lists them).
    """
    if name not in SEARCHERS:
        raise ValueError(f'searcher={name!r} is unknown: expected one of {sorted(SEARCHERS)}')
    cfg = dict(cfg or {})
    try:
        return SEARCHERS[name](entries, **cfg)
    except TypeError as e:
        raise ValueError(f'searcher_cfg {sorted(cfg)} does not fit searcher {name!r}: {e}') from None


__all__ = ['SEARCHERS', 'build_searcher', 'Searcher', 'SearchContextMixin', 'TorchSearchContext', 'DiffStep',
           'augment_batch_differentiable', 'select_images', 'distinct_ops', 'DDASSearcher', 'DADASearcher',
           'DADASharedSearcher', 'DAASSearcher', 'DAASJointSearcher', 'DAASPolicy']
