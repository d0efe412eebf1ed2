"""MMDetection integration: pipeline transforms, the batch augment and the search hook.

Importing this package registers ``DA<op>`` transforms and ``PolicyAugment`` into
``mmdet.registry.TRANSFORMS``, and, when their modules are present, ``BatchPolicyAugment``
(``mmdet.registry.MODELS``) and ``DDASSearchHook`` (``mmengine``'s HOOKS).
"""
import importlib
import importlib.util

from . import transforms
from .transforms import OP_TRANSFORMS, PREFIX, PolicyAugment, TableOpTransform

# Optional modules written alongside this one: imported (so that they register) when present;
# an import error inside a present module is not hidden.
for _module in (f'{__name__}.batch_augment', 'det_autoaug.search.hook'):
    if importlib.util.find_spec(_module) is not None:
        importlib.import_module(_module)
del _module

__all__ = ['transforms', 'OP_TRANSFORMS', 'PREFIX', 'PolicyAugment', 'TableOpTransform']
