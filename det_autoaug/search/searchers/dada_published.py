"""DADA as published (Li et al., ECCV 2020) and as its official code runs it (VDIGPKU/DADA,
``search_relax/``): the searcher registered as ``'dada'``.

Search space: the sub-policies are the unordered pairs ``{o_i, o_j}``, ``i < j``, of the distinct
ops of a space (``S = n (n - 1) / 2``; the official 15 ops give 105), applied in the space's op
order, first op first. Learned state, in the official parameterisation:

- ``weights`` (S,): sub-policy logits, the distribution is their softmax (equal at start);
- ``probabilities`` (S, 2): the probability of each (sub-policy, slot), a plain parameter kept in
  ``[0, 1]`` (0.5 at start);
- ``magnitudes`` (S, 2): each (sub-policy, slot)'s magnitude as a fraction ``u`` of its op's range
  (``m = lo + u (hi - lo)``), kept in ``[0, 1]``; it starts at the magnitude the space gives that
  op (mean over its entries).

One step on a training batch ``x`` (model weights ``theta``):

1. sub-policy ``k = argmax(log softmax(weights) + Gumbel)`` and a decision ``b[s, j] = [logit(p[s, j])
   + Logistic > 0]`` for every (sub-policy, slot), noise from the policy generator; the ops of
   ``k`` with ``b = 1`` augment the whole batch (one draw per batch, as the official data loader);
2. ``g = grad L_train(theta, A(x))`` (buffer slot 0);
3. the unrolled model ``theta' = theta - delta``, ``delta`` the displacement the model's torch SGD
   optimiser would apply for ``g``: ``lr (mu buf + g + wd theta)`` with its momentum buffer ``buf``,
   momentum ``mu`` and weight decay ``wd`` per parameter group (the official
   ``Architect._compute_unrolled_model``; dampening and Nesterov as torch applies them);
   ``g_V = grad L_val(theta')`` on a validation batch (slot 1);
4. ``R = fd_radius / |g_V|``, ``L+- = L_train(theta +- R g_V, A(x))``, ``d = (L+ - L-) / (2 R)``
   (the official ``_hessian_vector_product``, r = 0.01);
5. the hyper-gradient, as the official code forms it (``dalpha = -(grad+ - grad-) / (2 R)``, no
   factor ``eta``): magnitudes ``-(dL+/dm - dL-/dm) / (2 R)`` (through the op kernels);
   weights and probabilities ``-d grad log P(k, b)``, the score of the sub-policy and of every
   sampled decision (``score_unused=False``: only the drawn sub-policy's two);
6. Adam (``lr`` 5e-3, betas (0.5, 0.999), ``weight_decay`` 0: the paper's scripts) on weights,
   probabilities and magnitudes, both then clamped to ``[0, 1]``; the model steps on ``g``.

What deliberately differs from the official code, and why:

- **No RELAX control variate.** The official ``relax()`` runs at ``theta + R g_V`` and at
  ``theta - R g_V`` with the same sample and the same ``QFunc``, so the control variate terms
  ``c(z~)``, ``grad c(z)`` and ``grad c(z~)`` are equal in both and cancel in the difference: what
  reaches the probabilities and weights is the score term ``-d grad log P`` alone, and the
  ``QFunc``'s own update (a difference of two variance gradients) feeds back into nothing. This
  searcher computes that update directly: the same step, without the network's cost or the
  rounding noise of subtracting two large equal terms (hence no temperature either).
- **Magnitude gradients through the op kernels** (``ctx.augment_differentiable``: autograd where
  the op is smooth, straight-through per op otherwise). The official one treats every augmented
  image as ``x + m``, so every op's magnitude receives the same gradient, the sum of the loss's
  pixel gradients.
- **Magnitude start**: the official unit interval maps onto signed ranges with random mirroring,
  where its start 0.5 is the identity for 9 of its 15 ops; in this project's op table 0.5 of a
  range has no such meaning, so each slot starts where the space puts its op.
- **Probabilities at 0 and 1 can come back**: the score uses ``p`` clamped to ``[1e-6, 1 - 1e-6]``
  with the gradient passed straight through the clamp; the official clamp has zero gradient
  there, which makes 0 and 1 absorbing. Stored values are clamped to ``[0, 1]`` after each step.
- **The weights' score is not multiplied by 2S**: the official ``log_prob`` broadcasts the
  sub-policy's log-probability over the (S, 2) grid; Adam removes a constant factor.
- **Other optimisers**: the unrolled step needs the optimiser's update rule; for a model
  optimiser that is not ``torch.optim.SGD`` it falls back to ``theta - eta g`` (``eta = ctx.lr()``,
  no momentum, no weight decay) and warns once.
- **DDP**: each rank computes ``d`` and the magnitude gradient on its own images; both are
  averaged, so every rank holds the same state.

Like the official code, the unrolled step ignores gradient clipping, the validation pass on the
unrolled model leaves the model's buffers (batch-norm statistics) as they were (the official runs
it on a copy), and the two perturbed passes run in training mode on the model itself (they update
batch-norm statistics). The model steps on ``g`` (official: a fresh
forward and backward at the same weights on the same augmented batch, the same gradient).
:class:`~.dada.DADASharedSearcher` (``'dada_shared'``) is the earlier variant with one
probability and one magnitude per op shared by all sub-policies.
"""
from __future__ import annotations

