"""Augmentation-policy search: the framework-independent DDAS core, the gradient buffers, the
searchers (DDAS, DADA, DAAS) behind one interface, and ``DDASSearchHook`` (imported with
:mod:`det_autoaug.mmdet_plugins`)."""
from .core import EPS, DDASPolicy, Proposal, schedule_index
from .grad_buffers import FlatGradBuffers
from .searchers import SEARCHERS, Searcher, build_searcher

__all__ = ['EPS', 'DDASPolicy', 'FlatGradBuffers', 'Proposal', 'SEARCHERS', 'Searcher', 'build_searcher',
           'schedule_index']
