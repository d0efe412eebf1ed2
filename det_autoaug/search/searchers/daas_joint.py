"""DAAS's joint search: the network architecture and the augmentation policy together.

The model holds a supernet, a module with a ``choice_blocks()`` method returning blocks that
have ``candidates`` (names) and ``select(index, gate)`` (``DAChoiceNet`` of
:mod:`det_autoaug.cls.nas`; any module with that API works). The searcher owns one logit vector
per block, ``a_b``, updated by Adam (betas (0.5, 0.999), DARTS's) on the validation loss: the
logits are not model parameters, so the model optimiser never touches them.

One step (the policy part is :class:`~det_autoaug.search.searchers.daas.DAASSearcher`'s):

1. draw a policy and the per-image augmentation decisions, as DAAS; then, per block, Gumbel
   noise ``g`` (both from the policy generator, so every DDP rank draws the same path) and
   ``soft = softmax((a_b + g) / tau)``, ``k = argmax soft``, ``h = onehot(k) - soft.detach() + soft``;
2. the weights train one step on the (partly augmented) training batch along the path ``k``
   (no graph to the logits);
3. the validation loss along the same path, each block's output multiplied by ``h_k`` (value 1),
   is differentiated into the logits only; the gradients are averaged over DDP ranks; Adam step;
4. the same validation loss makes DAAS's REINFORCE reward for the policy: with the default
   ``reward='paired'``, ``L_before - L_after`` on that batch, ``L_before`` its loss along the
   same path before step 2 (one more forward, no graph); with ``reward='val_loss'``, ``-L_after``.

``tau`` is ``max(tau_min, tau * tau_decay ** t)`` at arch update ``t`` (GDAS anneals it).

Output: besides the policy file, ``arch_file`` (default ``arch.json``, schema of
:mod:`det_autoaug.search.arch_file`) in the work dir: per block the most probable candidate, the
probabilities, their per-epoch trajectory and the supernet's config; the policy file's ``meta``
gets ``arch`` (the names) and ``arch_file``.

Differences to GDAS and DAAS: the path is one per step for the whole batch (GDAS: the same); the
weights step and the architecture step use the same sampled path; under DDP the model must be
wrapped with ``find_unused_parameters=True`` (the candidates off the path get no gradient); the
context's model step gives them a zero gradient, not none, so weight decay shrinks them and
momentum lets them coast (the search configs use no weight decay). Classification only:
detection has no supernet here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...ops.spaces import SpaceEntry
from ..arch_file import save_arch_file
from .base import check_positive
from .daas import DAASSearcher, ValidationBatch

ARCH_STATE_VERSION = 1
ARCH_BETAS = (0.5, 0.999)


class DAASJointSearcher(DAASSearcher):
    """DAAS with the architecture searched jointly (single-path Gumbel-softmax choice blocks).

    Args:
        entries: the search-space entries.
        ops_per_policy: entries per policy.
        init_apply_prob: initial s.
        lr_alpha: Adam learning rate of alpha.
        lr_beta: Adam learning rate of beta.
        baseline_decay: moving-average factor of the REINFORCE baseline, in [0, 1).
        reward: DAAS's reward, ``'paired'`` (default) or ``'val_loss'``.
        lr_arch: Adam learning rate of the architecture logits.
        tau: Gumbel-softmax temperature at the start, > 0.
        tau_min: floor of the annealed temperature (default: ``tau``, no annealing), in (0, tau].
        tau_decay: factor per architecture update, in (0, 1].
        arch_file: file name (in the work dir) of the found architecture.
    """

    name = 'daas_joint'
    num_grad_slots = 1

    def __init__(self, entries: Sequence[SpaceEntry], ops_per_policy: int = 2, init_apply_prob: float = 0.35,
                 lr_alpha: float = 0.005, lr_beta: float = 0.001, baseline_decay: float = 0.9,
                 reward: str = 'paired', lr_arch: float = 0.003, tau: float = 1.0, tau_min: Optional[float] = None,
                 tau_decay: float = 1.0, arch_file: str = 'arch.json') -> None:
        super().__init__(entries, ops_per_policy=ops_per_policy, init_apply_prob=init_apply_prob, lr_alpha=lr_alpha,
                         lr_beta=lr_beta, baseline_decay=baseline_decay, reward=reward)
        self.lr_arch = check_positive('lr_arch', lr_arch)
        self.tau = check_positive('tau', tau)
        self.tau_min = self.tau if tau_min is None else check_positive('tau_min', tau_min)
        if self.tau_min > self.tau:
            raise ValueError(f'tau_min={tau_min!r} must not exceed tau={tau!r}')
        if isinstance(tau_decay, bool) or not isinstance(tau_decay, (int, float)) or not 0.0 < tau_decay <= 1.0:
            raise ValueError(f'tau_decay must be in (0, 1], got {tau_decay!r}')
        self.tau_decay = float(tau_decay)
        if not isinstance(arch_file, str) or not arch_file:
            raise ValueError(f'arch_file={arch_file!r}: expected a non-empty file name')
        self.arch_file = arch_file
        self.blocks: Optional[List[Any]] = None
        self.candidates: Tuple[Tuple[str, ...], ...] = ()
        self.network: Optional[Dict[str, Any]] = None
        self.logits: List[torch.nn.Parameter] = []
        self.opt_arch: Optional[torch.optim.Adam] = None
        self.arch_updates = 0
        self.arch_trajectory: List[Dict[str, Any]] = []
        self._pending: Optional[Mapping[str, Any]] = None
        self.last_arch_stats: Dict[str, float] = {}

    # ------------------------------------------------------------------ set-up
    def setup(self, ctx) -> None:
        """Find the supernet in ``ctx.model`` and build the logits (zeros) and their Adam.

        Raises:
            ValueError: the model has no choice blocks, or a loaded state was searched on other blocks.
        """
        net = ctx.first_module_with('choice_blocks')
        blocks = list(net.choice_blocks()) if net is not None else []
        if not blocks:
            raise ValueError(f"searcher='daas_joint' searches an architecture, but the model "
                             f'({type(ctx.model).__name__}) has no choice blocks: use a supernet backbone such as '
                             "dict(type='DAChoiceNet') without arch, or searcher='daas'")
        self.blocks = blocks
        self.candidates = tuple(tuple(b.candidates) for b in blocks)
        self.network = net.arch_config() if callable(getattr(net, 'arch_config', None)) else None
        device = ctx.device
        self.logits = [torch.nn.Parameter(torch.zeros(len(c), device=device)) for c in self.candidates]
        self.opt_arch = torch.optim.Adam(self.logits, lr=self.lr_arch, betas=ARCH_BETAS)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._load_arch(pending)
        self._select_argmax()

    # ------------------------------------------------------------------ the step
    def tau_now(self) -> float:
        """The Gumbel-softmax temperature of the next update."""
        return max(self.tau_min, self.tau * self.tau_decay ** self.arch_updates)

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

    def _select(self, indices: Sequence[int], gates: Optional[Sequence[Tensor]] = None) -> None:
        for b, (block, k) in enumerate(zip(self.blocks, indices)):
            block.select(k, None if gates is None else gates[b][k])

    def _select_argmax(self) -> None:
        """Leave the supernet on its most probable path, holding no graph (evaluation, the next step)."""
        self._select([int(a.detach().argmax()) for a in self.logits])

    def step(self, ctx, data: dict) -> Dict[str, Tensor]:
        if self.blocks is None:
            self.setup(ctx)
        entries, applied, batch = self.sample_batch(ctx, data)
        indices, hards = self.sample_path(ctx.policy_gen)
        self._select(indices)
        val, val_loss_before = self.validation_before_step(ctx)
        log_vars = ctx.loss_grad(batch, 0)
        ctx.model_step([1.0], [0])
        val = val or ValidationBatch(ctx)
        self._select(indices, hards)
        try:
            val_loss = val.loss()
            with ctx.phase('architecture update'):
                grads = torch.autograd.grad(val_loss, self.logits)
                grads = ctx.all_reduce_mean(grads)
                self.opt_arch.zero_grad(set_to_none=True)
                for a, g in zip(self.logits, grads):
                    a.grad = g
                self.opt_arch.step()
                self.arch_updates += 1
        finally:
            self._select_argmax()
        self.last_arch_stats = {'val_loss': float(val_loss.detach()), 'tau': self.tau_now()}
        self.update_policy(ctx, val_loss.detach(), entries, applied, val_loss_before)
        return log_vars

    # ------------------------------------------------------------------ logging, trajectory, export
    def arch_entropy(self) -> float:
        """Mean entropy (nats) of the blocks' distributions."""
        if not self.logits:
            return 0.0
        return float(sum(-(p * p.clamp_min(1e-12).log()).sum() for p in self.probs()) / len(self.logits))

    def arch(self) -> List[str]:
        """Per block, the most probable candidate."""
        return [c[int(a.detach().argmax())] for c, a in zip(self.candidates, self.logits)]

    def log_items(self, top: int = 5):
        scalars, infos = super().log_items(top)
        scalars[f'train/{self.name}_arch_entropy'] = self.arch_entropy()
        scalars[f'train/{self.name}_tau'] = self.tau_now()
        if self.logits:
            infos[f'{self.name}_arch'] = ','.join(self.arch())
        return scalars, infos

    def snapshot(self, epoch: int) -> None:
        super().snapshot(epoch)
        item = {'epoch': int(epoch), 'probs': [p.cpu().double().tolist() for p in self.probs()]}
        if self.arch_trajectory and self.arch_trajectory[-1]['epoch'] == item['epoch']:
            self.arch_trajectory[-1] = item
        else:
            self.arch_trajectory.append(item)

    def export_meta(self) -> Dict[str, Any]:
        return {'arch': self.arch(), 'arch_file': self.arch_file}

    def write_outputs(self, work_dir: Path, meta: Mapping[str, Any]) -> List[Path]:
        path = Path(work_dir) / self.arch_file
        save_arch_file(path, searcher=self.name, candidates=self.candidates,
                       probs=[p.cpu().double().tolist() for p in self.probs()], network=self.network,
                       trajectory=self.arch_trajectory, arch=self.arch(),
                       meta=dict({k: v for k, v in meta.items() if k not in ('arch', 'arch_file')},
                                 arch_updates=self.arch_updates, tau=self.tau_now()))
        return [path]

    # ------------------------------------------------------------------ checkpoint
    def _arch_state(self) -> Optional[Dict[str, Any]]:
        if not self.logits:
            return None if self._pending is None else dict(self._pending)
        return {'version': ARCH_STATE_VERSION, 'candidates': [list(c) for c in self.candidates],
                'logits': [a.detach().cpu().clone() for a in self.logits], 'opt': self.opt_arch.state_dict(),
                'updates': self.arch_updates,
                'trajectory': [dict(t, probs=[list(p) for p in t['probs']]) for t in self.arch_trajectory]}

    def _load_arch(self, state: Mapping[str, Any]) -> None:
        if state.get('version') != ARCH_STATE_VERSION:
            raise ValueError(f'architecture state version {state.get("version")!r}: expected {ARCH_STATE_VERSION}')
        candidates = tuple(tuple(c) for c in state['candidates'])
        if candidates != self.candidates:
            raise ValueError(f'the saved architecture state has candidates {candidates} but the model\'s choice '
                             f'blocks have {self.candidates}')
        with torch.no_grad():
            for a, saved in zip(self.logits, state['logits']):
                a.copy_(saved.to(a.device, a.dtype))
        self.opt_arch.load_state_dict(state['opt'])
        self.arch_updates = int(state['updates'])
        self.arch_trajectory = [dict(t, probs=[list(p) for p in t['probs']]) for t in state['trajectory']]
        self._select_argmax()

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state['arch'] = self._arch_state()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a ``daas_joint`` state; before :meth:`setup` the architecture part waits for the model."""
        if 'arch' not in state:
            raise ValueError("state is not a daas_joint searcher state (no 'arch' entry; a plain DAAS state?)")
        super().load_state_dict(state)
        arch = state['arch']
        if arch is None:
            return
        if self.blocks is None:
            self._pending = arch
        else:
            self._load_arch(arch)
