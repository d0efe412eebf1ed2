"""DDAS (Liu et al., ICCV 2021) as a searcher: the reward and the step; the policy it learns is
:class:`~det_autoaug.search.core.DDASPolicy` (the categorical policy shared with DAAS plus DDAS's
update), held by composition.

What it computes, per step (``signal='one_step'``, REFERENCE section 1): K policies proposed from
the policy, the gradients ``g_0`` of the clean batch and ``g_k`` of the batch augmented with
policy k, one model step on ``g_hat = (1 - s) g_0 + s sum_k w_k g_k``, the gradient ``g_V`` of a
validation batch after it, and the policy update with the rewards ``r_k = <g_k - g_0, g_V>``.
With ``horizon > 1`` each proposal is credited with the next ``horizon`` validation gradients
(:mod:`det_autoaug.search.delayed_credit`); with ``signal='lookahead'`` the rewards are the
validation losses L-step branches reach (:mod:`det_autoaug.search.lookahead`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...ops.spaces import SpaceEntry
from ..core import DDASPolicy
from ..delayed_credit import DelayedCredit, GradientSketch
from ..lookahead import LookaheadRounds
from .base import PlotSeries, Searcher, check_int, select_images

SIGNALS = ('lookahead', 'one_step')
#: The defaults of the arguments that depend on the signal. ``'lookahead'`` (the default signal):
#: the setting that moved the planted harmful entries beyond the shuffled-reward null on both
#: planted-harm setups (docs/results.md, "Planted harm": 5/5 seeds each); 6 proposals per round
#: make each round's update less noisy, and one Adam step per round needs the larger learning
#: rates (measured with 12-16 rounds per search). ``'one_step'``: the published DDAS settings
#: (K = 3, two entries per policy, CIFAR's learning rates).
SIGNAL_DEFAULTS = {
    'lookahead': dict(num_policies=6, ops_per_policy=1, lr_alpha=0.2, lr_beta=0.04),
    'one_step': dict(num_policies=3, ops_per_policy=2, lr_alpha=0.005, lr_beta=0.001),
}


class DDASSearcher(Searcher):
    """DDAS: K augmented copies per step, gradient-alignment rewards, alpha/beta by Adam.

    ``num_policies``, ``ops_per_policy``, ``lr_alpha`` and ``lr_beta`` default (None) to the
    signal's values in :data:`SIGNAL_DEFAULTS`: with the default look-ahead signal K = 6 single-entry
    policies per round and Adam rates 0.2 / 0.04; with ``signal='one_step'`` the published
    K = 3, two entries per policy, 0.005 / 0.001. The published DDAS is therefore
    ``signal='one_step', estimator='paper'``.

    Args:
        entries: the search-space entries.
        num_policies: K, policies proposed per step (one-step) or per round (look-ahead).
        ops_per_policy: entries per policy.
        init_apply_prob: initial s (official: 0.35).
        lr_alpha: Adam learning rate of alpha.
        lr_beta: Adam learning rate of beta.
        explore_ratio: probability of a uniform proposal (importance-corrected below 1).
        estimator: ``'centred'`` (default: alpha's rewards centred on their weighted mean) or
            ``'paper'`` (the published update); see
            :meth:`~det_autoaug.search.core.DDASPolicy.policy_gradient`.
        horizon: W, validation gradients each step's proposals are credited with
            (:mod:`det_autoaug.search.delayed_credit`); 1 (default) is the one-step DDAS reward.
        sketch_dim: dimension of the gradient sketch when ``horizon > 1`` (exact for models with
            fewer parameters).
        signal: ``'lookahead'`` (default): each policy is trained on for ``lookahead_steps`` steps
            from a copy of the training state and rewarded with the validation loss it reaches
            (:mod:`det_autoaug.search.lookahead`; rewards not normalised per step), one policy
            update per round; or ``'one_step'``: the DDAS reward ``<g_k - g_0, g_V>`` every step
            (with ``horizon``), which on the planted-harm setups did not separate harmful from
            helpful entries (docs/results.md).
        lookahead_steps: L, training steps per look-ahead round. The measured searches had 12-16
            rounds (300 steps with L = 25 in detection, 800 with L = 50 on Fashion-MNIST): for a
            search of S steps, L about S / 15 keeps the default learning rates in that regime.
        lookahead_val_batches: V, validation batches each look-ahead branch is scored on.
    """

    name = 'ddas'

    def __init__(self, entries: Sequence[SpaceEntry], num_policies: Optional[int] = None,
                 ops_per_policy: Optional[int] = None, init_apply_prob: float = 0.35,
                 lr_alpha: Optional[float] = None, lr_beta: Optional[float] = None,
                 explore_ratio: float = 1.0, estimator: str = 'centred', horizon: int = 1,
                 sketch_dim: int = 4096, signal: str = 'lookahead', lookahead_steps: int = 25,
                 lookahead_val_batches: int = 4) -> None:
        self.entries = tuple(entries)
        self.credit = DelayedCredit(horizon)  # validates horizon
        self.horizon = self.credit.horizon
        self.sketch_dim = check_int('sketch_dim', sketch_dim, 1)
        self.sketch: Optional[GradientSketch] = None
        if signal not in SIGNALS:
            raise ValueError(f'signal must be one of {SIGNALS}, got {signal!r}')
        if signal == 'lookahead' and self.horizon > 1:
            raise ValueError(f"horizon={horizon} applies to signal='one_step' only; signal='lookahead' has "
                             'lookahead_steps')
        self.signal = signal
        defaults = SIGNAL_DEFAULTS[signal]
        num_policies = defaults['num_policies'] if num_policies is None else num_policies
        ops_per_policy = defaults['ops_per_policy'] if ops_per_policy is None else ops_per_policy
        lr_alpha = defaults['lr_alpha'] if lr_alpha is None else lr_alpha
        lr_beta = defaults['lr_beta'] if lr_beta is None else lr_beta
        self.lookahead = LookaheadRounds(lookahead_steps, lookahead_val_batches)  # validates both
        self.policy = DDASPolicy(num_entries=len(self.entries), num_policies=num_policies,
                                 ops_per_policy=ops_per_policy, init_tp=init_apply_prob, lr_alpha=lr_alpha,
                                 lr_beta=lr_beta, explore_ratio=explore_ratio, estimator=estimator,
                                 normalise_rewards=signal == 'one_step')
        self.num_policies = self.policy.num_policies
        self.num_grad_slots = self.num_policies + 2 if signal == 'one_step' else 1
        self.last_stats: Dict[str, float] = {}

    @property
    def round_steps(self) -> Optional[int]:
        return self.lookahead.steps if self.signal == 'lookahead' else None

    def _policy_batch(self, ctx, data: dict) -> dict:
        """``data`` with each image augmented with probability ``s`` by one policy drawn from ``p``."""
        entries = self.policy.draw(ctx.policy_gen)
        s = float(self.policy.apply_prob().detach())
        mask = (torch.rand(len(data['inputs']), generator=ctx.aug_gen) < s).tolist()
        if not any(mask):
            return data
        return select_images(data, ctx.augment(data, self.chain(entries.tolist())), mask)

    def _update(self, proposal, dot_aug, dot_clean) -> None:
        self.last_stats = self.policy.update(proposal, dot_aug, dot_clean)

    def step(self, ctx, data: dict) -> Dict[str, Tensor]:
        if self.signal == 'lookahead':
            return self.lookahead.step(ctx, data, lambda: self.policy.sample(self.num_policies, ctx.policy_gen),
                                       lambda: self._policy_batch(ctx, data), self.chain, self._update)
        k = self.num_policies
        proposal = self.policy.sample(k, ctx.policy_gen)
        log_vars = ctx.loss_grad(data, 0)
        for i, entries in enumerate(proposal.entries.tolist()):
            ctx.loss_grad(ctx.augment(data, self.chain(entries)), i + 1)
        ctx.model_step(self.policy.model_grad_coefficients(proposal), list(range(k + 1)))
        with ctx.phase('validation data'):
            val_batch = ctx.next_val_batch()
        ctx.loss_grad(val_batch, k + 1)
        if self.horizon == 1:
            with ctx.phase('inner products'):
                dots = ctx.buffers.dots(k + 1, list(range(k + 1))).double().cpu()
            with ctx.phase('policy update'):
                self.last_stats = self.policy.update(proposal, dots[1:], dots[0])
            return log_vars
        with ctx.phase('inner products'):
            rows = ctx.buffers.buffers
            if self.sketch is None:
                self.sketch = GradientSketch(rows.shape[1], self.sketch_dim, device=rows.device)
            ready = self.credit.step(proposal, self.sketch(rows[1:k + 1] - rows[0]), self.sketch(rows[k + 1]))
        if ready is not None:
            with ctx.phase('policy update'):
                self.last_stats = self.policy.update(ready['proposal'], ready['rewards'].cpu(), 0.0)
        return log_vars

    def log_items(self, top: int = 5) -> Tuple[Dict[str, float], Dict[str, str]]:
        return self.policy.log_items(self.name, [e.label for e in self.entries], self.last_stats.get('loss', 0.0), top)

    @property
    def trajectory(self) -> List[dict]:
        return self.policy.trajectory

    def snapshot(self, epoch: int) -> None:
        self.policy.snapshot(epoch)

    def export(self) -> Dict[str, Any]:
        return self.policy.export(self.name, self.entries)

    def state_dict(self) -> Dict[str, Any]:
        state = self.policy.state_dict()
        if self.horizon > 1:
            state['delayed_credit'] = self.credit.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if (self.horizon > 1) != ('delayed_credit' in state):
            raise ValueError(f'the state was saved with{"out" if self.horizon > 1 else ""} delayed credit; this '
                             f'searcher has horizon={self.horizon}')
        try:
            self.policy.load_state_dict(state)
        except ValueError as e:
            former = SIGNAL_DEFAULTS['one_step']['ops_per_policy']
            if state.get('ops_per_policy') == former != self.policy.ops_per_policy:
                raise ValueError(f"{e} (DDAS's default signal became 'lookahead' with single-entry policies: resume "
                                 "a search started with the former defaults with signal='one_step')") from None
            raise
        if self.horizon > 1:
            self.credit.load_state_dict(state['delayed_credit'])

    def plot_series(self) -> PlotSeries:
        return self.policy.plot_series([e.label for e in self.entries])

    def op_probs(self) -> Dict[str, float]:
        """Marginal probability of each op among the entries (summed over its magnitudes)."""
        return self.policy.op_probs([e.op for e in self.entries])
