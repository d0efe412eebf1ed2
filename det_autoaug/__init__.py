"""det_autoaug: differentiable augmentation-policy search for MMDetection detectors and classifiers.

The core is light: the ops (cv2 and torch kernels), the policies (:mod:`det_autoaug.policy`) and
the search core (:mod:`det_autoaug.search`: ``DDASPolicy``, the gradient buffers, the searchers
and ``TorchSearchContext``) need only torch, kornia, numpy and cv2, and importing them imports
no mmengine, mmdet or mmcv, so they start fast and run on machines without OpenMMLab
(``benchmarks/gpu_suite.sh`` does).

Everything that touches OpenMMLab lives in two packages, imported explicitly:

- :mod:`det_autoaug.mmdet_plugins` registers the ``DA<op>`` transforms and ``PolicyAugment``
  (``TRANSFORMS``), ``BatchPolicyAugment`` (``MODELS``) and ``PolicySearchHook`` (``HOOKS``) into
  MMDetection's registries: ``custom_imports=dict(imports=['det_autoaug.mmdet_plugins'])`` in a
  config, or ``import det_autoaug.mmdet_plugins`` in a script;
- :mod:`det_autoaug.cls` registers the classification datasets, models, transforms and metric.

Both also let mmengine resume checkpoints under torch >= 2.6 with ``weights_only`` kept on and
make checkpoint writes crash-safe (:func:`det_autoaug.utils.checkpoint.enable_safe_resume`), as
``PolicySearchHook`` does when it is built.

``custom_imports=dict(imports=['det_autoaug'])`` keeps working: when mmengine is already imported
(always the case while mmengine's config loader runs ``custom_imports``, and in scripts that
import mmengine first), importing this package imports :mod:`det_autoaug.mmdet_plugins` too. The
one case it misses is a process that imported ``det_autoaug`` before mmengine: the package is
then already imported, light, and ``custom_imports`` does not import it again; name
``det_autoaug.mmdet_plugins`` instead, as the shipped configs do.

``WITH_OPENMMLAB`` says whether mmengine and mmdet are installed (looked up with ``find_spec``,
which imports neither); without them importing :mod:`det_autoaug.mmdet_plugins` fails, naming
what is missing. ``'mmdet_plugins' in __all__`` when this import registered the plugins.
"""
import sys
from importlib.util import find_spec

from .ops import OPS, SPACES, available_ops, get_op, get_space

WITH_OPENMMLAB = find_spec('mmengine') is not None and find_spec('mmdet') is not None

__version__ = '0.1.0'
__all__ = ['OPS', 'SPACES', 'available_ops', 'get_op', 'get_space', 'WITH_OPENMMLAB', '__version__']

# sys.modules.get, not `in`: a None entry marks a module as blocked, not imported.
if WITH_OPENMMLAB and sys.modules.get('mmengine') is not None:
    from . import mmdet_plugins  # noqa: F401  (registers into mmdet's registries)

    __all__.append('mmdet_plugins')
