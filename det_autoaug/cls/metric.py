"""Top-k accuracy of ``DAImageClassifier`` predictions as an mmengine metric."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


@METRICS.register_module()
class DAAccuracy(BaseMetric):
    """Top-k accuracy (fraction in [0, 1]) over ``pred_score`` and ``gt_label``.

    Args:
        topk: one k or several; the results are named ``accuracy/top1``, ``accuracy/top5``, ...
        collect_device: mmengine's device for gathering results across ranks.
        prefix: mmengine's metric-name prefix.

    Raises:
        ValueError: a k that is not a positive integer.
    """

    default_prefix = ''

    def __init__(self, topk: Union[int, Sequence[int]] = 1, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        topk = (topk,) if isinstance(topk, int) else tuple(topk)
        if not topk or any(not isinstance(k, int) or k < 1 for k in topk):
            raise ValueError(f'DAAccuracy topk={topk!r}: expected positive integers')
        self.topk = topk

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            score = torch.as_tensor(sample['pred_score']).cpu()
            label = int(torch.as_tensor(sample['gt_label']).reshape(()))
            order = score.argsort(descending=True)
            self.results.append([label in order[:k].tolist() for k in self.topk])

    def compute_metrics(self, results: List[List[bool]]) -> Dict[str, float]:
        if not results:
            raise ValueError('DAAccuracy: no predictions were processed (empty evaluation set?)')
        n = len(results)
        return {f'accuracy/top{k}': sum(r[j] for r in results) / n for j, k in enumerate(self.topk)}
