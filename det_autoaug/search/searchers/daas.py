"""DAAS augmentation search (Wang et al. 2021, arXiv 2109.15273): policy gradient on the
validation loss, with DDAS's parameterisation.

State: the categorical policy DDAS learns too,
:class:`~det_autoaug.search.categorical.CategoricalPolicy` (held, not inherited): ``alpha``
(logits over the space's entries, ``p = softmax(alpha)``) and ``beta`` (``s = sigmoid(beta)``,
probability that an image is augmented), each with its own Adam (betas (0.5, 0.999)); its
export, trajectory and checkpoint format are DDAS's with ``searcher = 'daas'``. This module
computes the reward and the REINFORCE gradients, which the policy's Adam step applies.

The default reward is the look-ahead (``reward='lookahead'``, below); the one-step rewards come
first here because the paper's is one of them. One step with a one-step reward (REINFORCE with a
moving-average baseline):

1. draw a policy ``tau`` (``ops_per_policy`` entries from ``p``, with replacement) and, per image,
   ``a_i ~ Bernoulli(s)``;
2. ``reward='paired'`` (default): draw one validation batch ``V`` and forward it at the current
   weights (no gradient): ``L_before``;
3. the model trains one step on the batch whose images with ``a_i = 1`` are augmented with ``tau``;
4. forward ``V`` again at the new weights: ``L_after``; reward ``r = L_before - L_after``, the
   improvement the step made on ``V`` (averaged over DDP ranks);
5. advantage ``A = r - b`` with ``b`` the moving average of past rewards (``b`` starts at the
   first reward, so the first step does not move the policy); then ``b <- m b + (1 - m) r``;
6. policy loss ``-A * ([any_i a_i] log P(tau) + mean_i log Bernoulli(a_i; s))``, Adam on ``alpha``
   and ``beta``.

``reward='lookahead'``: the look-ahead rounds DDAS has too (:mod:`det_autoaug.search.lookahead`):
every ``lookahead_steps`` steps, K policies drawn from ``p`` (on-policy, ``lookahead_policies``, >= 2)
are each trained on for L steps from the same copied state, beside a clean branch, and rewarded
with ``r_k = L_clean - L_k``, the validation loss they save against no augmentation after L
steps. The main model trains every step with one policy drawn from ``p`` per batch (images
augmented with probability ``s``), as in the one-step modes. Update per round, REINFORCE with a
leave-one-out baseline (unbiased: ``b_k`` does not depend on ``tau_k``):
``J = s * (1/K) sum_k (r_k - b_k) log P(tau_k) + s * mean_k r_k``, ``b_k`` the mean of the other
K - 1 rewards; ``alpha`` gets the first term (its expectation is ``s * grad E_p[r]``), ``beta`` the
second, the derivative of ``s * E_p[r]`` (the value of augmenting a share ``s`` of the images,
linear in ``s``) estimated by the proposals' mean. No moving baseline and no per-image Bernoulli
credit in this mode: the branches augment every image. Why: the one-step rewards (paired or not)
see the next step only, and on the planted-harm setups they did not move the harmful entries
beyond chance (docs/results.md); the look-ahead reward sees L steps (REFERENCE note e). Its
update differs from DDAS's look-ahead in the proposals (DDAS: uniform, importance-weighted;
here: from ``p``) and the baseline (DDAS: the weighted mean, itself included).

Why paired: the old reward, ``r = -L_val`` on a fresh validation batch after the step
(``reward='val_loss'``, kept selectable), mostly measures which batch was drawn: an outside
test measured its spread at 0.44 against 0.02-0.07 between policies. Forwarding the same batch
before and after the step cancels the batch's own difficulty; what remains is, to first order,
``lr * <g_train, g_V>``, DDAS's reward without the per-policy gradient copies. Both forwards of
``V`` replay the same torch random numbers (dropout masks, torch-drawn samplers; not numpy's),
and the first one leaves the model's buffers (batch-norm statistics) as they were, so the two
losses differ only through the step. With a momentum optimiser the step also carries earlier
batches' gradients; their share of ``r`` does not depend on this step's ``tau`` and only adds
variance. Cost per step: one forward/backward on the training batch and two validation
forwards (3 model passes; ``'val_loss'``: 2). On the toy of ``tests/test_daas_reward.py`` (validation
batches of varying difficulty) one step's reward spreads over validation batches with a std of
0.005-0.027 (paired) against 0.11-0.15 (``'val_loss'``), the policy effect being about 0.05; a
150-step search there (10 seeds) ends with 0.13 of ``p`` on the harmful entries, 0.34 with
``'val_loss'``.

The baseline is kept: the paired reward is centred on the mean improvement per step (positive,
shrinking as training converges), not on zero, and REINFORCE's variance grows with that offset.
On the toy above its effect was within the noise (FlipLR 0.59 +- 0.14 with it, 0.55 +- 0.14 without).

Credit: ``log P(tau)`` enters the loss only when at least one image was augmented; otherwise the
reward does not depend on ``tau``, its term has expectation zero and only adds variance, so
``alpha`` gets no gradient and no Adam step that step (the estimate stays unbiased; with
``s = 0.35`` and 2 images per batch that is 42% of the steps). The Bernoulli term is credited
every step with every image's decision, unweighted: not augmenting is a decision of ``s`` too,
and weighting it by anything drawn with it would bias ``beta``'s estimate.

The paper searches the augmentation jointly with the network architecture: that joint search
is :class:`~det_autoaug.search.searchers.daas_joint.DAASJointSearcher` (``searcher='daas_joint'``,
classification), a DAAS searcher plus an architecture component; it uses this step's sampling,
validation batches and policy update.

Differences to the paper: the reward (above; the paper's is the validation loss after the step).
The per-image Bernoulli log-probabilities are averaged, not summed, so ``beta``'s step does not
grow with the batch size. The policy is DDAS's two-level ``(p, s)`` parameterisation. The joint
searcher's architecture space is this project's own (a chain of single-path choice blocks in a
small CNN with GDAS-style Gumbel sampling, :mod:`det_autoaug.cls.nas`), not a reproduction of the
paper's space, network or schedule; its numbers (CIFAR-10 97.91%, ImageNet 76.6% top-1) have
not been reproduced here.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...ops.spaces import SpaceEntry
from ..categorical import CategoricalPolicy, Proposal
from ..lookahead import LookaheadRounds
from .base import LogItems, PlotSeries, Searcher, check_int, check_positive, select_images

#: 2: the state records its ``reward``; a version-1 state was searched with ``'val_loss'``.
STATE_VERSION = 2
REWARDS = ('lookahead', 'paired', 'val_loss')
#: The defaults of the arguments that depend on the reward. ``'lookahead'`` (the default): the
#: setting that moved the planted harmful entries beyond the shuffled-reward null on both
#: planted-harm setups (docs/results.md, "Planted harm"), as DDAS's look-ahead does; one Adam step
#: per round needs the larger learning rates. The one-step rewards: DDAS's published CIFAR settings.
REWARD_DEFAULTS = {
    'lookahead': dict(ops_per_policy=1, lr_alpha=0.2, lr_beta=0.04),
    'paired': dict(ops_per_policy=2, lr_alpha=0.005, lr_beta=0.001),
    'val_loss': dict(ops_per_policy=2, lr_alpha=0.005, lr_beta=0.001),
}


class ValidationBatch:
    """One validation batch whose loss can be taken more than once under the same torch random
    numbers (those of the moment it was drawn), without moving the global generators."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        with ctx.phase('validation data'):
            self.batch = ctx.next_val_batch()
        self._cuda = ctx.device if ctx.device.type == 'cuda' else None
        self._rng = self._rng_state()

    def _rng_state(self) -> Tuple[Tensor, Optional[Tensor]]:
        return torch.get_rng_state(), None if self._cuda is None else torch.cuda.get_rng_state(self._cuda)

    def _set_rng_state(self, state: Tuple[Tensor, Optional[Tensor]]) -> None:
        torch.set_rng_state(state[0])
        if self._cuda is not None:
            torch.cuda.set_rng_state(state[1], self._cuda)

    def loss(self, keep_buffers: bool = False) -> Tensor:
        """The batch's loss at the current weights (graph as the caller's grad mode decides).

        Args:
            keep_buffers: restore the model's buffers (batch-norm statistics) after the forward.
        """
        saved = self._rng_state()
        kept = [b.detach().clone() for b in self.ctx.model.buffers()] if keep_buffers else None
        self._set_rng_state(self._rng)
        try:
            with self.ctx.phase('model passes'):
                loss, _ = self.ctx.forward_loss(self.batch)
        finally:
            self._set_rng_state(saved)
            if kept is not None:
                with torch.no_grad():
                    for b, k in zip(self.ctx.model.buffers(), kept):
                        b.copy_(k)
        return loss


