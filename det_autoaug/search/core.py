"""The DDAS search state and its update, independent of any training framework (pure torch).

:class:`DDASPolicy` is the categorical policy both DDAS and DAAS learn
(:class:`~det_autoaug.search.categorical.CategoricalPolicy`: the state, draws, Adam step,
snapshots and checkpoint) plus DDAS's gradient-alignment update, the part defined here.

DDAS (Liu et al., ICCV 2021) learns ``alpha`` (logits over the N entries of a search space,
``p = softmax(alpha)``) and ``beta`` (``s = sigmoid(beta)``, the probability that an image is
augmented at all). One search step, as the caller drives it (see ``docs/architecture.md``):

1. ``proposal = policy.sample(K, generator)``: K policies, each an ordered tuple of
   ``ops_per_policy`` entries, with their probabilities and importance weights ``w_k``.
2. The caller computes ``g_0`` (clean copy of the batch) and ``g_k`` (copy k augmented with
   policy k), steps the model on ``g_hat = sum_i c_i g_i`` with
   ``c = policy.model_grad_coefficients(proposal)``, then computes ``g_V`` on a validation batch.
3. ``policy.update(proposal, dot_aug=<g_k, g_V>, dot_clean=<g_0, g_V>)``.

Why the update is right: with ``theta' = theta - eta * g_hat(alpha, beta)`` and ``g_0, g_k`` fixed,
``dL_val(theta')/dalpha = -eta * s * sum_tau dP(tau)/dalpha <g_tau, g_V>`` exactly; when every
policy is enumerated the policy gradient below times ``eta * n`` (``n = sum_k |r_k| + EPS``; the
normalisation makes the step size independent of the gradient scale) equals that derivative,
which the test suite checks to ~1e-12 in float64 by differentiating through one model step.
Under sampling the update is an estimate: :meth:`DDASPolicy.policy_gradient` says of what, for
the default ``estimator='centred'`` and the published ``'paper'`` one.

Deviations from the official CIFAR/ImageNet code, on purpose (REFERENCE.md section 1):

- importance weights ``w_k = (P/q) / sum_j (P/q)``, self-normalised over the proposal mixture
  ``q``, so ``explore_ratio < 1`` is not biased (note c); with the default ``explore_ratio = 1``
  (uniform proposals, as the official runs) they equal the official ``P / Z``;
- ``n`` has an epsilon, so all-zero rewards give a zero gradient instead of NaN;
- the schedule includes the final update when the caller snapshots after it (note d);
- by default ``alpha``'s rewards are centred on their weighted mean (note e): the published
  update lets an information-free reward with a negative mean collapse ``p`` onto one entry.
"""
from __future__ import annotations

from typing import Dict, Tuple, Union

import torch
from torch import Tensor

from ..policy.policy_file import schedule_index  # noqa: F401  (still importable from here)
from .categorical import STATE_VERSION, CategoricalPolicy, Proposal  # noqa: F401  (still importable from here)

EPS = 1e-12  # added to n = sum |r_k|: all-zero rewards then give a zero policy gradient, not NaN
ESTIMATORS = ('centred', 'paper')


