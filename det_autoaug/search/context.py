"""The search context: the primitives a searcher builds one search step from.

A *searcher* (DDAS, DADA, DAAS; :mod:`det_autoaug.search.searchers`) owns its learned state and
decides what one step does; a *search context* owns the model, the optimiser, the data and the
random generators and offers the primitives below. :class:`TorchSearchContext` is one for a plain
torch model (toy problems, tests); ``PolicySearchHook`` builds a
:class:`~det_autoaug.search.runner_context.RunnerSearchContext` over an MMEngine runner.

Primitives (:class:`SearchContext`, on top of seven model-specific methods a context
implements: ``forward_loss``, ``backward``, ``optimizer_step``, ``zero_grad``, ``lr``,
``optimizer_state``, ``load_optimizer_state``):

- ``loss_grad(batch, slot)``: loss and gradient of a batch, the flat gradient stored in
  ``buffers`` row ``slot`` (the grads are then zeroed);
- ``augment(batch, chain)``: a copy of the batch with a chain of
  :class:`~det_autoaug.policy.step.ChainStep` applied (hard, uint8 as a dataloader yields it);
- ``augment_differentiable(batch, steps, seed)``: float copy whose pixels depend on each step's
  magnitude tensor and gate tensor through autograd (straight-through for non-smooth ops);
- ``model_step(coefficients, slots)``: write ``sum_k c_k buf[slots[k]]`` into the grads and step
  the model optimiser;
- ``perturbed(slot, scale)``: a context manager in which the parameters are
  ``theta + scale * buf[slot]`` (restored exactly on exit);
- ``train_step(batch)`` (a plain training step), ``val_loss(batches)`` (mean loss, no graph),
  ``train_state()`` / ``load_train_state(state)`` (copy and restore the model's parameters,
  buffers and optimiser state: try training steps, then undo them);
- ``next_val_batch()``; ``forward_loss(batch)`` (a loss with its graph, no backward);
  ``all_reduce_mean(tensors)`` (average over DDP ranks; identity without a process group);
  ``draw_seed()`` (a seed from the augmentation generator, so an augmentation can be replayed);
- ``model`` (the unwrapped model), ``optimizer`` (the model's torch optimiser) and
  ``first_module_with(attribute)`` (the model's first module with a method of that name, e.g.
  ``'choice_blocks'`` for the joint architecture search).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from torch import Tensor

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..policy.step import ChainStep
from .batch_augment import augment_batch
from .grad_buffers import FlatGradBuffers


class SearchContext:
    """The generic primitives; a context sets the attributes and implements the abstract methods.

    Attributes a context sets: ``params`` (trainable parameters), ``buffers``
    (:class:`FlatGradBuffers`), ``device``, ``aug_gen`` (rank-specific augmentation generator),
    ``policy_gen`` (identical on every rank), ``bgr_inputs``, ``filter_kwargs``, ``model`` (the
    unwrapped model: no DDP wrapper) and ``optimizer`` (its torch optimiser; ``None`` when the
    context has none). ``copy_backend`` is the route of the hard copies of :meth:`augment`
    (``'auto'``: cv2 on the CPU, torch on CUDA; ``'torch'`` or ``'cv2'`` to force one, for
    benchmarks; see :mod:`det_autoaug.search.batch_augment`).
    """

    params: List[torch.nn.Parameter]
    buffers: FlatGradBuffers
    device: torch.device
    aug_gen: torch.Generator
    policy_gen: torch.Generator
    bgr_inputs: bool
    filter_kwargs: Dict[str, float]
    model: torch.nn.Module
    optimizer: Optional[torch.optim.Optimizer] = None
    copy_backend: str = 'auto'

    # -- model-specific (implemented by the context) ----------------------------------------
    def forward_loss(self, batch: dict) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``(loss, log_vars)`` of a batch in training mode, with its graph (no backward).

        Runs the unwrapped model: no DDP gradient synchronisation is armed, so the caller may
        differentiate with respect to anything (augmentation parameters) with ``autograd.grad``.
        """
        raise NotImplementedError

    def backward(self, loss: Tensor) -> None:
        raise NotImplementedError

    def optimizer_step(self) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        raise NotImplementedError

    def lr(self) -> float:
        """The model optimiser's current learning rate (first parameter group)."""
        raise NotImplementedError

    def loss_scale(self) -> float:
        """Factor the stored gradients carry (AMP loss scaling); 1 without one."""
        return 1.0

    def next_val_batch(self) -> dict:
        raise NotImplementedError

    def optimizer_state(self) -> Dict[str, Any]:
        """The model optimiser's ``state_dict()`` (momentum buffers, learning rates; an AMP loss scale)."""
        raise NotImplementedError

    def load_optimizer_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def train_loss_grad(self, batch: dict) -> Dict[str, Tensor]:
        """Forward and backward of the training loss (grads synchronised across ranks)."""
        loss, log_vars = self.forward_loss(batch)
        self.backward(loss)
        return log_vars

    # -- generic primitives -------------------------------------------------------------------
    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as phase ``name`` of the step (a context that keeps timings overrides this)."""
        yield

    def loss_grad(self, batch: dict, slot: int) -> Dict[str, Tensor]:
        """Loss and gradient of ``batch``; the flat gradient goes to buffer row ``slot``."""
        with self.phase('model passes'):
            log_vars = self.train_loss_grad(batch)
        with self.phase('gradient buffers'):
            self.buffers.store(slot, self.params)
            self.zero_grad()
        return log_vars

    def train_step(self, batch: dict) -> Dict[str, Tensor]:
        """One plain training step on ``batch``: forward, backward, optimiser step (clipping included)."""
        self.zero_grad()
        with self.phase('model passes'):
            log_vars = self.train_loss_grad(batch)
        with self.phase('optimizer step'):
            self.optimizer_step()
            self.zero_grad()
        return log_vars

    def val_loss(self, batches: Sequence[dict]) -> Tensor:
        """Mean training-mode loss of the model over ``batches``, without gradients (0-d float32)."""
        with torch.no_grad(), self.phase('model passes'):
            losses = [self.forward_loss(b)[0].detach().float().reshape(()) for b in batches]
        return torch.stack(losses).mean()

    def train_state(self) -> Dict[str, Any]:
        """A copy of everything a training step changes: the model's parameters and buffers
        (batch-norm statistics included) and the optimiser's state. :meth:`load_train_state` puts
        it back, so a searcher can try a few training steps and undo them."""
        with self.phase('train state'):
            return {'model': {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                    'optimizer': copy.deepcopy(self.optimizer_state())}

    def load_train_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`train_state` output in place (the parameters keep their identity); the
        state itself is not consumed and can be loaded again."""
        with self.phase('train state'):
            self.model.load_state_dict(state['model'])
            # torch optimisers adopt the loaded tensors: load a copy so the saved state stays intact
            self.load_optimizer_state(copy.deepcopy(state['optimizer']))

    def augment(self, batch: dict, chain: Sequence[ChainStep]) -> dict:
        """A copy of ``batch`` with every image augmented by ``chain`` (hard: uint8, as a dataloader
        yields it; random parameters from the augmentation generator)."""
        with self.phase('augmentation'):
            return augment_batch(batch, chain, self.aug_gen, self.device, self.bgr_inputs, backend=self.copy_backend,
                                 **self.filter_kwargs)

    def draw_seed(self) -> int:
        """A seed drawn from the augmentation generator (replay a differentiable augmentation)."""
        return int(torch.randint(0, 2 ** 62, (1,), generator=self.aug_gen))

    def augment_differentiable(self, batch: dict, steps: Sequence[ChainStep], seed: int) -> dict:
        """A float copy of ``batch`` (0..255 scale) whose pixels depend on each step's magnitude
        tensor and gate through autograd (straight-through for non-smooth ops; a gate maps ``x`` to
        ``x + gate * (op(x) - x)``, see :func:`~det_autoaug.search.batch_augment.augment_batch`);
        the random parameters come from ``seed``, so the same seed replays the same draw."""
        with self.phase('augmentation'):
            return augment_batch(batch, steps, torch.Generator().manual_seed(int(seed)), self.device,
                                 self.bgr_inputs, differentiable=True, **self.filter_kwargs)

    def model_step(self, coefficients: Union[Tensor, Sequence[float]], slots: Sequence[int]) -> None:
        """Step the model optimiser on ``sum_k coefficients[k] * buf[slots[k]]``."""
        with self.phase('gradient buffers'):
            self.buffers.combine_into_grads(torch.as_tensor(coefficients).to(self.device), list(slots), self.params)
        with self.phase('optimizer step'):
            self.optimizer_step()
            self.zero_grad()

    @contextmanager
    def perturbed(self, slot: int, scale: float) -> Iterator[None]:
        """Parameters moved to ``theta + scale * buf[slot]`` inside the block, restored bit-exactly after."""
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, (_, segment) in zip(self.params, self.buffers._segments(slot, self.params)):
                p.add_(segment.to(p.dtype), alpha=float(scale))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)

    def first_module_with(self, attribute: str) -> Optional[torch.nn.Module]:
        """The first module of ``model`` (itself first, then ``modules()`` order) with a method
        ``attribute``, or ``None``: how a searcher finds e.g. the supernet of a classifier."""
        for module in self.model.modules():
            if callable(getattr(module, attribute, None)):
                return module
        return None

    def all_reduce_mean(self, tensors: Sequence[Tensor]) -> List[Tensor]:
        """Average each tensor over the ranks (returns new tensors; identity without DDP)."""
        out = [t.detach().clone() for t in tensors]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for t in out:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                t.div_(dist.get_world_size())
        return out


