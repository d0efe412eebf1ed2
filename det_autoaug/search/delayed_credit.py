"""A DDAS reward that sees past one step: each step's proposals are credited with the validation
gradients of the next ``horizon`` steps, through an inner-product sketch of the gradients.

The one-step DDAS reward ``r_k = <g_k - g_0, g_V>`` takes ``g_V`` right after the step. Once the
model fits its training batch that reward can rank harmful augmentations above helpful ones (a
short-horizon bias, REFERENCE note e). Here the proposals of step ``t`` keep their reward
directions ``d_k = g_k - g_0`` and collect ``R_k = sum_{u=t}^{t+W-1} <d_k, g_V(u)>`` over the
validation gradients of steps ``t .. t+W-1``: to first order (ignoring how later steps transport
the change), the effect of step ``t``'s augmentation choice on the validation loss over the next
W steps. After W steps the policy is updated with ``R``; a window of ``W = 1`` is the DDAS reward.

Cost: no model pass. Memory: ``W * K`` sketched directions. The sketch
(:class:`GradientSketch`) keeps inner products unbiased at a fixed dimension whatever the
model's size; a model with fewer parameters than that dimension is kept exactly.

What is approximate: the update of step ``t`` happens at step ``t + W - 1`` with the importance
weights of step ``t`` (a ``W - 1`` step delay: the policy has moved meanwhile), and the credits
of the last ``W - 1`` steps of a search are never applied.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .categorical import Proposal, check_count


class GradientSketch:
    """Random-sign folding sketch: ``S(g)[j] = sum_{i = j mod d} s_i g_i`` with ``s_i = +-1``.

    ``E[<S a, S b>] = <a, b>`` over the signs (cross terms have zero mean), so sketched inner
    products are unbiased; their noise shrinks as ``dim`` grows. With ``dim >= numel`` the sketch
    is the identity (exact).

    Args:
        numel: length of the flat gradients.
        dim: sketch dimension, >= 1.
        seed: seed of the signs (a resumed search rebuilds the same sketch from it).
        device: where the signs live (the gradients' device).
    """

    def __init__(self, numel: int, dim: int, seed: int = 0, device: Optional[torch.device] = None) -> None:
        check_count('sketch dim', dim, 1)
        self.numel, self.seed = int(numel), int(seed)
        self.exact = dim >= numel
        self.dim = self.numel if self.exact else int(dim)
        self.signs: Optional[Tensor] = None
        if not self.exact:
            gen = torch.Generator().manual_seed(self.seed)
            self.signs = (torch.randint(0, 2, (self.numel,), generator=gen, dtype=torch.int8) * 2 - 1).to(device)

    def __call__(self, flat: Tensor) -> Tensor:
        """Sketch ``(..., numel)`` rows into ``(..., dim)`` (float64 for the sums)."""
        if flat.shape[-1] != self.numel:
            raise ValueError(f'expected flat gradients of length {self.numel}, got shape {tuple(flat.shape)}')
        if self.exact:
            return flat.double().clone()
        folded = F.pad(flat * self.signs.to(flat.dtype), (0, (-self.numel) % self.dim))
        return folded.view(*flat.shape[:-1], -1, self.dim).double().sum(-2)


class DelayedCredit:
    """Pending proposals with their sketched reward directions and accumulated rewards.

    Args:
        horizon: W, the number of validation gradients each proposal collects, >= 1.
    """

    def __init__(self, horizon: int) -> None:
        check_count('horizon', horizon, 1)
        self.horizon = int(horizon)
        self.pending: Deque[Dict[str, Any]] = deque()

    def step(self, proposal: Proposal, directions: Tensor, val_sketch: Tensor) -> Optional[Dict[str, Any]]:
        """Add this step's proposal, credit every pending one with ``<d_k, S g_V>``, and return the
        oldest once it has collected ``horizon`` credits (``{'proposal', 'rewards'}``), else None."""
        self.pending.append(dict(proposal=proposal, directions=directions, rewards=torch.zeros(
            len(directions), dtype=torch.float64, device=directions.device), age=0))
        for item in self.pending:
            item['rewards'] += item['directions'] @ val_sketch
            item['age'] += 1
        if self.pending[0]['age'] >= self.horizon:
            done = self.pending.popleft()
            return dict(proposal=done['proposal'], rewards=done['rewards'])
        return None

    def state_dict(self) -> Dict[str, Any]:
        return {'horizon': self.horizon, 'pending': [
            dict(entries=i['proposal'].entries, prob=i['proposal'].prob, proposal_prob=i['proposal'].proposal_prob,
                 weights=i['proposal'].weights, directions=i['directions'], rewards=i['rewards'], age=i['age'])
            for i in self.pending]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get('horizon') != self.horizon:
            raise ValueError(f'the delayed-credit state has horizon {state.get("horizon")!r}, this searcher '
                             f'{self.horizon}')
        self.pending = deque(
            dict(proposal=Proposal(entries=i['entries'], prob=i['prob'], proposal_prob=i['proposal_prob'],
                                   weights=i['weights']),
                 directions=i['directions'], rewards=i['rewards'], age=int(i['age']))
            for i in state['pending'])


__all__: List[str] = ['GradientSketch', 'DelayedCredit']
