"""The categorical augmentation policy that DDAS and DAAS both learn, without either's reward.

State: ``alpha``, logits over the N entries of a search space (``p = softmax(alpha)``), and
``beta``, the logit of ``s = sigmoid(beta)``, the probability that an image is augmented at all;
each has its own Adam (betas (0.5, 0.999), DDAS's). A *policy* is an ordered tuple of
``ops_per_policy`` entries drawn from ``p`` with replacement, ``P(tau) = prod_o p[tau_o]``.

:class:`CategoricalPolicy` holds what both searchers share: the state and its optimisers, the
draws (one policy, or K proposals with importance weights), the log-probabilities, one Adam step
from given gradients, the trajectory of snapshots, the policy-file fields, the logging and plot
series, and the checkpoint state. Each searcher computes its own gradients and hands them to
:meth:`CategoricalPolicy.step`: DDAS's gradient-alignment update is
:class:`~det_autoaug.search.core.DDASPolicy` (this class plus that update), DAAS's REINFORCE
update is in :mod:`det_autoaug.search.searchers.daas`.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..policy.policy_file import schedule_index

STATE_VERSION = 1


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
    def from_entries(cls, policy: 'CategoricalPolicy',
                     entries: Union[Tensor, Sequence[Sequence[int]]]) -> 'Proposal':
        """Evaluate given policies under ``policy`` (for enumeration, or to replay a draw).

        Args:
            policy: the state whose ``p`` and ``explore_ratio`` define the probabilities.
            entries: ``(K, ops_per_policy)`` entry indices in ``[0, N)``.
        """
        return policy.evaluate(entries)


class CategoricalPolicy:
    """``alpha`` (N,) and ``beta`` (scalar), each with its own Adam; draws, snapshots, checkpoint.

    Args:
        num_entries: N, the number of search-space entries, >= 1.
        num_policies: K, policies proposed per step by default (DDAS official: 3), >= 1.
        ops_per_policy: entries per policy, drawn with replacement (official: 2), >= 1.
        init_tp: initial ``s = sigmoid(beta)``, in (0, 1) (official: 0.35).
        lr_alpha: Adam learning rate of ``alpha`` (CIFAR 0.005, ImageNet 0.003), > 0.
        lr_beta: Adam learning rate of ``beta`` (0.001), > 0.
        explore_ratio: probability that a proposed policy is drawn uniformly instead of from
            ``p``, in [0, 1]; 1 (default) gives uniform proposals, as in the official runs.
        dtype: floating dtype of ``alpha``/``beta`` (float32; float64 for exactness tests).
        device: where ``alpha``/``beta`` live (CPU by default; see :meth:`to`).
        searcher_name: the name its checkpoint state and policy-file fields carry (``'ddas'``).
    """

    def __init__(self, num_entries: int, num_policies: int = 3, ops_per_policy: int = 2,
                 init_tp: float = 0.35, lr_alpha: float = 0.005, lr_beta: float = 0.001,
                 explore_ratio: float = 1.0, dtype: torch.dtype = torch.float32,
                 device: Union[str, torch.device, None] = None, searcher_name: str = 'ddas') -> None:
        check_count('num_entries', num_entries, 1)
        check_count('num_policies', num_policies, 1)
        check_count('ops_per_policy', ops_per_policy, 1)
        if not 0.0 < init_tp < 1.0:
            raise ValueError(f'init_tp must be in (0, 1) (a probability, sigmoid(beta)), got {init_tp!r}')
        for name, lr in (('lr_alpha', lr_alpha), ('lr_beta', lr_beta)):
            if not lr > 0:
                raise ValueError(f'{name} must be > 0, got {lr!r}')
        if not 0.0 <= explore_ratio <= 1.0:
            raise ValueError(f'explore_ratio must be in [0, 1], got {explore_ratio!r}')
        if not dtype.is_floating_point:
            raise ValueError(f'dtype must be a floating dtype, got {dtype!r}')
        self.searcher_name = searcher_name
        self.num_entries = int(num_entries)  # plain ints: numpy scalars would break weights_only loads
        self.num_policies = int(num_policies)
        self.ops_per_policy = int(ops_per_policy)
        self.init_tp = float(init_tp)
        self.explore_ratio = float(explore_ratio)
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

    def log_prob(self, entries: Tensor) -> Tensor:
        """``log P(tau)`` of policies ``(..., ops_per_policy)``, shape ``(...)``, with gradient to ``alpha``."""
        return torch.log_softmax(self.alpha, dim=0)[entries].sum(dim=-1)

    def to(self, device: Union[str, torch.device, None] = None,
           dtype: Optional[torch.dtype] = None) -> 'CategoricalPolicy':
        """Move ``alpha``, ``beta`` and the Adam states in place (same Parameter objects); returns self."""
        for param, opt in ((self.alpha, self.opt_alpha), (self.beta, self.opt_beta)):
            opt_state = opt.state_dict()
            param.data = param.data.to(device=device, dtype=dtype)
            opt.load_state_dict(opt_state)  # re-casts moment buffers to the parameter's device/dtype
        return self

    # -- draws ---------------------------------------------------------------------------------
    def draw(self, generator: Optional[torch.Generator] = None) -> Tensor:
        """One policy from ``p``: ``(ops_per_policy,)`` long entry indices on the CPU (float64 draw)."""
        p = self.probs().detach().to('cpu', torch.float64)
        return torch.multinomial(p, self.ops_per_policy, replacement=True, generator=generator)

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
        check_count('num_policies', k, 1)
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
            prob = self.log_prob(entries).exp()
            uniform = float(self.num_entries) ** -self.ops_per_policy
            q = self.explore_ratio * uniform + (1.0 - self.explore_ratio) * prob
            ratio = _safe_ratio(prob, q)
            weights = ratio / ratio.sum()
        return Proposal(entries=entries, prob=prob, proposal_prob=q, weights=weights)

    # -- the update ----------------------------------------------------------------------------
    def step(self, grad_alpha: Optional[Tensor], grad_beta: Tensor) -> None:
        """One Adam step of ``beta`` and, unless ``grad_alpha`` is None, of ``alpha`` (None: no step
        at all, so Adam's momentum does not move ``alpha``); counts one update."""
        self.opt_alpha.zero_grad(set_to_none=True)
        self.opt_beta.zero_grad(set_to_none=True)
        if grad_alpha is not None:
            self.alpha.grad = grad_alpha.detach()
            self.opt_alpha.step()
        self.beta.grad = grad_beta.detach()
        self.opt_beta.step()
        self.num_updates += 1

    # -- trajectory, outputs, checkpoint -------------------------------------------------------
    def snapshot(self, epoch: int) -> None:
        """Append ``{'epoch', 'probs', 'apply_prob'}`` (the policy-file trajectory item) for ``epoch``.

        The final-training schedule uses the snapshots in order, so the caller must snapshot
        after the last update too (REFERENCE note d): either at the end of every search epoch, or
        at the start of each epoch plus once after the final update. A second snapshot with the
        same ``epoch`` as the last one replaces it (a hook may snapshot at epoch end and run end).
        """
        check_count('epoch', epoch, 0)
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

    def export(self, searcher: Optional[str] = None, entries: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
        """The policy file's ``searcher`` (default :attr:`searcher_name`), ``entries`` (when given),
        current ``probs``/``apply_prob``, ``ops_per_policy`` and the trajectory."""
        out: Dict[str, Any] = {'searcher': searcher or self.searcher_name}
        if entries is not None:
            out['entries'] = entries
        out.update(probs=self.probs().detach().cpu().double().tolist(), apply_prob=float(self.apply_prob().detach()),
                   ops_per_policy=self.ops_per_policy, trajectory=self._trajectory_copy(self.trajectory))
        return out

    def log_items(self, name: str, labels: Sequence[str], policy_loss: float,
                  top: int = 5) -> Tuple[Dict[str, float], Dict[str, str]]:
        """A searcher's log items: ``train/<name>_apply_prob``, ``_entropy`` (nats), ``_policy_loss``
        and ``_top{i}_prob`` scalars; infos ``<name>_top{i}`` = ``'<label>=<prob>'`` of the ``top``
        most probable entries."""
        probs = self.probs().detach()
        entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum())
        scalars = {f'train/{name}_apply_prob': float(self.apply_prob().detach()), f'train/{name}_entropy': entropy,
                   f'train/{name}_policy_loss': float(policy_loss)}
        infos = {}
        for rank, idx in enumerate(probs.argsort(descending=True)[:top].tolist()):
            infos[f'{name}_top{rank + 1}'] = f'{labels[idx]}={float(probs[idx]):.4f}'
            scalars[f'train/{name}_top{rank + 1}_prob'] = float(probs[idx])
        return scalars, infos

    def plot_series(self, labels: Sequence[str]) -> Tuple[List[int], List[str], List[List[float]], List[float]]:
        """``(epochs, labels, probs per snapshot, apply_prob per snapshot)`` of the trajectory."""
        traj = self.trajectory
        return ([t['epoch'] for t in traj], list(labels), [t['probs'] for t in traj], [t['apply_prob'] for t in traj])

    def op_probs(self, ops: Sequence[str]) -> Dict[str, float]:
        """Marginal probability of each op, ``ops`` naming every entry's op (summed over its entries)."""
        out: Dict[str, float] = {}
        for op, p in zip(ops, self.probs().detach().tolist()):
            out[op] = out.get(op, 0.0) + p
        return out

    def state_dict(self) -> Dict[str, Any]:
        """Everything a resumed search needs except the caller's generator state.

        Holds only tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)``
        reads it.
        """
        return {'version': STATE_VERSION, 'searcher': self.searcher_name,
                'num_entries': self.num_entries, 'ops_per_policy': self.ops_per_policy,
                'alpha': self.alpha.detach().clone(), 'beta': self.beta.detach().clone(),
                'opt_alpha': self.opt_alpha.state_dict(), 'opt_beta': self.opt_beta.state_dict(),
                'trajectory': self._trajectory_copy(self.trajectory), 'num_updates': self.num_updates}

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
        self.trajectory = self._trajectory_copy(state['trajectory'])
        self.num_updates = int(state['num_updates'])

    @staticmethod
    def _trajectory_copy(trajectory: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
        return [dict(item, probs=list(item['probs'])) for item in trajectory]


def _safe_ratio(prob: Tensor, q: Tensor) -> Tensor:
    """``prob / q``, 0 where ``q`` is 0 (a policy the sampler cannot draw carries no weight)."""
    return torch.where(q > 0, prob / q.clamp_min(torch.finfo(q.dtype).tiny), torch.zeros_like(prob))


def check_count(name: str, value: Any, minimum: int) -> None:
    """``ValueError`` naming ``value`` unless it is an integer (numpy's too, not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')