#: The former name of :class:`SearchContext` (it was a mixin of the search hook).
SearchContextMixin = SearchContext


class TorchSearchContext(SearchContext):
    """A search context for a plain torch model (toy problems, tests, custom loops).

    Batches are ``dict(inputs=(B, C, H, W) float on 0..255, targets=...)``; the loss is
    ``loss_fn(model(inputs), targets)``.

    Args:
        model: the model.
        loss_fn: ``(outputs, targets) -> scalar``.
        optimizer: the model optimiser.
        val_batches: ``() -> dict``, a validation batch per call.
        num_slots: rows of the gradient buffers (``searcher.num_grad_slots``).
        seed: seed of the policy and augmentation generators.
        dtype: dtype of the gradient buffers.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                 optimizer: torch.optim.Optimizer, val_batches: Callable[[], dict], num_slots: int, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        self.model, self.loss_fn, self.optimizer, self.val_batches = model, loss_fn, optimizer, val_batches
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.buffers = FlatGradBuffers(self.params, num_slots, dtype)
        self.device = self.params[0].device
        self.policy_gen = torch.Generator().manual_seed(seed)
        self.aug_gen = torch.Generator().manual_seed(seed + 1000)
        self.bgr_inputs = False
        self.filter_kwargs = dict(min_size=MIN_SIZE, min_visible=MIN_VISIBLE)

    def forward_loss(self, batch: dict) -> Tuple[Tensor, Dict[str, Tensor]]:
        loss = self.loss_fn(self.model(batch['inputs'].float()), batch['targets'])
        return loss, {'loss': loss.detach()}

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def optimizer_step(self) -> None:
        self.optimizer.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]['lr'])

    def next_val_batch(self) -> dict:
        return self.val_batches()

    def optimizer_state(self) -> Dict[str, Any]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state)

    def state(self) -> Dict[str, Any]:
        return {'policy_gen': self.policy_gen.get_state(), 'aug_gen': self.aug_gen.get_state()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.policy_gen.set_state(state['policy_gen'])
        self.aug_gen.set_state(state['aug_gen'])
