"""det_autoaug: differentiable augmentation-policy search for MMDetection detectors and classifiers.

Importing the package registers its transforms, batch augments and hooks into MMDetection's
registries (the same as ``custom_imports=dict(imports=['det_autoaug'])`` in a config), and lets
mmengine resume its checkpoints under torch >= 2.6 with ``weights_only`` kept on
(:mod:`det_autoaug.utils.checkpoint`).

Where mmengine or mmdet is not installed, both are skipped: the ops (torch kernels), the policies'
torch path and the search core (:mod:`det_autoaug.search`) need only torch and kornia, so they run
on machines without OpenMMLab (the GPU benchmark does). ``det_autoaug.mmdet_plugins`` then fails
on import, naming what is missing.
"""
from importlib.util import find_spec

from .ops import OPS, SPACES, available_ops, get_op, get_space

WITH_OPENMMLAB = find_spec('mmengine') is not None and find_spec('mmdet') is not None
if WITH_OPENMMLAB:
    from .utils.checkpoint import enable_safe_resume

    enable_safe_resume()

    from . import mmdet_plugins  # noqa: E402  (registers into mmdet's registries)

__version__ = '0.1.0'
__all__ = ['OPS', 'SPACES', 'available_ops', 'get_op', 'get_space', 'mmdet_plugins', '__version__']
