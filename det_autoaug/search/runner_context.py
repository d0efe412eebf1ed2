"""The search context inside an MMEngine runner, and the held-out split its validation batches come from.

:class:`RunnerSearchContext` is what ``PolicySearchHook`` builds in ``before_run`` and hands to its
searcher's every step: the runner's model (DDP-wrapped or not) and optimiser wrapper, the
validation data and the three generators (policy, augmentation, validation) whose states the
hook's checkpoints carry. Its primitives are those of :class:`~det_autoaug.search.context.SearchContext`.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from torch import Tensor

from .context import SearchContext
from .grad_buffers import FlatGradBuffers

# Pipeline transforms dropped from the training pipeline to make the default validation
# pipeline: validation batches must be un-augmented (REFERENCE section 1, step 5).
RANDOM_TRANSFORM_PREFIXES = ('Random', 'DA', 'PolicyAugment', 'AutoAugment', 'RandAugment',
                             'PhotoMetricDistortion', 'Expand', 'MinIoURandomCrop', 'CutOut',
                             'Mosaic', 'MixUp', 'YOLOXHSVRandomAug', 'CachedMosaic', 'CachedMixUp')


def default_val_pipeline(train_pipeline: Sequence[dict]) -> List[dict]:
    """The training pipeline without its random augmentations (types in RANDOM_TRANSFORM_PREFIXES)."""
    return [copy.deepcopy(t) for t in train_pipeline
            if not str(t.get('type', '')).startswith(RANDOM_TRANSFORM_PREFIXES)]


def get_subset(dataset, indices: List[int]):
    """``dataset.get_subset(indices)``, each call independent of the others in the process.

    mmengine 0.10's ``BaseDataset.get_subset`` deep-copies the dataset's attributes through
    ``_copy_without_annotation(self, memo=dict())``: a mutable default argument, so one memo for
    the whole process. It maps the id of every dataset copied so far to its copy without keeping
    that dataset alive: once it is freed, an object allocated at its address is "copied" as that
    old subset (seen in the test suite: a detection dataset's pipeline came back as a
    Fashion-MNIST dataset, "'DAFashionMNIST' object is not callable"), and it keeps every copy
    made (pixel arrays included) alive for good. Emptied before and after each call.
    """
    defaults = getattr(getattr(type(dataset), '_copy_without_annotation', None), '__defaults__', None) or ()
    memo = next((d for d in defaults if isinstance(d, dict)), None)
    if memo is not None:
        memo.clear()
    try:
        return dataset.get_subset(indices)
    finally:
        if memo is not None:
            memo.clear()


def validation_dataset(runner, seed: int, val_fraction: float, val_dataloader: Optional[dict] = None,
                       val_pipeline: Optional[List[dict]] = None, hook_name: str = 'PolicySearchHook'):
    """The dataset the search's validation batches come from.

    With ``val_dataloader``: its dataset. Otherwise a held-out split of the training set:
    ``val_fraction`` of its images, drawn by ``seed``, with ``val_pipeline`` (default: the
    training pipeline without its random transforms); the runner's training dataloader is rebuilt
    on the rest and its loop's length updated.

    Raises:
        ValueError: the training dataset cannot be split, or a split would be empty.
    """
    if val_dataloader is not None:
        return runner.build_dataloader(val_dataloader, seed=seed).dataset
    loop = runner.train_loop
    full = loop.dataloader.dataset
    if not hasattr(full, 'get_subset'):
        raise ValueError(f'{hook_name} cannot hold out a split of a {type(full).__name__}; '
                         'give the hook a val_dataloader instead of val_fraction')
    n = len(full)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise ValueError(f'val_fraction={val_fraction} of {n} training images leaves an empty split')
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])
    train_cfg = runner.cfg.get('train_dataloader') or runner._train_dataloader
    train_cfg = copy.deepcopy(dict(train_cfg))
    pipeline = val_pipeline or default_val_pipeline(train_cfg['dataset'].get('pipeline', []))
    val_dataset = get_subset(full, val_idx)
    val_dataset.pipeline = Compose(pipeline)
    train_cfg['dataset'] = get_subset(full, train_idx)
    loop.dataloader = runner.build_dataloader(train_cfg, seed=runner.seed)
    if isinstance(loop, EpochBasedTrainLoop):
        loop._max_iters = loop._max_epochs * len(loop.dataloader)
    elif isinstance(loop, IterBasedTrainLoop):
        from mmengine.runner.loops import _InfiniteDataloaderIterator
        loop.dataloader_iterator = _InfiniteDataloaderIterator(loop.dataloader)
    print_log(f'{hook_name}: {len(train_idx)} training and {n_val} held-out validation images', logger='current')
    return val_dataset


class RunnerSearchContext(SearchContext):
    """A search context over an MMEngine runner's model, optimiser wrapper and validation data.

    Args:
        model: the runner's model, possibly a DDP wrapper (its ``train_step`` is the hook's).
        optim_wrapper: the runner's optimiser wrapper (the hook sets the one of each step).
        val_dataset: where :meth:`next_val_batch` draws from (without replacement, reshuffled per pass).
        val_batch_size: images per validation batch.
        seed: seed of the policy generator (identical on every rank), of the augmentation one
            (``seed + 1000 * (rank + 1)``) and of the validation one (``seed + 1``).
        num_slots: rows of the gradient buffers (``searcher.num_grad_slots``).
        bgr_inputs: the images reach the model as BGR.
        filter_kwargs: box drop rule of the augmented copies (``min_size``, ``min_visible``).
        phase_seconds: where :meth:`phase` adds up wall time per phase (shared with the hook).

    Attributes:
        model_forwards: batch forwards through the model so far (with or without a backward).
    """

    def __init__(self, model: torch.nn.Module, optim_wrapper: Any, val_dataset, val_batch_size: int, seed: int,
                 num_slots: int, bgr_inputs: bool = True, filter_kwargs: Optional[Dict[str, float]] = None,
                 phase_seconds: Optional[Dict[str, float]] = None) -> None:
        self.runner_model = model
        self.module = model.module if is_model_wrapper(model) else model
        self.model = self.module
        self.optim_wrapper = optim_wrapper
        self.policy_gen = torch.Generator().manual_seed(seed)
        self.aug_gen = torch.Generator().manual_seed(seed + 1000 * (get_rank() + 1))
        self.val_gen = torch.Generator().manual_seed(seed + 1)
        self.val_order: List[int] = []
        self.val_dataset = val_dataset
        self.val_batch_size = int(val_batch_size)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.buffers = FlatGradBuffers(self.params, num_slots)
        self.device = self.params[0].device
        self.bgr_inputs = bool(bgr_inputs)
        self.filter_kwargs = dict(filter_kwargs or {})
        self.phase_seconds = {} if phase_seconds is None else phase_seconds
        self.model_forwards = 0

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optim_wrapper.optimizer

    # -- state carried by the hook's checkpoints ---------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The generators' states and the validation order (what a resumed search must replay)."""
        return dict(policy_gen=self.policy_gen.get_state(), aug_gen=self.aug_gen.get_state(),
                    val_gen=self.val_gen.get_state(), val_order=list(self.val_order))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy_gen.set_state(state['policy_gen'])
        self.aug_gen.set_state(state['aug_gen'])
        self.val_gen.set_state(state['val_gen'])
        self.val_order = list(state['val_order'])

    # -- primitives ------------------------------------------------------------------------------
    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Accumulate wall time per phase of the step (read by benchmarks/bench_search.py)."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + time.perf_counter() - start

    def train_loss_grad(self, batch: dict) -> Dict[str, Tensor]:
        """Forward and backward through the runner's (possibly DDP-wrapped) model."""
        model, optim_wrapper = self.runner_model, self.optim_wrapper
        self.model_forwards += 1
        with optim_wrapper.optim_context(model):
            data = self.module.data_preprocessor(batch, training=True)
            losses = model._run_forward(data, mode='loss')
        loss, log_vars = self.module.parse_losses(losses)
        optim_wrapper.backward(loss)
        return log_vars

    def forward_loss(self, batch: dict) -> Tuple[Tensor, Dict[str, Tensor]]:
        self.model_forwards += 1
        with self.optim_wrapper.optim_context(self.module):
            data = self.module.data_preprocessor(batch, training=True)
            losses = self.module._run_forward(data, mode='loss')
        return self.module.parse_losses(losses)

    def backward(self, loss: Tensor) -> None:
        self.optim_wrapper.backward(loss)

    def optimizer_step(self) -> None:
        self.optim_wrapper.step()

    def zero_grad(self) -> None:
        self.optim_wrapper.zero_grad()

    def lr(self) -> float:
        return float(self.optim_wrapper.get_lr()['lr'][0])

    def loss_scale(self) -> float:
        scaler = getattr(self.optim_wrapper, 'loss_scaler', None)
        return float(scaler.get_scale()) if scaler is not None and hasattr(scaler, 'get_scale') else 1.0

    def optimizer_state(self) -> Dict[str, Any]:
        return self.optim_wrapper.state_dict()

    def load_optimizer_state(self, state: Mapping[str, Any]) -> None:
        self.optim_wrapper.load_state_dict(state)

    def next_val_batch(self) -> dict:
        if len(self.val_order) < self.val_batch_size:
            self.val_order += torch.randperm(len(self.val_dataset), generator=self.val_gen).tolist()
        idx, self.val_order = self.val_order[:self.val_batch_size], self.val_order[self.val_batch_size:]
        return pseudo_collate([self.val_dataset[i] for i in idx])
