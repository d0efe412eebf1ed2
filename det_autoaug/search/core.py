"""The DDAS search state and its update, independent of any training framework (pure torch).

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

import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..policy.policy_file import schedule_index

EPS = 1e-12  # added to n = sum |r_k|: all-zero rewards then give a zero policy gradient, not NaN
STATE_VERSION = 1
ESTIMATORS = ('centred', 'paper')


@dataclass(frozen=True, eq=False)  # tensors: compare fields explicitly
class Proposal:
    """K policies proposed for one search step, with their probabilities (constants).

    Attributes:
        entries: ``(K, ops_per_policy)`` long, the entry indices of each policy, applied in order.
        prob: ``(K,)`` ``P(tau_k) = prod_o p[o]`` under the current ``p``.
        proposal_prob: ``(K,)`` ``q(tau_k) = explore_ratio * N**-ops_per_policy
            + (1 - explore_ratio) * P(tau_k)``, the probability that the sampler drew ``tau_k``.
        weights: ``(K,)`` self-normalised importance weights ``(P/q) / sum_j (P/q)``; they sum to 1.
    """

    entries: Tensor
    prob: Tensor
    proposal_prob: Tensor
    weights: Tensor

    @property
    def num_policies(self) -> int:
        return int(self.entries.shape[0])

    @classmethod
    def from_entries(cls, policy: 'DDASPolicy', entries: Union[Tensor, Sequence[Sequence[int]]]) -> 'Proposal':
        """Evaluate given policies under ``policy`` (for enumeration, or to replay a draw).

        Args:
            policy: the DDAS state whose ``p`` and ``explore_ratio`` define the probabilities.
            entries: ``(K, ops_per_policy)`` entry indices in ``[0, N)``.
        """
        return policy.evaluate(entries)


class DDASPolicy:
    """DDAS learned state: ``alpha`` (N,) and ``beta`` (scalar), each with its own Adam.

    Args:
        num_entries: N, the number of search-space entries, >= 1.
        num_policies: K, policies proposed per step by default (official: 3), >= 1.
        ops_per_policy: entries per policy, drawn with replacement (official: 2), >= 1.
        init_tp: initial ``s = sigmoid(beta)``, in (0, 1) (official: 0.35).
        lr_alpha: Adam learning rate of ``alpha`` (CIFAR 0.005, ImageNet 0.003), > 0.
        lr_beta: Adam learning rate of ``beta`` (0.001), > 0.
        explore_ratio: probability that a proposed policy is drawn uniformly instead of from
            ``p``, in [0, 1]; 1 (default) gives uniform proposals, as in the official runs.
        estimator: ``'centred'`` (default) or ``'paper'``: how ``alpha``'s gradient uses the
            rewards (see :meth:`policy_gradient`). ``'paper'`` is the published update.
        normalise_rewards: divide the policy loss by ``n = sum_k |r_k| + EPS`` (default, as
            published: every update has the same size whatever the rewards' scale); ``False``
            keeps the rewards' scale, so Adam moves the policy less on steps whose rewards are
            small against earlier ones (the look-ahead signal,
            :mod:`det_autoaug.search.lookahead`).
        dtype: floating dtype of ``alpha``/``beta`` (float32; float64 for exactness tests).
        device: where ``alpha``/``beta`` live (CPU by default; see :meth:`to`).
    """

    searcher_name = 'ddas'

    def __init__(self, num_entries: int, num_policies: int = 3, ops_per_policy: int = 2,
                 init_tp: float = 0.35, lr_alpha: float = 0.005, lr_beta: float = 0.001,
                 explore_ratio: float = 1.0, estimator: str = 'centred', normalise_rewards: bool = True,
                 dtype: torch.dtype = torch.float32,
                 device: Union[str, torch.device, None] = None) -> None:
        _check_int('num_entries', num_entries, 1)
        _check_int('num_policies', num_policies, 1)
        _check_int('ops_per_policy', ops_per_policy, 1)
        if not 0.0 < init_tp < 1.0:
            raise ValueError(f'init_tp must be in (0, 1) (a probability, sigmoid(beta)), got {init_tp!r}')
        for name, lr in (('lr_alpha', lr_alpha), ('lr_beta', lr_beta)):
            if not lr > 0:
                raise ValueError(f'{name} must be > 0, got {lr!r}')
        if not 0.0 <= explore_ratio <= 1.0:
            raise ValueError(f'explore_ratio must be in [0, 1], got {explore_ratio!r}')
        if estimator not in ESTIMATORS:
            raise ValueError(f'estimator must be one of {ESTIMATORS}, got {estimator!r}')
        if not isinstance(normalise_rewards, bool):
            raise ValueError(f'normalise_rewards must be True or False, got {normalise_rewards!r}')
        if not dtype.is_floating_point:
            raise ValueError(f'dtype must be a floating dtype, got {dtype!r}')
        self.num_entries = int(num_entries)  # plain ints: numpy scalars would break weights_only loads
        self.num_policies = int(num_policies)
        self.ops_per_policy = int(ops_per_policy)
        self.init_tp = float(init_tp)
        self.explore_ratio = float(explore_ratio)
        self.estimator = estimator
        self.normalise_rewards = normalise_rewards
        self.alpha = torch.nn.Parameter(torch.zeros(num_entries, dtype=dtype, device=device))
        self.beta = torch.nn.Parameter(torch.tensor(math.log(init_tp / (1 - init_tp)), dtype=dtype, device=device))
        self.opt_alpha = torch.optim.Adam([self.alpha], lr=lr_alpha, betas=(0.5, 0.999))
        self.opt_beta = torch.optim.Adam([self.beta], lr=lr_beta, betas=(0.5, 0.999))
        self.trajectory: List[Dict[str, Any]] = []
        self.num_updates = 0

    # -- state ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.alpha.device

    def probs(self) -> Tensor:
        """``p = softmax(alpha)``, shape ``(N,)``, with gradient to ``alpha``."""
        return torch.softmax(self.alpha, dim=0)

    def apply_prob(self) -> Tensor:
        """``s = sigmoid(beta)``, a 0-dim tensor with gradient to ``beta``."""
        return torch.sigmoid(self.beta)

    def to(self, device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None) -> 'DDASPolicy':
        """Move ``alpha``, ``beta`` and the Adam states in place (same Parameter objects); returns self."""
        for param, opt in ((self.alpha, self.opt_alpha), (self.beta, self.opt_beta)):
            opt_state = opt.state_dict()
            param.data = param.data.to(device=device, dtype=dtype)
            opt.load_state_dict(opt_state)  # re-casts moment buffers to the parameter's device/dtype
        return self

    # -- proposals -----------------------------------------------------------------------------
    def sample(self, num_policies: Optional[int] = None, generator: Optional[torch.Generator] = None) -> Proposal:
        """Draw K policies: each uniformly with probability ``explore_ratio``, else from ``p``.

        Draws happen on the generator's device (CPU when ``generator`` is None, which uses the
        global RNG; pass a generator for a reproducible search) and always consume the same
        random numbers whatever ``explore_ratio``, so a seeded run replays exactly.

        Args:
            num_policies: K, >= 1 (default: the constructor's ``num_policies``).
            generator: source of randomness. In distributed runs every rank must draw the same
                proposal (seed the generators identically).

        Returns:
            a :class:`Proposal` on this policy's device.
        """
        k = self.num_policies if num_policies is None else num_policies
        _check_int('num_policies', k, 1)
        k = int(k)
        sample_device = generator.device if generator is not None else torch.device('cpu')
        m = self.ops_per_policy
        p = self.probs().detach().to(sample_device, torch.float64)
        explore = torch.rand(k, generator=generator, device=sample_device) < self.explore_ratio
        uniform = torch.randint(self.num_entries, (k, m), generator=generator, device=sample_device)
        from_p = torch.multinomial(p.expand(k, -1), m, replacement=True, generator=generator)
        entries = torch.where(explore[:, None], uniform, from_p)
        return self.evaluate(entries)

    def evaluate(self, entries: Union[Tensor, Sequence[Sequence[int]]]) -> Proposal:
        """Probabilities and importance weights of given policies (see :class:`Proposal`).

        Args:
            entries: ``(K, ops_per_policy)`` entry indices in ``[0, N)``, K >= 1.
        """
        entries = torch.as_tensor(entries, dtype=torch.long).to(self.device)
        if entries.dim() != 2 or entries.shape[0] < 1 or entries.shape[1] != self.ops_per_policy:
            raise ValueError(f'entries must have shape (K >= 1, {self.ops_per_policy}), got {tuple(entries.shape)}')
        bad = ((entries < 0) | (entries >= self.num_entries)).any(dim=1)
        if bool(bad.any()):
            raise ValueError(f'entries must lie in [0, {self.num_entries}), got {entries[bad][:4].tolist()}')
        with torch.no_grad():
            prob = self._policy_prob(entries)
            uniform = float(self.num_entries) ** -self.ops_per_policy
            q = self.explore_ratio * uniform + (1.0 - self.explore_ratio) * prob
            ratio = _safe_ratio(prob, q)
            weights = ratio / ratio.sum()
        return Proposal(entries=entries, prob=prob, proposal_prob=q, weights=weights)

    def _policy_prob(self, entries: Tensor) -> Tensor:
        """``P_alpha(tau_k)``, shape ``(K,)``, with gradient to ``alpha`` when grad mode is on."""
        return torch.log_softmax(self.alpha, dim=0)[entries].sum(dim=1).exp()

    # -- one search step -----------------------------------------------------------------------
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
        """Back-propagate ``J`` (see :meth:`policy_gradient`) into ``alpha``/``beta`` and step both Adams.

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
        self.opt_alpha.zero_grad(set_to_none=True)
        self.opt_beta.zero_grad(set_to_none=True)
        self.alpha.grad, self.beta.grad = grad_alpha.detach(), grad_beta.detach()
        self.opt_alpha.step()
        self.opt_beta.step()
        self.num_updates += 1
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
        log_prob = torch.log_softmax(self.alpha, dim=0)[proposal.entries].sum(dim=1)
        s = self.apply_prob()
        alpha_term = (weights * (rewards - baseline) * log_prob).sum() * s.detach()
        # beta: s * sum_k w_k r_k, the reward whose gradient is exact when enumerated
        beta_term = s * (weights * rewards).sum()
        loss = -(alpha_term + beta_term) / norm
        return loss, rewards

    # -- trajectory, export, checkpoint --------------------------------------------------------
    def snapshot(self, epoch: int) -> None:
        """Append ``{'epoch', 'probs', 'apply_prob'}`` (the policy-file trajectory item) for ``epoch``.

        The final-training schedule uses the snapshots in order, so the caller must snapshot
        after the last update too (REFERENCE note d): either at the end of every search epoch, or
        at the start of each epoch plus once after the final update. A second snapshot with the
        same ``epoch`` as the last one replaces it (a hook may snapshot at epoch end and run end).
        """
        _check_int('epoch', epoch, 0)
        if self.trajectory and epoch < self.trajectory[-1]['epoch']:
            raise ValueError(f'epoch must be >= the last snapshot epoch {self.trajectory[-1]["epoch"]}, got {epoch!r}')
        item = {'epoch': int(epoch), 'probs': self.probs().detach().cpu().double().tolist(),
                'apply_prob': float(self.apply_prob().detach())}
        if self.trajectory and self.trajectory[-1]['epoch'] == epoch:
            self.trajectory[-1] = item
        else:
            self.trajectory.append(item)

    def schedule(self, epoch: int, train_epochs: int) -> Tuple[List[float], float]:
        """``(probs, apply_prob)`` that final-training epoch ``epoch`` uses (see :func:`schedule_index`)."""
        item = self.trajectory[schedule_index(epoch, train_epochs, len(self.trajectory))]
        return list(item['probs']), float(item['apply_prob'])

    def export(self) -> Dict[str, Any]:
        """The searcher's part of a policy file: current ``probs``/``apply_prob`` and the trajectory."""
        return {'searcher': self.searcher_name, 'probs': self.probs().detach().cpu().double().tolist(),
                'apply_prob': float(self.apply_prob().detach()), 'ops_per_policy': self.ops_per_policy,
                'trajectory': [dict(item, probs=list(item['probs'])) for item in self.trajectory]}

    def state_dict(self) -> Dict[str, Any]:
        """Everything a resumed search needs except the caller's generator state.

        Holds only tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)``
        reads it.
        """
        return {'version': STATE_VERSION, 'searcher': self.searcher_name,
                'num_entries': self.num_entries, 'ops_per_policy': self.ops_per_policy,
                'alpha': self.alpha.detach().clone(), 'beta': self.beta.detach().clone(),
                'opt_alpha': self.opt_alpha.state_dict(), 'opt_beta': self.opt_beta.state_dict(),
                'trajectory': [dict(item, probs=list(item['probs'])) for item in self.trajectory],
                'num_updates': self.num_updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output in place (``alpha``/``beta`` keep their identity).

        Raises:
            ValueError: the state is from another searcher, version, space size or ops_per_policy.
        """
        expected = {'version': STATE_VERSION, 'searcher': self.searcher_name,
                    'num_entries': self.num_entries, 'ops_per_policy': self.ops_per_policy}
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(f'state {key!r} is {state.get(key)!r}, expected {value!r} for this policy')
        with torch.no_grad():
            self.alpha.copy_(state['alpha'])
            self.beta.copy_(state['beta'])
        self.opt_alpha.load_state_dict(state['opt_alpha'])
        self.opt_beta.load_state_dict(state['opt_beta'])
        self.trajectory = [dict(item, probs=list(item['probs'])) for item in state['trajectory']]
        self.num_updates = int(state['num_updates'])


def _safe_ratio(prob: Tensor, q: Tensor) -> Tensor:
    """``prob / q``, 0 where ``q`` is 0 (a policy the sampler cannot draw carries no weight)."""
    return torch.where(q > 0, prob / q.clamp_min(torch.finfo(q.dtype).tiny), torch.zeros_like(prob))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')
