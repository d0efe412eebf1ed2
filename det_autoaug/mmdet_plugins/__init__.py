"""MMDetection integration: pipeline transforms, the batch augment and the search hook.

Importing this package (``custom_imports=dict(imports=['det_autoaug.mmdet_plugins'])``) registers
``DA<op>`` transforms and ``PolicyAugment`` into ``mmdet.registry.TRANSFORMS``,
``BatchPolicyAugment`` into ``mmdet.registry.MODELS`` and ``PolicySearchHook`` (and its deprecated
alias ``DDASSearchHook``) into mmengine's ``HOOKS`` (visible from mmdet's scope), and makes
mmengine's checkpoints safe to resume and crash-safe
(:func:`det_autoaug.utils.checkpoint.enable_safe_resume`).
"""
from ..search.hook import DDASSearchHook, PolicySearchHook
from ..utils.checkpoint import enable_safe_resume
from .batch_augment import BatchPolicyAugment
from .transforms import OP_TRANSFORMS, PREFIX, PolicyAugment, TableOpTransform

enable_safe_resume()

__all__ = ['OP_TRANSFORMS', 'PREFIX', 'PolicyAugment', 'TableOpTransform', 'BatchPolicyAugment',
           'PolicySearchHook', 'DDASSearchHook']
