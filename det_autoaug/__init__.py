"""det_autoaug: differentiable augmentation-policy search for MMDetection detectors and classifiers.

Importing the package registers its transforms, batch augments and hooks into MMDetection's
registries (the same as ``custom_imports=dict(imports=['det_autoaug'])`` in a config).
"""
from .ops import OPS, SPACES, available_ops, get_op, get_space

__version__ = '0.1.0'
__all__ = ['OPS', 'SPACES', 'available_ops', 'get_op', 'get_space', '__version__']