class DDASPolicy(CategoricalPolicy):
    """DDAS's learned state: a categorical policy (``alpha`` (N,), ``beta``, each with its own Adam)
    with DDAS's update (:meth:`update`, :meth:`policy_gradient`, :meth:`model_grad_coefficients`).

    Args:
        num_entries, num_policies, ops_per_policy, init_tp, lr_alpha, lr_beta, explore_ratio, dtype,
            device: as :class:`~det_autoaug.search.categorical.CategoricalPolicy` (whose
            ``searcher_name`` is ``'ddas'`` here).
        estimator: ``'centred'`` (default) or ``'paper'``: how ``alpha``'s gradient uses the
            rewards (see :meth:`policy_gradient`). ``'paper'`` is the published update.
        normalise_rewards: divide the policy loss by ``n = sum_k |r_k| + EPS`` (default, as
            published: every update has the same size whatever the rewards' scale); ``False``
            keeps the rewards' scale, so Adam moves the policy less on steps whose rewards are
            small against earlier ones (the look-ahead signal,
            :mod:`det_autoaug.search.lookahead`).
    """

    def __init__(self, num_entries: int, num_policies: int = 3, ops_per_policy: int = 2,
                 init_tp: float = 0.35, lr_alpha: float = 0.005, lr_beta: float = 0.001,
                 explore_ratio: float = 1.0, estimator: str = 'centred', normalise_rewards: bool = True,
                 dtype: torch.dtype = torch.float32,
                 device: Union[str, torch.device, None] = None) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f'estimator must be one of {ESTIMATORS}, got {estimator!r}')
        if not isinstance(normalise_rewards, bool):
            raise ValueError(f'normalise_rewards must be True or False, got {normalise_rewards!r}')
        super().__init__(num_entries, num_policies=num_policies, ops_per_policy=ops_per_policy, init_tp=init_tp,
                         lr_alpha=lr_alpha, lr_beta=lr_beta, explore_ratio=explore_ratio, dtype=dtype, device=device,
                         searcher_name='ddas')
        self.estimator = estimator
        self.normalise_rewards = normalise_rewards

    def model_grad_coefficients(self, proposal: Proposal) -> Tensor:
        """Coefficients of ``(g_0, g_1, .., g_K)`` in ``g_hat = (1 - s) g_0 + s sum_k w_k g_k``.

        Returns:
            ``(K + 1,)`` constant tensor on this policy's device; they sum to 1.
        """
        s = self.apply_prob().detach()
        return torch.cat([(1 - s).reshape(1), s * proposal.weights.to(s)])

    def policy_gradient(self, proposal: Proposal, dot_aug: Tensor,
                        dot_clean: Union[float, Tensor]) -> Tuple[Tensor, Tensor]:
        """Gradients of the policy loss ``J`` w.r.t. ``alpha`` and ``beta``, without stepping.

        With ``r_k = dot_aug[k] - dot_clean``, ``n = sum_k |r_k| + EPS`` (1 with
        ``normalise_rewards=False``) and the importance weights
        ``w_k`` of the proposal (constants), ``n * grad`` is

        - ``beta``: ``-s (1 - s) sum_k w_k r_k`` (both estimators);
        - ``alpha``: ``-s sum_k w_k (r_k - b) d log P(tau_k) / d alpha`` with ``b = sum_j w_j r_j``
          (``estimator='centred'``) or ``b = 0`` (``'paper'``, the published update).

        What is exact and what is an estimate (``tests/test_search_core.py`` checks each claim):

        - *Enumerated* (every policy proposed once, so ``w = P``): for both estimators, ``eta * n *
          grad`` equals the derivative of the validation loss after one model SGD step on ``g_hat``
          (``sum_k dP(tau_k)/d alpha = 0``, so the baseline drops out).
        - *Sampled* (K i.i.d. proposals): ``'centred'`` is the derivative of the self-normalised
          estimate ``sum_k w_k r_k`` with its normaliser differentiated too, so a reward offset
          common to all proposals cancels exactly: rewards carrying no information about the
          policy give a zero expected step at every ``p``. Its expectation is ``(K - 1) / K`` times
          the exact gradient at uniform ``p`` and for on-policy proposals (``explore_ratio = 0``);
          with uniform proposals and a peaked ``p`` self-normalisation shrinks it further (an
          ``O(1/K)`` bias towards not moving). ``'paper'`` is unbiased at uniform ``p`` and
          on-policy, but with uniform proposals and a peaked ``p`` its expectation gains a term
          ``-(mean reward) * (sum_k w_k d log P_k)`` that pushes the most probable entries up
          whenever the mean reward is negative, informative or not (REFERENCE note e).

        Args:
            proposal: the proposal the model step used (sampled from this state, unchanged since).
            dot_aug: ``(K,)`` ``<g_k, g_V>``.
            dot_clean: ``<g_0, g_V>``.

        Returns:
            ``(grad_alpha (N,), grad_beta ())``, detached.
        """
        loss, _ = self._policy_loss(proposal, dot_aug, dot_clean)
        grad_alpha, grad_beta = torch.autograd.grad(loss, [self.alpha, self.beta])
        return grad_alpha.detach(), grad_beta.detach()

    def update(self, proposal: Proposal, dot_aug: Tensor, dot_clean: Union[float, Tensor]) -> Dict[str, float]:
        """Back-propagate ``J`` (see :meth:`policy_gradient`) into ``alpha``/``beta`` and step both Adams
        (:meth:`~det_autoaug.search.categorical.CategoricalPolicy.step`).

        All-zero rewards give zero gradients; on fresh Adam state that leaves the parameters
        unchanged (with momentum, Adam keeps moving as for any zero gradient).

        Returns:
            floats for logging: ``loss``, ``apply_prob`` (s before the step), ``entropy`` of ``p``
            (nats), ``reward_mean/min/max``, ``reward_norm`` (n), ``top{i}_entry``/``top{i}_prob``
            for the three most probable entries (after the step).
        """
        loss, rewards = self._policy_loss(proposal, dot_aug, dot_clean)
        s_before = float(self.apply_prob().detach())
        grad_alpha, grad_beta = torch.autograd.grad(loss, [self.alpha, self.beta])
        self.step(grad_alpha, grad_beta)
        with torch.no_grad():
            p = self.probs()
            entropy = float(-(p * torch.log_softmax(self.alpha, dim=0)).sum())
            top = torch.topk(p, min(3, self.num_entries))
        log = {'loss': float(loss.detach()), 'apply_prob': s_before, 'entropy': entropy,
               'reward_mean': float(rewards.mean()), 'reward_min': float(rewards.min()),
               'reward_max': float(rewards.max()), 'reward_norm': float(rewards.abs().sum() + EPS)}
        for i, (prob, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
            log[f'top{i}_entry'] = float(idx)
            log[f'top{i}_prob'] = prob
        return log

    def _policy_loss(self, proposal: Proposal, dot_aug: Tensor,
                     dot_clean: Union[float, Tensor]) -> Tuple[Tensor, Tensor]:
        k = proposal.num_policies
        dot_aug = torch.as_tensor(dot_aug).detach().to(self.device, self.alpha.dtype)
        if dot_aug.shape != (k,):
            raise ValueError(f'dot_aug must have shape ({k},) (one <g_k, g_V> per policy), got {tuple(dot_aug.shape)}')
        dot_clean = torch.as_tensor(dot_clean).detach().to(self.device, self.alpha.dtype)
        if dot_clean.numel() != 1:
            raise ValueError(f'dot_clean must be a scalar <g_0, g_V>, got shape {tuple(dot_clean.shape)}')
        rewards = dot_aug - dot_clean.reshape(())
        if not bool(torch.isfinite(rewards).all()):
            raise ValueError(f'rewards must be finite, got {rewards.tolist()} (non-finite gradients?)')
        norm = rewards.abs().sum() + EPS if self.normalise_rewards else rewards.new_ones(())
        weights = proposal.weights.to(rewards)
        # alpha: sum_k w_k (r_k - b) d log P(tau_k); b = 0 is the published update, b = sum_j w_j r_j
        # the centred one (the derivative of the self-normalised estimate, normaliser included)
        baseline = (weights * rewards).sum() if self.estimator == 'centred' else rewards.new_zeros(())
        log_prob = self.log_prob(proposal.entries)
        s = self.apply_prob()
        alpha_term = (weights * (rewards - baseline) * log_prob).sum() * s.detach()
        # beta: s * sum_k w_k r_k, the reward whose gradient is exact when enumerated
        beta_term = s * (weights * rewards).sum()
        loss = -(alpha_term + beta_term) / norm
        return loss, rewards
