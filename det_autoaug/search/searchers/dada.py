"""DADA with shared parameters, the searcher ``'dada_shared'``: a variant of DADA (Li et al.,
ECCV 2020, "Differentiable Automatic Data Augmentation"); ``'dada'`` is the published algorithm
(:mod:`.dada_published`).

How this variant differs from the published one: ordered pairs instead of unordered ones; one
probability and one magnitude per op, shared by every sub-policy that holds the op, instead of
one per (sub-policy, slot); probabilities parameterised by a sigmoid (Adam moves ``p`` about 4x
less at ``p = 0.5`` than on ``p`` itself); the unrolled step is a plain SGD step (no momentum,
no weight decay); RELAX with a working control variate on the finite-difference surrogate ``f``
(in the official code the control variate cancels). Kept because it is the version measured in
``docs/results.md`` before the published one existed.

Search space: the sub-policies are the ordered pairs ``(o_i, o_j)``, ``i != j``, of the distinct
ops of a space (``S = n (n - 1)``). Learned state:

- ``weights`` (S,): logits of the sub-policy distribution (zeros at start);
- ``prob_logits`` (n,): each op's application probability ``sigmoid(l)`` (``init_prob``);
- ``magnitudes`` (n,): each op's magnitude as a fraction of its range
  (``m = lo + u (hi - lo)``, ``u`` clamped to ``[0, 1]``), starting at the mean magnitude the
  space gives that op;
- a linear control variate ``c(z) = v . phi(z)`` (RELAX; a constant term would cancel), ``phi(z)`` = the relaxed one-hot
  of the sub-policy (softmax at temperature T) and the relaxed Bernoulli gates (sigmoid at T)
  of its two ops, placed at their op indices.

One step on a training batch ``x`` (model weights ``w``, learning rate ``eta``):

1. sub-policy ``k = argmax(weights + Gumbel)`` (one per batch) and its two ops' decisions
   ``b = [l + Logistic > 0]`` (one per op per batch), noise from the policy generator;
2. ``g = grad_w L_train(w, A_{k,b,m}(x))`` on the augmented batch (the step's model gradient);
3. ``g_V = grad_w L_val(w - eta g)`` on a validation batch (one unrolled SGD step, DARTS);
4. finite differences with ``w+- = w +- eps g_V``, ``eps = fd_radius / ||g_V||``:
   ``f = -eta (L_train(w+, A(x)) - L_train(w-, A(x))) / (2 eps)``, the first-order change of the
   validation loss that training on ``A(x)`` causes; its gradient with respect to the magnitudes
   (straight-through through the torch kernels) is the DARTS hyper-gradient;
5. RELAX for the discrete choices (sub-policy, Bernoulli decisions), parameters ``theta =
   (weights, prob_logits)``: ``g_theta = (f - c(z~)) grad log p(k, b) + grad c(z) - grad c(z~)``
   with ``z`` the reparameterised relaxed sample and ``z~`` the relaxed sample conditioned on
   ``(k, b)``; the control variate's parameters descend ``|g_theta|^2`` (its variance). ``f`` is
   averaged over DDP ranks and divided by a running mean of ``|f|`` (a positive rescaling);
6. Adam (betas (0.5, 0.999)) on ``weights``, ``prob_logits``, ``magnitudes`` and the control
   variate; magnitudes clamped to their range; then the model steps on ``g``.

Simplifications relative to the paper (documented precisely):

- RELAX's control variate is linear in the relaxed sample (the paper's is a small network on
  the relaxed sample); the temperature is fixed, not learned;
- the "function" RELAX differentiates is the finite-difference hyper-gradient surrogate ``f``
  of step 4 (a scalar per sample), the magnitudes get only the DARTS straight-through gradient;
- the perturbed forward passes run in training mode, so they also update batch-norm statistics;
- under DDP every rank computes its own ``f`` and gradients, which are averaged (all ranks then
  hold identical state).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...ops.spaces import SpaceEntry
from ...ops.table import get_op
from ...policy.step import ChainStep
from .base import Searcher, SubPolicyOutputs, check_int, check_positive, distinct_ops

STATE_VERSION = 1


class DADASharedSearcher(SubPolicyOutputs, Searcher):
    """DADA with shared per-op parameters: Gumbel-softmax sub-policy, relaxed-Bernoulli ops, RELAX + DARTS
    hyper-gradient.

    Args:
        entries: the search-space entries (their distinct ops are DADA's ops).
        init_prob: initial application probability of every op, in (0, 1).
        lr: Adam learning rate of weights, probabilities and magnitudes (DADA: 5e-3).
        lr_cv: Adam learning rate of the control variate.
        temperature: relaxation temperature T of the Gumbel-softmax and relaxed Bernoulli.
        fd_radius: ``eps * ||g_V||`` of the finite difference (DARTS: 0.01).
        top_k: sub-policies exported to the policy file.
    """

    name = 'dada_shared'
    num_grad_slots = 2

    def __init__(self, entries: Sequence[SpaceEntry], init_prob: float = 0.5, lr: float = 5e-3,
                 lr_cv: float = 1e-2, temperature: float = 0.5, fd_radius: float = 0.01, top_k: int = 25) -> None:
        if not isinstance(init_prob, (int, float)) or not 0.0 < init_prob < 1.0:
            raise ValueError(f'init_prob must be in (0, 1), got {init_prob!r}')
        self.lr = check_positive('lr', lr)
        check_positive('lr_cv', lr_cv)
        self.temperature = check_positive('temperature', temperature)
        self.fd_radius = check_positive('fd_radius', fd_radius)
        self.top_k = check_int('top_k', top_k, 1)
        self.entries = tuple(entries)
        self.ops = distinct_ops(self.entries)
        if len(self.ops) < 2:
            raise ValueError(f'DADA needs at least 2 distinct ops in the space, got {[op for op, _ in self.ops]}')
        self.op_names = [op for op, _ in self.ops]
        self.ranges = torch.tensor([get_op(op).magnitude_range for op in self.op_names], dtype=torch.float64)
        n = len(self.ops)
        self.pairs: List[Tuple[int, int]] = [(i, j) for i in range(n) for j in range(n) if i != j]
        lo, hi = self.ranges[:, 0], self.ranges[:, 1]
        init_mag = torch.tensor([m for _, m in self.ops], dtype=torch.float64)
        unit = ((init_mag - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1).float()
        self.weights = torch.nn.Parameter(torch.zeros(len(self.pairs)))
        self.prob_logits = torch.nn.Parameter(torch.full((n,), math.log(init_prob / (1 - init_prob))))
        self.magnitudes = torch.nn.Parameter(unit)
        self.cv_weight = torch.nn.Parameter(torch.zeros(len(self.pairs) + n))
        self.opt = torch.optim.Adam([self.weights, self.prob_logits, self.magnitudes], lr=lr, betas=(0.5, 0.999))
        self.opt_cv = torch.optim.Adam([self.cv_weight], lr=lr_cv, betas=(0.5, 0.999))
        self.trajectory: List[Dict[str, Any]] = []
        self.num_updates = 0
        self.f_scale: Optional[float] = None
        self.last_stats: Dict[str, float] = {}

    # -- distributions ---------------------------------------------------------------------------
    def subpolicy_probs(self) -> Tensor:
        return torch.softmax(self.weights, 0)

    def op_probs(self) -> Dict[str, float]:
        """Each op's application probability ``sigmoid(l)``."""
        return dict(zip(self.op_names, torch.sigmoid(self.prob_logits).tolist()))

    def magnitude_values(self) -> Tensor:
        """``(n,)`` magnitudes in the ops' own units (float64, no gradient)."""
        u = self.magnitudes.detach().double().clamp(0, 1)
        return self.ranges[:, 0] + u * (self.ranges[:, 1] - self.ranges[:, 0])

    def _magnitude(self, i: int) -> Tensor:
        lo, hi = float(self.ranges[i, 0]), float(self.ranges[i, 1])
        return lo + self.magnitudes[i].clamp(0, 1) * (hi - lo)

    def marginal_op_probs(self) -> Tensor:
        """``(n,)`` probability that an op is one of the drawn sub-policy's two (halved: sums to 1)."""
        w = self.subpolicy_probs().detach().double()
        out = torch.zeros(len(self.ops), dtype=torch.float64)
        for k, (i, j) in enumerate(self.pairs):
            out[i] += w[k] / 2
            out[j] += w[k] / 2
        return out

    def apply_prob(self) -> float:
        """Probability that an image is changed at all: ``sum_k w_k (1 - (1 - p_i)(1 - p_j))``."""
        w = self.subpolicy_probs().detach().double()
        p = torch.sigmoid(self.prob_logits.detach().double())
        return float(sum(w[k] * (1 - (1 - p[i]) * (1 - p[j])) for k, (i, j) in enumerate(self.pairs)))

    # -- the step ----------------------------------------------------------------------------------
    def _features(self, z_sub: Tensor, z_b: Tensor, i: int, j: int) -> Tensor:
        gates = torch.zeros(len(self.ops), dtype=z_b.dtype)
        gates = gates.index_put((torch.tensor([i, j]),), torch.sigmoid(z_b / self.temperature))
        return torch.cat([torch.softmax(z_sub / self.temperature, 0), gates])

    def _control(self, features: Tensor) -> Tensor:
        return (self.cv_weight * features).sum()

    def step(self, ctx, data: dict) -> Dict[str, Tensor]:
        gen = ctx.policy_gen
        num = len(self.pairs)
        tiny = 1e-10
        u_sub, v_sub = (torch.rand(num, generator=gen).clamp(tiny, 1 - tiny) for _ in range(2))
        u_b, v_b = (torch.rand(2, generator=gen).clamp(tiny, 1 - tiny) for _ in range(2))
        gumbel = -torch.log(-torch.log(u_sub))
        k = int(torch.argmax(self.weights.detach() + gumbel))
        i, j = self.pairs[k]
        logistic = torch.log(u_b) - torch.log1p(-u_b)
        z_b_hard = self.prob_logits.detach()[[i, j]] + logistic
        b = (z_b_hard > 0).float()

        seed = ctx.draw_seed()

        def steps(with_grad: bool) -> List[ChainStep]:
            out = []
            for op_index, decision in zip((i, j), b.tolist()):
                if decision > 0.5:  # an op not applied has no effect and no gradient: skip it
                    m = self._magnitude(op_index)
                    out.append(ChainStep(self.op_names[op_index], m if with_grad else m.detach()))
            return out

        with ctx.phase('augmentation'):
            augmented = ctx.augment_differentiable(data, steps(False), seed)
        log_vars = ctx.loss_grad(augmented, 0)
        eta, scale = ctx.lr(), ctx.loss_scale()
        with ctx.phase('validation data'):
            val_batch = ctx.next_val_batch()
        with ctx.perturbed(0, -eta / scale):
            ctx.loss_grad(val_batch, 1)
        norm = float(ctx.buffers.buffers[1].double().norm()) / scale
        eps = self.fd_radius / max(norm, 1e-12)
        losses, mag_grads = [], []
        for sign in (1.0, -1.0):
            with ctx.perturbed(1, sign * eps / scale), ctx.phase('model passes'):
                loss, _ = ctx.forward_loss(ctx.augment_differentiable(data, steps(True), seed))
                if loss.requires_grad and self.magnitudes.requires_grad and b.sum() > 0:
                    grad, = torch.autograd.grad(loss, [self.magnitudes], allow_unused=True)
                    grad = torch.zeros_like(self.magnitudes) if grad is None else grad
                else:
                    grad = torch.zeros_like(self.magnitudes)
            losses.append(float(loss.detach()))
            mag_grads.append(grad.detach())
        f_raw = -eta * (losses[0] - losses[1]) / (2 * eps)
        f_raw = float(ctx.all_reduce_mean([torch.tensor([f_raw], dtype=torch.float64)])[0])
        # f is tiny (eta <g, g_V>): divide it by a running mean of |f| so that the control variate
        # and its learning rate work on a unit scale (a positive factor: same minimiser)
        self.f_scale = abs(f_raw) if self.f_scale is None else 0.9 * self.f_scale + 0.1 * abs(f_raw)
        f = f_raw / max(self.f_scale, 1e-20)
        grad_mag = -eta * (mag_grads[0] - mag_grads[1]) / (2 * eps)

        with ctx.phase('policy update'):
            # RELAX: relaxed sample z and the relaxed sample z~ conditioned on the hard choice
            log_theta = torch.log_softmax(self.weights, 0)
            z_sub = log_theta + gumbel
            gumbel_k = -torch.log(-torch.log(v_sub[k]))
            z_cond = -torch.log(-torch.log(v_sub) / log_theta.exp() - torch.log(v_sub[k]))
            z_cond = torch.where(torch.arange(num) == k, gumbel_k + torch.zeros_like(z_cond), z_cond)
            logits = self.prob_logits[[i, j]]
            z_b = logits + logistic
            theta_b = torch.sigmoid(logits)
            u_cond = torch.where(b > 0.5, (1 - theta_b) + v_b * theta_b, v_b * (1 - theta_b))
            u_cond = u_cond.clamp(tiny, 1 - tiny)
            z_b_cond = logits + torch.log(u_cond) - torch.log1p(-u_cond)
            log_p = log_theta[k] + (b * torch.nn.functional.logsigmoid(logits)
                                    + (1 - b) * torch.nn.functional.logsigmoid(-logits)).sum()
            c_z = self._control(self._features(z_sub, z_b, i, j))
            c_cond = self._control(self._features(z_cond, z_b_cond, i, j))
            surrogate = (f - c_cond).detach() * log_p + c_z - c_cond
            grad_w, grad_l = torch.autograd.grad(surrogate, [self.weights, self.prob_logits], create_graph=True)
            variance = (grad_w ** 2).sum() + (grad_l ** 2).sum()
            grad_cv_w, = torch.autograd.grad(variance, [self.cv_weight])
            grads = ctx.all_reduce_mean([grad_w.detach(), grad_l.detach(), grad_mag.to(self.magnitudes),
                                         grad_cv_w])
            self.opt.zero_grad(set_to_none=True)
            self.opt_cv.zero_grad(set_to_none=True)
            self.weights.grad, self.prob_logits.grad, self.magnitudes.grad = grads[0], grads[1], grads[2]
            self.cv_weight.grad = grads[3]
            self.opt.step()
            self.opt_cv.step()
            with torch.no_grad():
                self.magnitudes.clamp_(0, 1)
            self.num_updates += 1
        ctx.model_step([1.0], [0])
        self.last_stats = {'hypergrad_f': f_raw, 'cv_variance': float(variance.detach()), 'subpolicy': float(k)}
        return log_vars

    # -- trajectory, export, checkpoint ------------------------------------------------------------
    def log_items(self, top: int = 5) -> Tuple[Dict[str, float], Dict[str, str]]:
        w = self.subpolicy_probs().detach()
        entropy = float(-(w * w.clamp_min(1e-12).log()).sum())
        scalars = {f'train/{self.name}_apply_prob': self.apply_prob(), f'train/{self.name}_entropy': entropy,
                   f'train/{self.name}_f': float(self.last_stats.get('hypergrad_f', 0.0)),
                   f'train/{self.name}_cv_variance': float(self.last_stats.get('cv_variance', 0.0))}
        infos = {}
        for rank, idx in enumerate(w.argsort(descending=True)[:top].tolist()):
            a, c = self.pairs[idx]
            infos[f'{self.name}_top{rank + 1}'] = f'{self.op_names[a]}+{self.op_names[c]}={float(w[idx]):.4f}'
            scalars[f'train/{self.name}_top{rank + 1}_prob'] = float(w[idx])
        return scalars, infos

    def export_entries(self) -> List[SpaceEntry]:
        """The distinct ops at their learned magnitudes (the policy file's ``entries``)."""
        return [SpaceEntry(op, round(float(m), 6)) for op, m in zip(self.op_names, self.magnitude_values())]

    def export_subpolicies(self) -> List[Dict[str, Any]]:
        """The ``top_k`` most probable sub-policies, probabilities renormalised over them."""
        w = self.subpolicy_probs().detach().double()
        top = w.argsort(descending=True)[:self.top_k].tolist()
        total = float(w[top].sum())
        mags = self.magnitude_values().tolist()
        probs = torch.sigmoid(self.prob_logits.detach().double()).tolist()
        out = []
        for idx in top:
            out.append({'prob': float(w[idx]) / total,
                        'ops': [{'op': self.op_names[o], 'magnitude': round(mags[o], 6), 'prob': probs[o]}
                                for o in self.pairs[idx]]})
        return out

    def state_dict(self) -> Dict[str, Any]:
        return {'version': STATE_VERSION, 'searcher': self.name, 'ops': list(self.op_names),
                'weights': self.weights.detach().clone(), 'prob_logits': self.prob_logits.detach().clone(),
                'magnitudes': self.magnitudes.detach().clone(), 'cv_weight': self.cv_weight.detach().clone(),
                'opt': self.opt.state_dict(),
                'opt_cv': self.opt_cv.state_dict(),
                'trajectory': [dict(t, probs=list(t['probs'])) for t in self.trajectory],
                'num_updates': self.num_updates, 'f_scale': self.f_scale}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        expected = {'version': STATE_VERSION, 'searcher': self.name, 'ops': list(self.op_names)}
        legacy = dict(expected, searcher='dada')  # saved before this variant was renamed 'dada_shared'
        for key, value in expected.items():
            if state.get(key) != value and state.get(key) != legacy[key]:
                raise ValueError(f'state {key!r} is {state.get(key)!r}, expected {value!r} for this DADA searcher')
        with torch.no_grad():
            for name in ('weights', 'prob_logits', 'magnitudes', 'cv_weight'):
                getattr(self, name).copy_(state[name])
        self.opt.load_state_dict(state['opt'])
        self.opt_cv.load_state_dict(state['opt_cv'])
        self.trajectory = [dict(t, probs=list(t['probs'])) for t in state['trajectory']]
        self.num_updates = int(state['num_updates'])
        self.f_scale = None if state['f_scale'] is None else float(state['f_scale'])