import itertools
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...ops.spaces import SpaceEntry
from ...ops.table import get_op
from ...policy.step import ChainStep
from .base import Searcher, SubPolicyOutputs, check_int, check_positive, distinct_ops

STATE_VERSION = 2  # version 1: the shared-parameter DADA, saved under the name 'dada' before it became 'dada_shared'
EPS = 1e-6  # the official clamp of probabilities and uniforms


def sgd_displacement(optimizer: torch.optim.Optimizer, params: Sequence[Tensor],
                     grads: Sequence[Tensor]) -> List[Tensor]:
    """What ``optimizer.step()`` (torch SGD) would subtract from each parameter for ``grads``.

    ``lr * (mu buf + (1 - dampening) (g + wd theta))`` with the momentum buffer, ``lr * (g + wd theta)``
    without one (first step or no momentum), Nesterov as torch applies it; ``maximize`` flips ``g``.
    The optimiser and its state are not modified.

    Raises:
        ValueError: a parameter that is not in the optimiser.
    """
    groups = {id(p): group for group in optimizer.param_groups for p in group['params']}
    out = []
    for p, g in zip(params, grads):
        group = groups.get(id(p))
        if group is None:
            raise ValueError(f'a parameter of shape {tuple(p.shape)} is not in the model optimiser; expected every '
                             'trainable parameter in it')
        d = -g if group.get('maximize', False) else g
        if group['weight_decay'] != 0:
            d = d + group['weight_decay'] * p.detach()
        mu = group['momentum']
        if mu != 0:
            buf = optimizer.state.get(p, {}).get('momentum_buffer')
            buf = d if buf is None else mu * buf + (1 - group['dampening']) * d
            d = d + mu * buf if group['nesterov'] else buf
        out.append(group['lr'] * d)
    return out


