"""MMDetection integration: pipeline transforms, the batch augment and the search hook.

Importing this package registers ``DA<op>`` transforms and ``PolicyAugment`` into
``mmdet.registry.TRANSFORMS``, ``BatchPolicyAugment`` into ``mmdet.registry.MODELS`` and
``DDASSearchHook`` into mmengine's ``HOOKS`` (visible from mmdet's scope).
"""
from ..search.hook import DDASSearchHook
from .batch_augment import BatchPolicyAugment
from .transforms import OP_TRANSFORMS, PREFIX, PolicyAugment, TableOpTransform

__all__ = ['OP_TRANSFORMS', 'PREFIX', 'PolicyAugment', 'TableOpTransform', 'BatchPolicyAugment',
           'DDASSearchHook']
