"""Classification path: datasets, models, transforms and a metric, registered in mmengine's registries.

Importing this package (``custom_imports=dict(imports=['det_autoaug.cls'])``) registers
``DAFashionMNIST``, ``DACIFAR``, ``DASVHN``, ``DAImageFolder`` (DATASETS), ``DAImageClassifier``,
``DAWideResNet``, ``DATorchvisionResNet``, ``DAChoiceNet`` (the supernet of the joint
architecture search, :mod:`.nas`) (MODELS), ``DAAccuracy`` (METRICS), the pipeline
transforms of :mod:`.transforms` (TRANSFORMS) and ``PolicySearchHook`` (HOOKS): the search uses the
same core and hook as detection. Like :mod:`det_autoaug.mmdet_plugins`, it makes mmengine's
checkpoints safe to resume and crash-safe (:func:`det_autoaug.utils.checkpoint.enable_safe_resume`).
"""
from ..search.hook import DDASSearchHook, PolicySearchHook
from ..utils.checkpoint import enable_safe_resume
from .datasets import DACIFAR, DASVHN, DAFashionMNIST, DAImageFolder
from .metric import DAAccuracy
from .models import DAImageClassifier, TorchvisionResNet, WideResNet
from .nas import CANDIDATE_NAMES, CANDIDATES, ChoiceBlock, ChoiceNet, fixed_backbone_cfg
from .transforms import (
    CenterCropCls,
    DAClsPolicy,
    DAClsTorchvisionAug,
    PackClsInputs,
    RandomCropPadCls,
    RandomFlipCls,
    RandomResizedCropCls,
    ResizeCls,
)

enable_safe_resume()

__all__ = ['PolicySearchHook', 'DDASSearchHook', 'DACIFAR', 'DAFashionMNIST', 'DAImageFolder', 'DASVHN', 'DAAccuracy',
           'DAImageClassifier', 'TorchvisionResNet', 'WideResNet', 'CenterCropCls', 'DAClsPolicy',
           'DAClsTorchvisionAug', 'PackClsInputs', 'RandomCropPadCls', 'RandomFlipCls', 'RandomResizedCropCls',
           'ResizeCls', 'CANDIDATE_NAMES', 'CANDIDATES', 'ChoiceBlock', 'ChoiceNet', 'fixed_backbone_cfg']