class DADASearcher(SubPolicyOutputs, Searcher):
    """DADA as published: unordered pairs, per-(sub-policy, slot) probabilities and magnitudes.

    Args:
        entries: the search-space entries (their distinct ops are DADA's ops).
        init_prob: initial probability of every (sub-policy, slot), in (0, 1) (official: 0.5).
        lr: Adam learning rate (official: 5e-3).
        weight_decay: Adam weight decay of the DADA parameters (official scripts: 0).
        fd_radius: ``R |g_V|`` of the finite difference (official: 0.01).
        score_unused: score every sampled (sub-policy, slot) decision, also those of the sub-policies
            not drawn (official; zero-mean noise on their probabilities), or only the drawn one's.
        top_k: sub-policies exported to the policy file.
        baseline_decay: the REINFORCE reward ``d`` is centred on its moving average with this factor
            (as DAAS does), in [0, 1); ``None``: the raw ``d``, as published. The official update has
            no baseline: where ``d`` has a nonzero mean, every drawn sub-policy moves with that mean's
            sign whatever it did, and information-free ``d`` (mean -0.5, sd 3) moves the sub-policy weights beyond
            the random-walk band (``max(p) N`` 2.0-2.2 against 1.95 over 1,000 steps,
            tests/test_search_null.py); centred, they stay inside it. A constant baseline leaves the
            expected update unchanged (the score has mean 0 under the sampler), so the default keeps
            the estimator and lowers its variance.
    """

    name = 'dada'
    num_grad_slots = 2

    def __init__(self, entries: Sequence[SpaceEntry], init_prob: float = 0.5, lr: float = 5e-3,
                 weight_decay: float = 0.0, fd_radius: float = 0.01, score_unused: bool = True,
                 top_k: int = 25, baseline_decay: Optional[float] = 0.9) -> None:
        if baseline_decay is not None and (isinstance(baseline_decay, bool) or not isinstance(
                baseline_decay, (int, float)) or not 0.0 <= baseline_decay < 1.0):
            raise ValueError(f'baseline_decay must be in [0, 1) or None (no baseline, as published), '
                             f'got {baseline_decay!r}')
        self.baseline_decay = None if baseline_decay is None else float(baseline_decay)
        self.baseline: Optional[float] = None
        if isinstance(init_prob, bool) or not isinstance(init_prob, (int, float)) or not 0.0 < init_prob < 1.0:
            raise ValueError(f'init_prob must be in (0, 1), got {init_prob!r}')
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ValueError(f'weight_decay must be a number >= 0, got {weight_decay!r}')
        if not isinstance(score_unused, bool):
            raise ValueError(f'score_unused must be True or False, got {score_unused!r}')
        self.lr = check_positive('lr', lr)
        self.fd_radius = check_positive('fd_radius', fd_radius)
        self.top_k = check_int('top_k', top_k, 1)
        self.score_unused = score_unused
        self.entries = tuple(entries)
        ops = distinct_ops(self.entries)
        if len(ops) < 2:
            raise ValueError(f'DADA needs at least 2 distinct ops in the space, got {[op for op, _ in ops]}')
        self.op_names = [op for op, _ in ops]
        self.ranges = torch.tensor([get_op(op).magnitude_range for op in self.op_names], dtype=torch.float64)
        self.pairs: List[Tuple[int, int]] = list(itertools.combinations(range(len(ops)), 2))
        self.slot_ops = torch.tensor(self.pairs)  # (S, 2) op index of every (sub-policy, slot)
        lo, hi = self.ranges[:, 0], self.ranges[:, 1]
        unit = ((torch.tensor([m for _, m in ops], dtype=torch.float64) - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
        self.weights = torch.nn.Parameter(torch.full((len(self.pairs),), 1e-3))
        self.probabilities = torch.nn.Parameter(torch.full((len(self.pairs), 2), float(init_prob)))
        self.magnitudes = torch.nn.Parameter(unit[self.slot_ops].float())
        self.opt = torch.optim.Adam([self.weights, self.probabilities, self.magnitudes], lr=self.lr,
                                    betas=(0.5, 0.999), weight_decay=float(weight_decay))
        self.trajectory: List[Dict[str, Any]] = []
        self.num_updates = 0
        self.last_stats: Dict[str, float] = {}
        self._warned_optimizer = False

    # -- distributions ---------------------------------------------------------------------------
    def subpolicy_probs(self) -> Tensor:
        return torch.softmax(self.weights.detach().double(), 0)

    def slot_probs(self) -> Tensor:
        """``(S, 2)`` probabilities of the (sub-policy, slot)s, in ``[0, 1]`` (float64, no gradient)."""
        return self.probabilities.detach().double().clamp(0, 1)

    def magnitude_values(self) -> Tensor:
        """``(S, 2)`` magnitudes in the ops' own units (float64, no gradient)."""
        r = self.ranges[self.slot_ops]
        return r[..., 0] + self.magnitudes.detach().double().clamp(0, 1) * (r[..., 1] - r[..., 0])

    def _magnitude(self, s: int, j: int) -> Tensor:
        lo, hi = (float(v) for v in self.ranges[self.pairs[s][j]])
        return lo + self.magnitudes[s, j] * (hi - lo)

    def _op_mass(self, values: Tensor) -> Tensor:
        """``(n,)`` sums of the (S, 2) ``values`` over the (sub-policy, slot)s of each op."""
        return torch.zeros(len(self.op_names), dtype=values.dtype).index_add_(0, self.slot_ops.reshape(-1),
                                                                               values.reshape(-1))

    def op_probs(self) -> Dict[str, float]:
        """Each op's probability of being applied to an image: ``sum_s w_s sum_j [op(s, j) = op] p[s, j]``."""
        mass = self._op_mass(self.subpolicy_probs()[:, None] * self.slot_probs())
        return dict(zip(self.op_names, mass.tolist()))

    def marginal_op_probs(self) -> Tensor:
        """``(n,)`` each op's share of the applied ops (:meth:`op_probs` normalised; uniform when none applies)."""
        mass = self._op_mass(self.subpolicy_probs()[:, None] * self.slot_probs())
        total = float(mass.sum())
        return mass / total if total > 0 else torch.full_like(mass, 1.0 / len(mass))

    def apply_prob(self) -> float:
        """Probability that an image is changed at all: ``sum_s w_s (1 - (1 - p[s, 0])(1 - p[s, 1]))``."""
        p = self.slot_probs()
        return float((self.subpolicy_probs() * (1 - (1 - p[:, 0]) * (1 - p[:, 1]))).sum())

    # -- the step ----------------------------------------------------------------------------------
    def _unrolled_displacement(self, ctx, grads: List[Tensor]) -> List[Tensor]:
        """``delta`` of ``theta' = theta - delta`` (see the module docstring, step 3), from the
        context's model optimiser."""
        optimizer = getattr(ctx, 'optimizer', None)
        if isinstance(optimizer, torch.optim.SGD):
            return sgd_displacement(optimizer, ctx.params, grads)
        if not self._warned_optimizer:
            warnings.warn(f'DADA: the model optimiser is {type(optimizer).__name__}, not torch.optim.SGD: the unrolled '
                          'step falls back to theta - lr * g (no momentum, no weight decay)', stacklevel=3)
            self._warned_optimizer = True
        eta = ctx.lr()
        return [eta * g for g in grads]

    def _unrolled_validation_gradient(self, ctx) -> None:
        """``g_V = grad L_val(theta - delta)`` into buffer slot 1, ``g`` read from slot 0 (step 3)."""
        scale = ctx.loss_scale()
        with ctx.phase('gradient buffers'):
            rows, offset, grads = ctx.buffers.buffers, 0, []
            for param in ctx.params:
                grads.append(rows[0, offset:offset + param.numel()].view_as(param).to(param.dtype) / scale)
                offset += param.numel()
            offset = 0
            for param, delta in zip(ctx.params, self._unrolled_displacement(ctx, grads)):
                rows[1, offset:offset + param.numel()].copy_(delta.reshape(-1))
                offset += param.numel()
        with ctx.phase('validation data'):
            val_batch = ctx.next_val_batch()
        model_buffers = [buf.detach().clone() for buf in ctx.model.buffers()]
        with ctx.perturbed(1, -1.0):
            ctx.loss_grad(val_batch, 1)
        with torch.no_grad():  # the official unrolled model is a copy: its pass leaves batch-norm statistics alone
            for buf, saved in zip(ctx.model.buffers(), model_buffers):
                buf.copy_(saved)

    def step(self, ctx, data: dict) -> Dict[str, Tensor]:
        """One DADA step on the training batch ``data`` (module docstring, steps 1-6); the model's log variables."""
        gen = ctx.policy_gen
        num = len(self.pairs)
        u_sub = torch.rand(num, generator=gen).clamp(EPS, 1 - EPS)
        u_b = torch.rand(num, 2, generator=gen).clamp(EPS, 1 - EPS)
        k = int(torch.argmax(torch.log_softmax(self.weights.detach(), 0) - torch.log(-torch.log(u_sub))))
        p = self.probabilities
        p_score = p + (p.clamp(EPS, 1 - EPS) - p).detach()  # straight through the clamp: 0 and 1 not absorbing
        logits = torch.log(p_score.detach()) - torch.log1p(-p_score.detach())
        b = (logits + torch.log(u_b) - torch.log1p(-u_b) > 0).to(p.dtype)
        seed = ctx.draw_seed()

        def steps(with_grad: bool) -> List[ChainStep]:
            out = []
            for j in range(2):
                if b[k, j] > 0.5:  # an op not applied has no effect and no gradient: skip it
                    m = self._magnitude(k, j)
                    out.append(ChainStep(self.op_names[self.pairs[k][j]], m if with_grad else m.detach()))
            return out

        augmented = ctx.augment_differentiable(data, steps(False), seed)
        log_vars = ctx.loss_grad(augmented, 0)
        scale = ctx.loss_scale()
        self._unrolled_validation_gradient(ctx)
        radius = self.fd_radius / max(float(ctx.buffers.buffers[1].double().norm()) / scale, 1e-12)
        losses, mag_grads = [], []
        for sign in (1.0, -1.0):
            with ctx.perturbed(1, sign * radius / scale), ctx.phase('model passes'):
                loss, _ = ctx.forward_loss(ctx.augment_differentiable(data, steps(True), seed))
                grad = None
                if loss.requires_grad and b[k].sum() > 0:
                    grad, = torch.autograd.grad(loss, [self.magnitudes], allow_unused=True)
            losses.append(float(loss.detach()))
            mag_grads.append(torch.zeros_like(self.magnitudes) if grad is None else grad.detach())
        d = torch.tensor([(losses[0] - losses[1]) / (2 * radius)], dtype=torch.float64)
        d, grad_mag = ctx.all_reduce_mean([d, -(mag_grads[0] - mag_grads[1]) / (2 * radius)])
        d = float(d)

        with ctx.phase('policy update'):
            self.update_policy(k, b, p_score, d, grad_mag)
        ctx.model_step([1.0], [0])
        self.last_stats = {'hypergrad_f': d, 'subpolicy': float(k), 'applied': float(b[k].sum())}
        return log_vars

    def update_policy(self, k: int, b: Tensor, p_score: Tensor, d: float, grad_mag: Tensor) -> None:
        """Adam step on the sub-policy weights, slot probabilities and magnitudes from one step's
        estimates: ``d``, the finite-difference derivative of the validation loss along the sampled
        sub-policy ``k`` (its REINFORCE reward), and ``grad_mag``, the magnitudes' gradient; ``b`` the
        slots' Bernoulli draws, ``p_score`` the probabilities they were drawn with. ``d`` is
        centred on its moving average unless ``baseline_decay`` is None."""
        if self.baseline_decay is not None:
            if self.baseline is None:
                self.baseline = d
            d, self.baseline = d - self.baseline, self.baseline_decay * self.baseline + (1 - self.baseline_decay) * d
        scored = b if self.score_unused else b[k:k + 1]
        q = p_score if self.score_unused else p_score[k:k + 1]
        log_p = (torch.log_softmax(self.weights, 0)[k]
                 + (scored * torch.log(q) + (1 - scored) * torch.log1p(-q)).sum())
        grad_w, grad_p = torch.autograd.grad(-d * log_p, [self.weights, self.probabilities])
        self.opt.zero_grad(set_to_none=True)
        self.weights.grad, self.probabilities.grad, self.magnitudes.grad = grad_w, grad_p, grad_mag.to(
            self.magnitudes)
        self.opt.step()
        with torch.no_grad():
            self.probabilities.clamp_(0, 1)
            self.magnitudes.clamp_(0, 1)
        self.num_updates += 1

    # -- trajectory, export, checkpoint ------------------------------------------------------------
    def log_items(self, top: int = 5) -> Tuple[Dict[str, float], Dict[str, str]]:
        w = self.subpolicy_probs()
        entropy = float(-(w * w.clamp_min(1e-12).log()).sum())
        scalars = {f'train/{self.name}_apply_prob': self.apply_prob(), f'train/{self.name}_entropy': entropy,
                   f'train/{self.name}_f': float(self.last_stats.get('hypergrad_f', 0.0))}
        probs, mags = self.slot_probs(), self.magnitude_values()
        infos = {}
        for rank, s in enumerate(w.argsort(descending=True)[:top].tolist()):
            ops = '+'.join(f'{self.op_names[o]}(p={float(probs[s, j]):.2f},m={float(mags[s, j]):.3g})'
                           for j, o in enumerate(self.pairs[s]))
            infos[f'{self.name}_top{rank + 1}'] = f'{ops}={float(w[s]):.4f}'
            scalars[f'train/{self.name}_top{rank + 1}_prob'] = float(w[s])
        return scalars, infos

    def export_entries(self) -> List[SpaceEntry]:
        """The distinct ops, each at the sub-policy-weighted mean of its slots' magnitudes."""
        w = self.subpolicy_probs()[:, None].expand(-1, 2)
        mean = self._op_mass(w * self.magnitude_values()) / self._op_mass(w)
        lo, hi = self.ranges[:, 0], self.ranges[:, 1]
        return [SpaceEntry(op, round(float(m), 6)) for op, m in zip(self.op_names, torch.min(torch.max(mean, lo), hi))]

    def export_subpolicies(self) -> List[Dict[str, Any]]:
        """The ``top_k`` most probable sub-policies, probabilities renormalised over them, each op
        with its own probability and magnitude (the official genotype)."""
        w = self.subpolicy_probs()
        top = w.argsort(descending=True)[:self.top_k].tolist()
        total = float(w[top].sum())
        probs, mags = self.slot_probs().tolist(), self.magnitude_values().tolist()
        return [{'prob': float(w[s]) / total,
                 'ops': [{'op': self.op_names[o], 'magnitude': round(mags[s][j], 6), 'prob': probs[s][j]}
                         for j, o in enumerate(self.pairs[s])]} for s in top]

    def state_dict(self) -> Dict[str, Any]:
        return {'version': STATE_VERSION, 'searcher': self.name, 'ops': list(self.op_names),
                'weights': self.weights.detach().clone(), 'probabilities': self.probabilities.detach().clone(),
                'magnitudes': self.magnitudes.detach().clone(), 'opt': self.opt.state_dict(),
                'trajectory': [dict(t, probs=list(t['probs'])) for t in self.trajectory],
                'num_updates': self.num_updates, 'last_stats': dict(self.last_stats), 'baseline': self.baseline}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get('searcher') == self.name and state.get('version') == 1:
            raise ValueError("state 'version' is 1: a state of the shared-parameter DADA, saved under 'dada' before it "
                             "became 'dada_shared'; DADASharedSearcher reads it")
        expected = {'version': STATE_VERSION, 'searcher': self.name, 'ops': list(self.op_names)}
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(f'state {key!r} is {state.get(key)!r}, expected {value!r} for this DADA searcher')
        with torch.no_grad():
            for name in ('weights', 'probabilities', 'magnitudes'):
                getattr(self, name).copy_(state[name])
        self.opt.load_state_dict(state['opt'])
        self.trajectory = [dict(t, probs=list(t['probs'])) for t in state['trajectory']]
        self.num_updates = int(state['num_updates'])
        self.last_stats = dict(state['last_stats'])
        baseline = state.get('baseline')  # absent in states saved before the baseline existed
        self.baseline = None if baseline is None else float(baseline)
