"""Image classifiers for the classification path: backbones and an mmengine ``BaseModel`` wrapper.

``DAImageClassifier`` is what ``PolicySearchHook`` needs from a model: an mmengine ``BaseModel``
whose data preprocessor takes the raw uint8 batch (the hook augments the raw images before it)
and whose ``forward(inputs, data_samples, mode='loss')`` returns a dict of losses. Backbones map
``(B, 3, H, W)`` float images to ``(B, num_classes)`` logits:

- ``DAWideResNet`` (Zagoruyko & Komodakis 2016; WRN-40-2 and WRN-28-10 in the DDAS papers,
  WRN-10-1 / WRN-10-2 / WRN-16-1 for CPU runs): depth ``6n + 4``;
- ``DATorchvisionResNet``: torchvision's ResNet-18/50 (``weights=None``), for the ImageNet proxy.

Data samples are :class:`mmengine.structures.BaseDataElement` with a ``gt_label`` (0-d long
tensor); ``predict`` adds ``pred_label`` and ``pred_score`` (softmax).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from mmengine.structures import BaseDataElement
from torch import Tensor, nn


class _WideBasic(nn.Module):
    """Pre-activation wide residual block (BN-ReLU-conv twice), optional dropout between convs."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = (nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        # the projection shortcut takes the pre-activated input, as in the reference WRN code
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


@MODELS.register_module(name='DAWideResNet')
class WideResNet(nn.Module):
    """Wide residual network WRN-``depth``-``widen_factor`` for small images.

    Args:
        depth: ``6n + 4`` (10, 16, 28, 40, ...); ``n`` blocks per stage, three stages.
        widen_factor: width multiplier k; stage widths ``16k, 32k, 64k``.
        num_classes: number of output logits.
        dropout: dropout probability inside each block (0: none).
        in_channels: input channels (3).

    Shape:
        ``(B, in_channels, H, W)`` float -> ``(B, num_classes)`` logits; any ``H, W >= 4``
        (global average pooling at the end).

    Raises:
        ValueError: depth not of the form ``6n + 4`` with ``n >= 1``, non-positive sizes, or a
            dropout outside ``[0, 1)``.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 10,
                 dropout: float = 0.0, in_channels: int = 3) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f'WideResNet depth={depth!r}: expected 6n + 4 with n >= 1 (10, 16, 28, 40, ...)')
        for name, value in (('widen_factor', widen_factor), ('num_classes', num_classes),
                            ('in_channels', in_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'WideResNet {name}={value!r}: expected a positive integer')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'WideResNet dropout={dropout!r}: expected a probability in [0, 1)')
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        layers: List[nn.Module] = []
        in_planes = widths[0]
        for stage, planes in enumerate(widths[1:]):
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(_WideBasic(in_planes, planes, stride, dropout))
                in_planes = planes
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@MODELS.register_module(name='DATorchvisionResNet')
class TorchvisionResNet(nn.Module):
    """A torchvision ResNet trained from scratch (``weights=None``).

    Args:
        arch: ``'resnet18'``, ``'resnet34'``, ``'resnet50'``, ``'resnet101'`` or ``'resnet152'``.
        num_classes: number of output logits.

    Shape:
        ``(B, 3, H, W)`` float -> ``(B, num_classes)``.

    Raises:
        ValueError: unknown ``arch``.
    """

    ARCHS = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152')

    def __init__(self, arch: str = 'resnet18', num_classes: int = 1000) -> None:
        super().__init__()
        if arch not in self.ARCHS:
            raise ValueError(f'TorchvisionResNet arch={arch!r}: expected one of {self.ARCHS}')
        import torchvision
        self.net = getattr(torchvision.models, arch)(weights=None, num_classes=int(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _labels(data_samples: Optional[Sequence], device: torch.device) -> Tensor:
    if not data_samples:
        raise ValueError('DAImageClassifier: mode "loss" needs data_samples with gt_label, got none')
    labels = []
    for i, s in enumerate(data_samples):
        label = s.gt_label if isinstance(s, BaseDataElement) else s
        if label is None:
            raise ValueError(f'DAImageClassifier: data sample {i} has no gt_label')
        labels.append(torch.as_tensor(label).reshape(()))
    return torch.stack(labels).to(device=device, dtype=torch.long)


@MODELS.register_module()
class DAImageClassifier(BaseModel):
    """Backbone + cross-entropy as an mmengine model.

    Args:
        backbone: config of a module mapping ``(B, 3, H, W)`` to ``(B, num_classes)`` logits
            (``DAWideResNet``, ``DATorchvisionResNet`` or any registered model).
        data_preprocessor: e.g. ``dict(type='ImgDataPreprocessor', mean=..., std=...)`` on the
            0..255 scale; it receives the raw uint8 batch.
        label_smoothing: cross-entropy label smoothing (0: none).
        init_cfg: mmengine initialisation config.

    ``forward(inputs, data_samples, mode)``: ``'tensor'`` returns the logits, ``'loss'``
    ``{'loss': cross-entropy, 'acc': batch accuracy (logged, not optimised)}``, ``'predict'``
    the data samples with ``pred_label`` and ``pred_score`` added.
    """

    def __init__(self, backbone: dict, data_preprocessor: Optional[dict] = None,
                 label_smoothing: float = 0.0, init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not isinstance(backbone, (dict, nn.Module)):
            raise ValueError(f'DAImageClassifier backbone must be a config dict or a module, got {backbone!r}')
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f'label_smoothing={label_smoothing!r}: expected a number in [0, 1)')
        self.backbone = MODELS.build(backbone) if isinstance(backbone, dict) else backbone
        self.label_smoothing = float(label_smoothing)

    def forward(self, inputs: Tensor, data_samples: Optional[List] = None,
                mode: str = 'tensor') -> Union[Tensor, Dict[str, Tensor], List[BaseDataElement]]:
        logits = self.backbone(inputs)
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            labels = _labels(data_samples, logits.device)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
            # 'acc' has no 'loss' in its name: parse_losses logs it without optimising it
            return {'loss': loss, 'acc': (logits.argmax(1) == labels).float().mean().detach()}
        if mode == 'predict':
            scores = logits.softmax(1).detach()
            samples = data_samples if data_samples else [BaseDataElement() for _ in range(len(logits))]
            out = []
            for sample, score in zip(samples, scores):
                sample = sample if isinstance(sample, BaseDataElement) else BaseDataElement(gt_label=sample)
                sample.set_field(score, 'pred_score')
                sample.set_field(score.argmax(), 'pred_label')
                out.append(sample)
            return out
        raise ValueError(f"DAImageClassifier mode={mode!r}: expected 'tensor', 'loss' or 'predict'")
