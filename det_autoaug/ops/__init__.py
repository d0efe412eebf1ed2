"""Augmentation ops: the op table, search spaces, parameter sampling and the torch kernels.

Import-light: torch and kornia only (no mmdet), so data pipelines and the search can import it.
"""
from .boxes import clip_and_filter, project_boxes
from .params import OpParams, sample_params
from .spaces import DEFAULT_DET_SPACE, SPACES, SpaceEntry, get_space, make_space
from .table import FILL_VALUE, MAX_LEVEL, OPS, OpSpec, available_ops, check_level, check_magnitude, get_op
from .torch_ops import OpResult, apply_op

__all__ = [
    'OPS', 'OpSpec', 'get_op', 'available_ops', 'check_level', 'check_magnitude', 'MAX_LEVEL', 'FILL_VALUE',
    'SPACES', 'SpaceEntry', 'get_space', 'make_space', 'DEFAULT_DET_SPACE',
    'OpParams', 'sample_params', 'apply_op', 'OpResult', 'clip_and_filter', 'project_boxes',
]
