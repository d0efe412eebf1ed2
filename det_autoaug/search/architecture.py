"""The architecture part of DAAS's joint search: one logit vector per choice block of a supernet,
single-path Gumbel-argmax sampling and the logits' Adam step on the validation loss.

The model holds a supernet, a module with a ``choice_blocks()`` method returning blocks that
have ``candidates`` (names) and ``select(index, gate)`` (``DAChoiceNet`` of
:mod:`det_autoaug.cls.nas`; any module with that API works). :class:`ChoiceArchitecture` owns one
logit vector per block, ``a_b``, updated by Adam (betas (0.5, 0.999), DARTS's) on the validation
loss: the logits are not model parameters, so the model optimiser never touches them.

Per step the path is drawn with Gumbel noise ``g`` from the policy generator (every DDP rank
draws the same path): ``soft = softmax((a_b + g) / tau)``, ``k = argmax soft``, and the
straight-through gate ``h = onehot(k) - soft.detach() + soft`` (value 1) multiplies the chosen
candidate's output when the validation loss is differentiated into the logits. ``tau`` is
``max(tau_min, tau * tau_decay ** t)`` at update ``t`` (GDAS anneals it). The joint searcher,
:class:`~det_autoaug.search.searchers.daas_joint.DAASJointSearcher`, decides when each happens.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .arch_file import save_arch_file
from .searchers.base import check_positive

STATE_VERSION = 1
BETAS = (0.5, 0.999)


class ChoiceArchitecture:
    """The architecture logits of a supernet's choice blocks, their Adam, updates and trajectory.

    The blocks are found in :meth:`setup` (the model is not known at construction); a state loaded
    before that waits for it.

    Args:
        lr_arch: Adam learning rate of the logits, > 0.
        tau: Gumbel-softmax temperature at the start, > 0.
        tau_min: floor of the annealed temperature (default: ``tau``, no annealing), in (0, tau].
        tau_decay: factor per update, in (0, 1].
    """

    def __init__(self, lr_arch: float = 0.003, tau: float = 1.0, tau_min: Optional[float] = None,
                 tau_decay: float = 1.0) -> None:
        self.lr_arch = check_positive('lr_arch', lr_arch)
        self.tau = check_positive('tau', tau)
        self.tau_min = self.tau if tau_min is None else check_positive('tau_min', tau_min)
        if self.tau_min > self.tau:
            raise ValueError(f'tau_min={tau_min!r} must not exceed tau={tau!r}')
        if isinstance(tau_decay, bool) or not isinstance(tau_decay, (int, float)) or not 0.0 < tau_decay <= 1.0:
            raise ValueError(f'tau_decay must be in (0, 1], got {tau_decay!r}')
        self.tau_decay = float(tau_decay)
        self.blocks: Optional[List[Any]] = None
        self.candidates: Tuple[Tuple[str, ...], ...] = ()
        self.network: Optional[Dict[str, Any]] = None
        self.logits: List[torch.nn.Parameter] = []
        self.opt: Optional[torch.optim.Adam] = None
        self.updates = 0
        self.trajectory: List[Dict[str, Any]] = []
        self.last_stats: Dict[str, float] = {}
        self._pending: Optional[Mapping[str, Any]] = None

    # ------------------------------------------------------------------ set-up
    def setup(self, ctx, searcher: str) -> None:
        """Find the supernet in ``ctx.model`` and build the logits (zeros) and their Adam.

        Args:
            ctx: the search context.
            searcher: the searcher's name, for the message.

        Raises:
            ValueError: the model has no choice blocks, or a loaded state was searched on other blocks.
        """
        net = ctx.first_module_with('choice_blocks')
        blocks = list(net.choice_blocks()) if net is not None else []
        if not blocks:
            raise ValueError(f"searcher={searcher!r} searches an architecture, but the model "
                             f'({type(ctx.model).__name__}) has no choice blocks: use a supernet backbone such as '
                             "dict(type='DAChoiceNet') without arch, or searcher='daas'")
        self.blocks = blocks
        self.candidates = tuple(tuple(b.candidates) for b in blocks)
        self.network = net.arch_config() if callable(getattr(net, 'arch_config', None)) else None
        device = ctx.device
        self.logits = [torch.nn.Parameter(torch.zeros(len(c), device=device)) for c in self.candidates]
        self.opt = torch.optim.Adam(self.logits, lr=self.lr_arch, betas=BETAS)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._load(pending)
        self.select_argmax()

    # ------------------------------------------------------------------ the path and the update
    def tau_now(self) -> float:
        """The Gumbel-softmax temperature of the next update."""
        return max(self.tau_min, self.tau * self.tau_decay ** self.updates)

    def probs(self) -> List[Tensor]:
        """Per block, the softmax of its logits (detached)."""
        return [torch.softmax(a.detach(), 0) for a in self.logits]

    def sample_path(self, generator: torch.Generator) -> Tuple[List[int], List[Tensor]]:
        """Per block the Gumbel-argmax index ``k`` and the straight-through one-hot ``h`` (with a graph)."""
        tau = self.tau_now()
        indices, hards = [], []
        for a in self.logits:
            gumbel = -torch.empty(a.shape, dtype=torch.float64).exponential_(generator=generator).log()
            k = int(torch.argmax(a.detach().double().cpu() + gumbel))
            soft = torch.softmax((a + gumbel.to(a.device, a.dtype)) / tau, 0)
            hard = torch.zeros_like(soft)
            hard[k] = 1.0
            indices.append(k)
            hards.append(hard - soft.detach() + soft)
        return indices, hards

    def select(self, indices: Sequence[int], gates: Optional[Sequence[Tensor]] = None) -> None:
        """Put block ``b`` on candidate ``indices[b]``, its output times ``gates[b][k]`` when given."""
        for b, (block, k) in enumerate(zip(self.blocks, indices)):
            block.select(k, None if gates is None else gates[b][k])

    def select_argmax(self) -> None:
        """Leave the supernet on its most probable path, holding no graph (evaluation, the next step)."""
        self.select([int(a.detach().argmax()) for a in self.logits])

    def update(self, ctx, val_loss: Tensor) -> None:
        """Differentiate ``val_loss`` (computed along a gated path) into the logits, average the
        gradients over DDP ranks, and take one Adam step."""
        with ctx.phase('architecture update'):
            grads = torch.autograd.grad(val_loss, self.logits)
            grads = ctx.all_reduce_mean(grads)
            self.opt.zero_grad(set_to_none=True)
            for a, g in zip(self.logits, grads):
                a.grad = g
            self.opt.step()
            self.updates += 1

    # ------------------------------------------------------------------ outputs
    def entropy(self) -> float:
        """Mean entropy (nats) of the blocks' distributions."""
        if not self.logits:
            return 0.0
        return float(sum(-(p * p.clamp_min(1e-12).log()).sum() for p in self.probs()) / len(self.logits))

    def arch(self) -> List[str]:
        """Per block, the most probable candidate."""
        return [c[int(a.detach().argmax())] for c, a in zip(self.candidates, self.logits)]

    def snapshot(self, epoch: int) -> None:
        """Record the blocks' probabilities under ``epoch`` (replacing a snapshot of the same epoch)."""
        item = {'epoch': int(epoch), 'probs': [p.cpu().double().tolist() for p in self.probs()]}
        if self.trajectory and self.trajectory[-1]['epoch'] == item['epoch']:
            self.trajectory[-1] = item
        else:
            self.trajectory.append(item)

    def write(self, path: Path, searcher: str, meta: Mapping[str, Any]) -> None:
        """Write the arch file (:mod:`det_autoaug.search.arch_file`) to ``path``."""
        save_arch_file(path, searcher=searcher, candidates=self.candidates,
                       probs=[p.cpu().double().tolist() for p in self.probs()], network=self.network,
                       trajectory=self.trajectory, arch=self.arch(),
                       meta=dict(meta, arch_updates=self.updates, tau=self.tau_now()))

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> Optional[Dict[str, Any]]:
        """The logits, their Adam state, the update count and the trajectory; before :meth:`setup`
        a loaded state still waiting, or None."""
        if not self.logits:
            return None if self._pending is None else dict(self._pending)
        return {'version': STATE_VERSION, 'candidates': [list(c) for c in self.candidates],
                'logits': [a.detach().cpu().clone() for a in self.logits], 'opt': self.opt.state_dict(),
                'updates': self.updates,
                'trajectory': [dict(t, probs=[list(p) for p in t['probs']]) for t in self.trajectory]}

    def load_state_dict(self, state: Optional[Mapping[str, Any]]) -> None:
        """Restore :meth:`state_dict` output (None: nothing saved); before :meth:`setup` it waits for the model."""
        if state is None:
            return
        if self.blocks is None:
            self._pending = state
        else:
            self._load(state)

    def _load(self, state: Mapping[str, Any]) -> None:
        if state.get('version') != STATE_VERSION:
            raise ValueError(f'architecture state version {state.get("version")!r}: expected {STATE_VERSION}')
        candidates = tuple(tuple(c) for c in state['candidates'])
        if candidates != self.candidates:
            raise ValueError(f'the saved architecture state has candidates {candidates} but the model\'s choice '
                             f'blocks have {self.candidates}')
        with torch.no_grad():
            for a, saved in zip(self.logits, state['logits']):
                a.copy_(saved.to(a.device, a.dtype))
        self.opt.load_state_dict(state['opt'])
        self.updates = int(state['updates'])
        self.trajectory = [dict(t, probs=[list(p) for p in t['probs']]) for t in state['trajectory']]
        self.select_argmax()
