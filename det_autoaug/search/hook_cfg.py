"""The search hook in a config's ``custom_hooks``: find it, read and set its searcher.

For the tools that edit configs (``tools/search_det.py``, ``tools/search_cls.py``,
``tools/compare_det.py``). They work on hook config dicts of both ``PolicySearchHook``
(``searcher=dict(type='DDAS', ...)``) and its deprecated alias ``DDASSearchHook``
(``searcher='ddas'``, ``searcher_cfg=dict(...)``); no OpenMMLab import.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional

from .searchers import SEARCHER_TYPES, searcher_class

SEARCH_HOOK = 'PolicySearchHook'
#: The registered names of the search hook, the deprecated alias last.
SEARCH_HOOK_TYPES = (SEARCH_HOOK, 'DDASSearchHook')


def is_search_hook(hook: Any) -> bool:
    """Whether a ``custom_hooks`` item is the search hook (its type a name, dotted or not, or the class)."""
    kind = hook.get('type') if isinstance(hook, Mapping) else None
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    return name.split('.')[-1] in SEARCH_HOOK_TYPES


def search_hooks(cfg: Mapping) -> List[dict]:
    """The search hooks of ``cfg.custom_hooks`` (the config's own dicts, in order)."""
    return [h for h in cfg.get('custom_hooks') or [] if is_search_hook(h)]


def _is_alias(hook: Mapping) -> bool:
    kind = hook.get('type')
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    return name.split('.')[-1] == 'DDASSearchHook'


def _type_name(cls: type) -> str:
    return next(t for t, c in SEARCHER_TYPES.items() if c is cls)


def hook_searcher(hook: Mapping) -> str:
    """The name (``'ddas'``, ``'daas'``, ...) of the searcher a search hook config runs.

    Raises:
        ValueError: an unknown searcher.
    """
    searcher = hook.get('searcher', 'ddas' if _is_alias(hook) else 'DDAS')
    if isinstance(searcher, Mapping):
        searcher = searcher.get('type', 'DDAS')
    return searcher_class(searcher).name


def set_hook_searcher(hook: dict, searcher: str, overrides: Optional[Mapping[str, Any]] = None) -> None:
    """Make a search hook config run ``searcher`` (a name or a type), with ``overrides`` of its arguments.

    ``PolicySearchHook``: ``hook['searcher']`` becomes ``dict(type=..., ...)``; when the type changes,
    the former searcher's arguments go (they were set for it: DDAS's look-ahead learning rates mean
    nothing to DAAS's one-step reward), so the new one runs with its defaults and ``overrides``; the
    same type keeps its arguments, ``overrides`` on top. ``DDASSearchHook``: ``hook['searcher']`` becomes the name,
    ``overrides`` are merged into ``hook['searcher_cfg']`` (set only when ``overrides`` is given).

    Raises:
        ValueError: an unknown searcher.
    """
    cls = searcher_class(searcher)
    if _is_alias(hook):
        hook['searcher'] = cls.name
        if overrides is not None:
            hook['searcher_cfg'] = dict(hook.get('searcher_cfg') or {}, **overrides)
        return
    current = hook.get('searcher', 'DDAS')
    current = dict(type=current) if isinstance(current, str) else dict(current)
    if searcher_class(current.pop('type', 'DDAS')) is not cls:
        current = {}
    hook['searcher'] = dict(type=_type_name(cls), **dict(current, **(overrides or {})))
