"""Preallocated flat gradient copies for a DDAS step: clean, K augmented, validation.

A DDAS step needs K+1 training gradients at the same weights, their combination for the model
step, and inner products with a validation gradient taken after that step. Keeping them as rows
of one ``(num_slots, numel)`` tensor, allocated once, makes the memory cost explicit and fixed:
exactly ``num_slots * numel`` elements (4 bytes each in float32; with the default K = 3,
``num_slots = K + 2 = 5`` copies of the trainable parameters), and no allocation per step.
"""
from __future__ import annotations

import numbers
from typing import Iterable, List, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import Tensor


class FlatGradBuffers:
    """``num_slots`` flat copies of the gradients of ``params`` (those with ``requires_grad``).

    Args:
        params: the model parameters; those with ``requires_grad=False`` are left out. All kept
            parameters must be on one device.
        num_slots: number of rows, >= 1 (DDAS: K + 2 = clean, K augmented, validation).
        dtype: floating dtype of the buffers (float32; float64 for exactness tests).

    Attributes:
        buffers: ``(num_slots, numel)`` tensor on the parameters' device.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], num_slots: int,
                 dtype: torch.dtype = torch.float32) -> None:
        if isinstance(num_slots, bool) or not isinstance(num_slots, numbers.Integral) or num_slots < 1:
            raise ValueError(f'num_slots must be an int >= 1, got {num_slots!r}')
        if not dtype.is_floating_point:
            raise ValueError(f'dtype must be a floating dtype, got {dtype!r}')
        self.params: List[Tensor] = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError('params holds no parameter with requires_grad=True; expected at least one')
        devices = {p.device for p in self.params}
        if len(devices) != 1:
            raise ValueError(f'parameters must share one device, got {sorted(map(str, devices))}')
        self._numels = [p.numel() for p in self.params]
        self._offsets = [0]
        for n in self._numels:
            self._offsets.append(self._offsets[-1] + n)
        self.numel = self._offsets[-1]
        self.num_slots = int(num_slots)
        self.buffers = torch.zeros(self.num_slots, self.numel, dtype=dtype, device=self.params[0].device)

    def _check_slot(self, slot: int) -> int:
        if isinstance(slot, bool) or not isinstance(slot, numbers.Integral) or not 0 <= slot < self.num_slots:
            raise ValueError(f'slot must be an int in [0, {self.num_slots}), got {slot!r}')
        return int(slot)

    def _resolve(self, params: Optional[Iterable[Tensor]]) -> List[Tensor]:
        if params is None:
            return self.params
        params = [p for p in params if p.requires_grad]
        if [p.numel() for p in params] != self._numels:
            raise ValueError(f'params do not match the buffers: {len(params)} trainable tensors with sizes '
                             f'{[p.numel() for p in params][:8]}..., expected {len(self._numels)} with '
                             f'{self._numels[:8]}...')
        return params

    def _segments(self, slot: int, params: List[Tensor]):
        row = self.buffers[slot]
        for p, start, end in zip(params, self._offsets[:-1], self._offsets[1:]):
            yield p, row[start:end].view_as(p)

    def store(self, slot: int, params: Optional[Iterable[Tensor]] = None) -> None:
        """Copy the current ``.grad`` of every parameter into row ``slot`` (missing grad: zeros).

        Args:
            slot: row index in ``[0, num_slots)``.
            params: the parameters (default: those given at construction), in the same order.
        """
        slot = self._check_slot(slot)
        for p, segment in self._segments(slot, self._resolve(params)):
            if p.grad is None:
                segment.zero_()
            else:
                segment.copy_(p.grad)

    def dot(self, i: int, j: int) -> Tensor:
        """``<buf[i], buf[j]>``, a 0-dim tensor on the buffers' device."""
        return torch.dot(self.buffers[self._check_slot(i)], self.buffers[self._check_slot(j)])

    def dots(self, i: int, slots: Sequence[int]) -> Tensor:
        """``<buf[i], buf[s]>`` for each ``s`` in ``slots``.

        Shape:
            ``(len(slots),)``.
        """
        slots = list(slots)
        if not slots:
            raise ValueError('slots is empty; expected at least one slot index')
        row = self.buffers[self._check_slot(i)]
        return torch.stack([torch.dot(row, self.buffers[self._check_slot(s)]) for s in slots])

    def combine_into_grads(self, coeffs: Union[Tensor, Sequence[float]], slots: Sequence[int],
                           params: Optional[Iterable[Tensor]] = None) -> None:
        """Write ``sum_k coeffs[k] * buf[slots[k]]`` into each parameter's ``.grad``.

        ``.grad`` is allocated (zeros like the parameter) where it is None, then overwritten.

        Args:
            coeffs: ``(len(slots),)`` coefficients, e.g. ``DDASPolicy.model_grad_coefficients``.
            slots: the rows to combine.
            params: the parameters (default: those given at construction).
        """
        slots = [self._check_slot(s) for s in slots]
        coeffs = torch.as_tensor(coeffs).detach().reshape(-1)
        if coeffs.numel() != len(slots) or not slots:
            raise ValueError(f'coeffs has {coeffs.numel()} values for {len(slots)} slots; expected one per slot '
                             'and at least one slot')
        values = coeffs.double().tolist()  # one host sync; python floats feed add_(alpha=...)
        params = self._resolve(params)
        rows = [self.buffers[s] for s in slots]
        for p, start, end in zip(params, self._offsets[:-1], self._offsets[1:]):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grad = p.grad
            grad.copy_(rows[0][start:end].view_as(p)).mul_(values[0])
            for row, c in zip(rows[1:], values[1:]):
                grad.add_(row[start:end].view_as(p).to(grad.dtype), alpha=c)

    def all_reduce_(self, slot: int) -> None:
        """Average row ``slot`` over the ranks of the default process group; no-op without one."""
        slot = self._check_slot(slot)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            row = self.buffers[slot]
            dist.all_reduce(row, op=dist.ReduceOp.SUM)
            row.div_(dist.get_world_size())
