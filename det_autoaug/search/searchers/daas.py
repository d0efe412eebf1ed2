"""DAAS augmentation search (Wang et al. 2021, arXiv 2109.15273): policy gradient on the
validation loss, with DDAS's parameterisation.

State: ``alpha`` (logits over the space's entries, ``p = softmax(alpha)``) and ``beta``
(``s = sigmoid(beta)``, probability that an image is augmented), each with its own Adam
(betas (0.5, 0.999)), exactly as :class:`~det_autoaug.search.core.DDASPolicy` (reused, so the
export, trajectory and checkpoint format are DDAS's with ``searcher = 'daas'``).

One step (REINFORCE with a moving-average baseline):

1. draw a policy ``tau`` (``ops_per_policy`` entries from ``p``, with replacement) and, per image,
   ``a_i ~ Bernoulli(s)``;
2. the model trains one step on the batch whose images with ``a_i = 1`` are augmented with ``tau``;
3. reward ``r = -L_val`` on one validation batch after that step (averaged over DDP ranks);
4. advantage ``A = r - b`` with ``b`` the moving average of past rewards (``b`` starts at the
   first reward, so the first step does not move the policy); then ``b <- m b + (1 - m) r``;
5. policy loss ``-A * (log P(tau) + mean_i log Bernoulli(a_i; s))``, Adam on ``alpha`` and ``beta``.

The paper searches the augmentation jointly with the network architecture: that joint search
is :class:`~det_autoaug.search.searchers.daas_joint.DAASJointSearcher` (``searcher='daas_joint'``,
classification), which reuses this step's sampling and policy update.

Differences to the paper: the per-image Bernoulli log-probabilities are averaged, not summed,
so ``beta``'s step does not grow with the batch size. The policy is DDAS's two-level ``(p, s)``
parameterisation. The joint searcher's architecture space is this project's own (a chain of
single-path choice blocks in a small CNN with GDAS-style Gumbel sampling,
:mod:`det_autoaug.cls.nas`), not a reproduction of the paper's space, network or schedule; its
numbers (CIFAR-10 97.91%, ImageNet 76.6% top-1) have not been reproduced here.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...ops.spaces import SpaceEntry
from ..core import DDASPolicy
from .base import check_positive, select_images
from .ddas import DDASSearcher

STATE_VERSION = 1


class DAASPolicy(DDASPolicy):
    """DDAS's alpha/beta state under the searcher name ``'daas'``."""

    searcher_name = 'daas'


class DAASSearcher(DDASSearcher):
    """DAAS: REINFORCE on ``-L_val`` after one training step.

    Args:
        entries: the search-space entries.
        ops_per_policy: entries per policy.
        init_apply_prob: initial s.
        lr_alpha: Adam learning rate of alpha.
        lr_beta: Adam learning rate of beta.
        baseline_decay: m, the moving-average factor of the baseline, in [0, 1).
    """

    name = 'daas'
    num_grad_slots = 1

    def __init__(self, entries: Sequence[SpaceEntry], ops_per_policy: int = 2, init_apply_prob: float = 0.35,
                 lr_alpha: float = 0.005, lr_beta: float = 0.001, baseline_decay: float = 0.9) -> None:
        if isinstance(baseline_decay, bool) or not isinstance(baseline_decay, (int, float)) \
                or not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f'baseline_decay must be in [0, 1), got {baseline_decay!r}')
        check_positive('lr_alpha', lr_alpha)
        check_positive('lr_beta', lr_beta)
        self.entries = tuple(entries)
        self.policy = DAASPolicy(num_entries=len(self.entries), num_policies=1, ops_per_policy=ops_per_policy,
                                 init_tp=init_apply_prob, lr_alpha=lr_alpha, lr_beta=lr_beta, explore_ratio=0.0)
        self.num_policies = 1
        self.baseline_decay = float(baseline_decay)
        self.baseline: Optional[float] = None
        self.last_stats: Dict[str, float] = {}

    def step(self, ctx, data: dict, optim_wrapper: Any = None) -> Dict[str, Tensor]:
        entries, applied, batch = self.sample_batch(ctx, data)
        log_vars = ctx.loss_grad(batch, 0)
        ctx.model_step([1.0], [0])
        with ctx.phase('validation data'):
            val_batch = ctx.next_val_batch()
        with ctx.phase('model passes'), torch.no_grad():
            val_loss, _ = ctx.forward_loss(val_batch)
        self.update_policy(ctx, val_loss, entries, applied)
        return log_vars

    def sample_batch(self, ctx, data: dict) -> Tuple[Tensor, Tensor, dict]:
        """Draw ``tau`` and the per-image ``a_i`` (policy generator); returns them and the training batch."""
        policy = self.policy
        with torch.no_grad():
            p = policy.probs().detach().double().cpu()
            s = float(policy.apply_prob().detach())
        entries = torch.multinomial(p, policy.ops_per_policy, replacement=True, generator=ctx.policy_gen)
        applied = torch.rand(len(data['inputs']), generator=ctx.policy_gen, dtype=torch.float64) < s
        chain = [(self.entries[e].op, self.entries[e].magnitude) for e in entries.tolist()]
        batch = select_images(data, ctx.augment(data, chain), applied.tolist()) if bool(applied.any()) else data
        return entries, applied, batch

    def update_policy(self, ctx, val_loss: Tensor, entries: Tensor, applied: Tensor) -> None:
        """REINFORCE step on alpha and beta with the reward ``-val_loss`` (averaged over ranks)."""
        policy = self.policy
        val_loss = ctx.all_reduce_mean([val_loss.detach().double().reshape(1)])[0]
        reward = -float(val_loss)
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        with ctx.phase('policy update'):
            log_p = torch.log_softmax(policy.alpha, 0)[entries.to(policy.device)].sum()
            a = applied.to(policy.device, policy.beta.dtype)
            log_bern = (a * torch.nn.functional.logsigmoid(policy.beta)
                        + (1 - a) * torch.nn.functional.logsigmoid(-policy.beta)).mean()
            loss = -advantage * (log_p + log_bern)
            grad_alpha, grad_beta = torch.autograd.grad(loss, [policy.alpha, policy.beta])
            policy.opt_alpha.zero_grad(set_to_none=True)
            policy.opt_beta.zero_grad(set_to_none=True)
            policy.alpha.grad, policy.beta.grad = grad_alpha.detach(), grad_beta.detach()
            policy.opt_alpha.step()
            policy.opt_beta.step()
            policy.num_updates += 1
        self.last_stats = {'loss': float(loss.detach()), 'reward': reward, 'advantage': advantage}

    def log_items(self, top: int = 5):
        scalars, infos = super().log_items(top)
        scalars[f'train/{self.name}_reward'] = float(self.last_stats.get('reward', 0.0))
        scalars[f'train/{self.name}_baseline'] = float(self.baseline or 0.0)
        return scalars, infos

    def state_dict(self) -> Dict[str, Any]:
        return {'daas_version': STATE_VERSION, 'policy': self.policy.state_dict(), 'baseline': self.baseline}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get('daas_version') != STATE_VERSION:
            raise ValueError(f'state is not a DAAS searcher state (daas_version {state.get("daas_version")!r}, '
                             f'expected {STATE_VERSION})')
        self.policy.load_state_dict(state['policy'])
        self.baseline = None if state['baseline'] is None else float(state['baseline'])
