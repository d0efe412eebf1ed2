"""Augmentation-policy search: the framework-independent DDAS core, the gradient buffers, the
search context, the searchers (DDAS, DADA, DAAS) behind one interface and their registry, and
``PolicySearchHook`` (imported with :mod:`det_autoaug.mmdet_plugins`)."""
from .context import SearchContext, TorchSearchContext
from .core import EPS, DDASPolicy, Proposal, schedule_index
from .grad_buffers import FlatGradBuffers
from .searchers import SEARCHER_TYPES, SEARCHERS, Searcher, build_searcher

__all__ = ['EPS', 'DDASPolicy', 'FlatGradBuffers', 'Proposal', 'SEARCHERS', 'SEARCHER_TYPES', 'Searcher',
           'SearchContext', 'TorchSearchContext', 'build_searcher', 'schedule_index']
