"""det_autoaug: differentiable augmentation-policy search for MMDetection detectors and classifiers.

Importing the package registers its transforms, batch augments and hooks into MMDetection's
registries (the same as ``custom_imports=dict(imports=['det_autoaug'])`` in a config), and lets
mmengine resume its checkpoints under torch >= 2.6 with ``weights_only`` kept on
(:mod:`det_autoaug.utils.checkpoint`).

Both happen only where mmengine and mmdet are installed (looked up with ``find_spec``, so an
import error inside our own plugins is still raised, never hidden). Without them the ops (cv2 and
torch kernels), the policies and the search core (:mod:`det_autoaug.search`: ``DDASPolicy``, the
gradient buffers, the searchers and ``TorchSearchContext``) need only torch, kornia, numpy and
cv2, so they run on machines without OpenMMLab (``benchmarks/gpu_suite.sh`` does);
``WITH_OPENMMLAB`` says which case holds, and importing ``det_autoaug.mmdet_plugins`` then fails,
naming what is missing.
"""
from importlib.util import find_spec

from .ops import OPS, SPACES, available_ops, get_op, get_space

WITH_OPENMMLAB = find_spec('mmengine') is not None and find_spec('mmdet') is not None
if WITH_OPENMMLAB:
    from .utils.checkpoint import enable_safe_resume

    enable_safe_resume()

    from . import mmdet_plugins  # noqa: E402  (registers into mmdet's registries)

__version__ = '0.1.0'
__all__ = ['OPS', 'SPACES', 'available_ops', 'get_op', 'get_space', 'WITH_OPENMMLAB', '__version__']
if WITH_OPENMMLAB:
    __all__.append('mmdet_plugins')