class DAASSearcher(Searcher):
    """DAAS: REINFORCE on the validation loss that training with a policy saves.

    ``ops_per_policy``, ``lr_alpha`` and ``lr_beta`` default (None) to the reward's values in
    :data:`REWARD_DEFAULTS`: single-entry policies and 0.2 / 0.04 with the default look-ahead reward,
    pairs of entries and 0.005 / 0.001 with the one-step rewards.

    Args:
        entries: the search-space entries.
        ops_per_policy: entries per policy.
        init_apply_prob: initial s.
        lr_alpha: Adam learning rate of alpha.
        lr_beta: Adam learning rate of beta.
        baseline_decay: m, the moving-average factor of the baseline of the one-step rewards, in [0, 1).
        reward: ``'lookahead'`` (default; module doc: the validation loss L-step branches save against
            a clean branch, one policy update per round of L steps), ``'paired'`` (``L_before -
            L_after`` on one validation batch, 3 model passes per step; the default until
            2026-12-04) or ``'val_loss'`` (``-L_after`` on a fresh batch, 2 passes; noisy).
        lookahead_policies: K, policies drawn per look-ahead round (>= 2, for the leave-one-out
            baseline; ``reward='lookahead'`` only: the one-step rewards draw one policy per step).
        lookahead_steps: L, training steps per look-ahead round (``reward='lookahead'``).
        lookahead_val_batches: V, validation batches each look-ahead branch is scored on.
    """

    name = 'daas'
    num_grad_slots = 1

    def __init__(self, entries: Sequence[SpaceEntry], ops_per_policy: Optional[int] = None,
                 init_apply_prob: float = 0.35, lr_alpha: Optional[float] = None, lr_beta: Optional[float] = None,
                 baseline_decay: float = 0.9, reward: str = 'lookahead', lookahead_policies: int = 6,
                 lookahead_steps: int = 25, lookahead_val_batches: int = 4) -> None:
        if isinstance(baseline_decay, bool) or not isinstance(baseline_decay, (int, float)) \
                or not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f'baseline_decay must be in [0, 1), got {baseline_decay!r}')
        if reward not in REWARDS:
            raise ValueError(f'reward={reward!r} is unknown: expected one of {REWARDS}')
        defaults = REWARD_DEFAULTS[reward]
        ops_per_policy = defaults['ops_per_policy'] if ops_per_policy is None else ops_per_policy
        lr_alpha = defaults['lr_alpha'] if lr_alpha is None else lr_alpha
        lr_beta = defaults['lr_beta'] if lr_beta is None else lr_beta
        check_positive('lr_alpha', lr_alpha)
        check_positive('lr_beta', lr_beta)
        check_int('lookahead_policies', lookahead_policies, 2)  # the leave-one-out baseline needs two
        # policies proposed per step (one-step rewards) or per round (look-ahead)
        num_policies = lookahead_policies if reward == 'lookahead' else 1
        self.entries = tuple(entries)
        self.policy = CategoricalPolicy(len(self.entries), num_policies=num_policies, ops_per_policy=ops_per_policy,
                                        init_tp=init_apply_prob, lr_alpha=lr_alpha, lr_beta=lr_beta,
                                        explore_ratio=0.0, searcher_name='daas')
        self.num_policies = num_policies
        self.lookahead = LookaheadRounds(lookahead_steps, lookahead_val_batches)  # validates both
        self.baseline_decay = float(baseline_decay)
        self.reward = reward
        self.baseline: Optional[float] = None
        self.last_stats: Dict[str, float] = {}

    def step(self, ctx, data: dict) -> Dict[str, Tensor]:
        if self.reward == 'lookahead':
            return self._lookahead_step(ctx, data)
        entries, applied, batch = self.sample_batch(ctx, data)
        val, loss_before = self.validation_before_step(ctx)
        log_vars = ctx.loss_grad(batch, 0)
        ctx.model_step([1.0], [0])
        val = val or ValidationBatch(ctx)
        with torch.no_grad():
            loss_after = val.loss()
        self.update_policy(ctx, loss_after, entries, applied, loss_before)
        return log_vars

    def _lookahead_step(self, ctx, data: dict) -> Dict[str, Tensor]:
        def update(proposal: Proposal, neg_loss_aug: Tensor, neg_loss_clean: Tensor) -> None:
            self.update_lookahead(proposal, neg_loss_aug - neg_loss_clean)
        return self.lookahead.step(ctx, data, lambda: self.policy.sample(self.num_policies, ctx.policy_gen),
                                   lambda: self.sample_batch(ctx, data)[2],
                                   self.chain, update)

    @property
    def round_steps(self) -> Optional[int]:
        return self.lookahead.steps if self.reward == 'lookahead' else None

    def update_lookahead(self, proposal: Proposal, rewards: Tensor) -> None:
        """REINFORCE step of a look-ahead round (module doc).

        Args:
            proposal: the round's K policies, drawn from ``p`` when the round started.
            rewards: ``(K,)`` ``r_k = L_clean - L_k``.
        """
        policy = self.policy
        k = proposal.num_policies
        rewards = torch.as_tensor(rewards).detach().to(policy.device, policy.alpha.dtype)
        if rewards.shape != (k,) or not bool(torch.isfinite(rewards).all()):
            raise ValueError(f'rewards must be {k} finite values (one per policy), got {rewards.tolist()}')
        baseline = (rewards.sum() - rewards) / (k - 1)  # leave-one-out: b_k does not depend on tau_k
        s = policy.apply_prob()
        alpha_term = ((rewards - baseline) * policy.log_prob(proposal.entries.to(policy.device))).mean() * s.detach()
        loss = -(alpha_term + s * rewards.mean())
        grad_alpha, grad_beta = torch.autograd.grad(loss, [policy.alpha, policy.beta])
        policy.step(grad_alpha, grad_beta)
        self.last_stats = {'loss': float(loss.detach()), 'reward': float(rewards.mean()),
                           'reward_min': float(rewards.min()), 'reward_max': float(rewards.max())}

    def sample_batch(self, ctx, data: dict) -> Tuple[Tensor, Tensor, dict]:
        """Draw ``tau`` and the per-image ``a_i`` (policy generator); returns them and the training batch."""
        entries = self.policy.draw(ctx.policy_gen)
        s = float(self.policy.apply_prob().detach())
        applied = torch.rand(len(data['inputs']), generator=ctx.policy_gen, dtype=torch.float64) < s
        chain = self.chain(entries.tolist())
        batch = select_images(data, ctx.augment(data, chain), applied.tolist()) if bool(applied.any()) else data
        return entries, applied, batch

    def validation_before_step(self, ctx) -> Tuple[Optional[ValidationBatch], Optional[Tensor]]:
        """``'paired'``: the step's validation batch and its loss at the current weights (no graph;
        the model's buffers are left as they were). ``'val_loss'``: ``(None, None)``, the batch is
        drawn after the step."""
        if self.reward != 'paired':
            return None, None
        val = ValidationBatch(ctx)
        with torch.no_grad():
            return val, val.loss(keep_buffers=True)

    def update_policy(self, ctx, val_loss: Tensor, entries: Tensor, applied: Tensor,
                      val_loss_before: Optional[Tensor] = None) -> None:
        """REINFORCE step on alpha and beta.

        Args:
            ctx: the search context.
            val_loss: the validation loss after the model step.
            entries: the policy's entries, ``(ops_per_policy,)``.
            applied: per image, whether it was augmented, ``(B,)`` bool.
            val_loss_before: the same batch's loss before the step (``reward='paired'`` only).

        The reward, ``val_loss_before - val_loss`` or ``-val_loss``, is averaged over DDP ranks.
        """
        if (val_loss_before is None) != (self.reward == 'val_loss'):
            raise ValueError(f'reward={self.reward!r} needs {"no " if self.reward == "val_loss" else ""}'
                             'val_loss_before')
        policy = self.policy
        losses = [val_loss] if val_loss_before is None else [val_loss, val_loss_before]
        losses = ctx.all_reduce_mean([torch.stack([x.detach().double().reshape(()) for x in losses])])[0].tolist()
        reward = -losses[0] if val_loss_before is None else losses[1] - losses[0]
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        touched = bool(applied.any())
        with ctx.phase('policy update'):
            a = applied.to(policy.device, policy.beta.dtype)
            log_prob = (a * torch.nn.functional.logsigmoid(policy.beta)
                        + (1 - a) * torch.nn.functional.logsigmoid(-policy.beta)).mean()
            if touched:
                log_prob = log_prob + policy.log_prob(entries.to(policy.device))
            loss = -advantage * log_prob
            grad_alpha, grad_beta = torch.autograd.grad(loss, [policy.alpha, policy.beta], allow_unused=True)
            # untouched: no alpha step at all, Adam's momentum would move alpha on a sample without information
            policy.step(grad_alpha if touched else None, grad_beta)
        self.last_stats = {'loss': float(loss.detach()), 'reward': reward, 'advantage': advantage,
                           'val_loss': losses[0], 'alpha_credited': float(touched)}
        if val_loss_before is not None:
            self.last_stats['val_loss_before'] = losses[1]

    def log_items(self, top: int = 5, name: Optional[str] = None) -> LogItems:
        """The policy's log items and the reward and baseline, keyed ``train/<name>_...`` (``name``:
        this searcher's by default; the joint search logs under its own)."""
        name = name or self.name
        scalars, infos = self.policy.log_items(name, [e.label for e in self.entries],
                                               self.last_stats.get('loss', 0.0), top)
        scalars[f'train/{name}_reward'] = float(self.last_stats.get('reward', 0.0))
        scalars[f'train/{name}_baseline'] = float(self.baseline or 0.0)
        return scalars, infos

    @property
    def trajectory(self) -> List[Dict[str, Any]]:
        return self.policy.trajectory

    def snapshot(self, epoch: int) -> None:
        self.policy.snapshot(epoch)

    def export(self) -> Dict[str, Any]:
        return self.policy.export(self.name, self.entries)

    def plot_series(self) -> PlotSeries:
        return self.policy.plot_series([e.label for e in self.entries])

    def op_probs(self) -> Dict[str, float]:
        """Marginal probability of each op among the entries (summed over its magnitudes)."""
        return self.policy.op_probs([e.op for e in self.entries])

    def state_dict(self) -> Dict[str, Any]:
        return {'daas_version': STATE_VERSION, 'reward': self.reward, 'policy': self.policy.state_dict(),
                'baseline': self.baseline}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        version = state.get('daas_version')
        if version not in (1, STATE_VERSION):
            raise ValueError(f'state is not a DAAS searcher state (daas_version {version!r}, '
                             f'expected {STATE_VERSION} or 1)')
        saved = state['reward'] if version == STATE_VERSION else 'val_loss'
        if saved != self.reward:
            raise ValueError(f'the DAAS state (daas_version {version}) was searched with reward={saved!r}, this '
                             f'searcher has reward={self.reward!r}: its baseline is on another scale; resume with '
                             f"searcher_cfg=dict(reward={saved!r})")
        self.policy.load_state_dict(state['policy'])
        self.baseline = None if state['baseline'] is None else float(state['baseline'])
