"""Differentiable augmentation search: the framework-independent DDAS core and its buffers."""
from .core import EPS, DDASPolicy, Proposal, Searcher, schedule_index
from .grad_buffers import FlatGradBuffers

__all__ = ['EPS', 'DDASPolicy', 'FlatGradBuffers', 'Proposal', 'Searcher', 'schedule_index']
