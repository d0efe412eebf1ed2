"""Tests of the DDAS core: the meta-gradient identity, the estimators, state and buffers."""
from __future__ import annotations

import io
import itertools
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.func import functional_call

from det_autoaug.search import EPS, DDASPolicy, FlatGradBuffers, Proposal, schedule_index

F64 = torch.float64
ETA = 0.5  # model SGD learning rate of the simulated search step
ALL_PAIRS = list(itertools.product(range(3), repeat=2))  # the 9 ordered policies of N = 3


# -- a tiny differentiable problem: 3 "augmentations" of 4-d inputs, a 2-layer MLP -------------
def augment(x: torch.Tensor, entry: int) -> torch.Tensor:
    if entry == 0:
        return x + torch.tensor([0.5, -0.3, 0.2, 0.1], dtype=x.dtype)
    if entry == 1:
        return 1.7 * x
    return x.flip(-1)


def apply_policy(x: torch.Tensor, policy) -> torch.Tensor:
    for entry in policy:
        x = augment(x, int(entry))
    return x


def make_problem():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64))
    x_train = torch.randn(8, 4, generator=gen, dtype=F64)
    y_train = torch.randint(3, (8,), generator=gen)
    x_val = torch.randn(8, 4, generator=gen, dtype=F64) * 1.3 + 0.2
    y_val = torch.randint(3, (8,), generator=gen)
    return model, (x_train, y_train), (x_val, y_val)


def loss_fn(model, params, x, y):
    out = model(x) if params is None else functional_call(model, params, (x,))
    return nn.functional.cross_entropy(out, y)


def flat_grad(model, params, x, y) -> torch.Tensor:
    names = list(params)
    grads = torch.autograd.grad(loss_fn(model, params, x, y), [params[n] for n in names])
    return torch.cat([g.reshape(-1) for g in grads])


def unflatten(model, flat: torch.Tensor):
    out, offset = {}, 0
    for name, p in model.named_parameters():
        out[name] = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    return out


def make_policy(**kwargs) -> DDASPolicy:
    policy = DDASPolicy(3, dtype=F64, **kwargs)
    with torch.no_grad():  # non-uniform p and s != 0.5 so the identity is not trivially satisfied
        policy.alpha.copy_(torch.tensor([0.8, -0.4, 0.3], dtype=F64))
        policy.beta.copy_(torch.tensor(-0.6, dtype=F64))
    return policy


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm()))


def reference_meta_gradient(policy: DDASPolicy, model, theta, grads, val):
    """d/d(alpha, beta) of L_val(theta - eta * g_hat(alpha, beta)), by autograd through the step.

    ``grads`` holds g_0 and the gradients of all 9 policies (constants: they do not depend on the
    policy). The sum runs over every policy, so Z = sum P = 1 exactly and needs no gradient.
    """
    alpha = policy.alpha.detach().clone().requires_grad_(True)
    beta = policy.beta.detach().clone().requires_grad_(True)
    p = torch.softmax(alpha, 0)
    s = torch.sigmoid(beta)
    prob = torch.stack([p[a] * p[b] for a, b in ALL_PAIRS])
    g_hat = (1 - s) * grads[0] + s * (prob[:, None] * grads[1:]).sum(0)
    theta_new = theta - ETA * g_hat
    loss = loss_fn(model, unflatten(model, theta_new), *val)
    return torch.autograd.grad(loss, [alpha, beta])


# -- THE EXACTNESS TEST -------------------------------------------------------------------------
@pytest.mark.parametrize('estimator', ['centred', 'paper'])
def test_policy_gradient_equals_meta_gradient_through_one_step(estimator):
    """Core gradient * (eta * n) == autograd derivative of the validation loss after one step.

    Runs the whole caller pipeline (FlatGradBuffers in float64, model_grad_coefficients, an SGD
    step on the combined gradient, g_V after the step) and compares with an independent autograd
    reference. Tolerance: relative 1e-9 (float64; observed ~1e-15), and cosine > 0.99.
    """
    model, (x, y), val = make_problem()
    policy = make_policy(estimator=estimator)
    proposal = Proposal.from_entries(policy, ALL_PAIRS)
    k = len(ALL_PAIRS)
    params = list(model.parameters())
    theta = torch.cat([p.detach().reshape(-1) for p in params]).clone()

    bufs = FlatGradBuffers(params, num_slots=k + 2, dtype=F64)
    for slot, x_copy in enumerate([x] + [apply_policy(x, pair) for pair in ALL_PAIRS]):
        model.zero_grad()
        loss_fn(model, None, x_copy, y).backward()
        bufs.store(slot)
    bufs.combine_into_grads(policy.model_grad_coefficients(proposal), range(k + 1))
    with torch.no_grad():
        for p in params:
            p -= ETA * p.grad
    model.zero_grad()
    loss_fn(model, None, *val).backward()
    bufs.store(k + 1)
    dot_aug = bufs.dots(k + 1, range(1, k + 1))
    dot_clean = bufs.dot(0, k + 1)
    grad_alpha, grad_beta = policy.policy_gradient(proposal, dot_aug, dot_clean)

    # independent reference: per-copy gradients recomputed functionally at the original weights
    theta_params = unflatten(model, theta.clone().requires_grad_(True))
    theta_params = {n: t.detach().requires_grad_(True) for n, t in theta_params.items()}
    grads = torch.stack([flat_grad(model, theta_params, x, y)]
                        + [flat_grad(model, theta_params, apply_policy(x, pair), y) for pair in ALL_PAIRS])
    torch.testing.assert_close(bufs.buffers[:k + 1], grads, rtol=1e-12, atol=1e-14)
    ref_alpha, ref_beta = reference_meta_gradient(policy, model, theta, grads, val)

    n = float((dot_aug - dot_clean).abs().sum()) + EPS
    assert ref_alpha.abs().max() > 1e-4 and ref_beta.abs() > 1e-4, 'degenerate problem: zero meta-gradient'
    assert cosine(grad_alpha, ref_alpha) > 0.99
    torch.testing.assert_close(grad_alpha * ETA * n, ref_alpha, rtol=1e-9, atol=1e-13)
    torch.testing.assert_close(grad_beta * ETA * n, ref_beta, rtol=1e-9, atol=1e-13)


def test_sampled_estimator_direction_approaches_exact_gradient():
    """K = 3 uniform proposals, 500 draws: the mean gradient points along the exact one."""
    model, (x, y), val = make_problem()
    policy = make_policy()
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    theta = torch.cat([p.reshape(-1) for p in params.values()]).detach()
    all_grads = torch.stack([flat_grad(model, params, x, y)]
                            + [flat_grad(model, params, apply_policy(x, pair), y) for pair in ALL_PAIRS])
    ref_alpha, ref_beta = reference_meta_gradient(policy, model, theta, all_grads, val)

    gen = torch.Generator().manual_seed(1)
    sum_alpha, sum_beta = torch.zeros(3, dtype=F64), torch.zeros((), dtype=F64)
    for _ in range(500):
        proposal = policy.sample(3, gen)
        rows = torch.cat([torch.zeros(1, dtype=torch.long), 1 + proposal.entries[:, 0] * 3 + proposal.entries[:, 1]])
        g = all_grads[rows]
        theta_new = theta - ETA * (policy.model_grad_coefficients(proposal) @ g)
        g_val = flat_grad(model, {n: t.detach().requires_grad_(True)
                                  for n, t in unflatten(model, theta_new).items()}, *val)
        dots = g @ g_val
        grad_alpha, grad_beta = policy.policy_gradient(proposal, dots[1:], dots[0])
        sum_alpha += grad_alpha
        sum_beta += grad_beta
    assert cosine(sum_alpha, ref_alpha) > 0.99  # observed 0.99999 with this seed
    assert torch.sign(sum_beta) == torch.sign(ref_beta)


# -- the sampled estimators against the expectation they estimate -----------------------------
K_DRAWS = 3
TUPLES = list(itertools.product(range(len(ALL_PAIRS)), repeat=K_DRAWS))  # every draw of K = 3 policies


def exact_reward_gradient(policy: DDASPolicy, f: torch.Tensor):
    """d/d(alpha, beta) of ``-s * sum_tau P(tau) f(tau)`` by autograd on a formula of its own."""
    alpha = policy.alpha.detach().clone().requires_grad_(True)
    beta = policy.beta.detach().clone().requires_grad_(True)
    p = torch.softmax(alpha, 0)
    prob = torch.stack([p[a] * p[b] for a, b in ALL_PAIRS])
    return torch.autograd.grad(-torch.sigmoid(beta) * (prob * f).sum(), [alpha, beta])


def expected_update(policy: DDASPolicy, f: torch.Tensor):
    """E[n * policy_gradient] over every possible draw of K_DRAWS proposals, summed exactly.

    ``f`` is the reward of each of the 9 policies (``dot_aug - dot_clean`` with ``dot_clean = 0``);
    each draw's probability is the product of the sampler's ``q`` of its policies.
    """
    q = Proposal.from_entries(policy, ALL_PAIRS).proposal_prob
    mean_alpha, mean_beta = torch.zeros(3, dtype=F64), torch.zeros((), dtype=F64)
    for draw in TUPLES:
        weight = float(q[list(draw)].prod())
        if weight == 0.0:
            continue
        rewards = f[list(draw)]
        grad_alpha, grad_beta = policy.policy_gradient(policy.evaluate([ALL_PAIRS[i] for i in draw]), rewards, 0.0)
        n = float(rewards.abs().sum()) + EPS
        mean_alpha += weight * n * grad_alpha
        mean_beta += weight * n * grad_beta
    return mean_alpha, mean_beta


REWARDS = torch.tensor([0.31, -0.12, 0.05, -0.4, 0.22, 0.09, -0.05, 0.18, -0.27], dtype=F64)


@pytest.mark.parametrize('alpha, explore_ratio', [((0.0, 0.0, 0.0), 1.0), ((0.8, -0.4, 0.3), 0.0)],
                         ids=['uniform-p', 'on-policy'])
@pytest.mark.parametrize('offset', [0.0, -1.0])
def test_sampled_expectation_equals_the_exact_gradient(alpha, explore_ratio, offset):
    """Summed over all 729 draws of K = 3: 'centred' is (K-1)/K of the exact gradient, 'paper' all of it.

    Holds at uniform p (where every search starts) and for on-policy proposals at any p, whatever
    the reward offset; beta's expectation is exact for both (the weights are uniform here).
    """
    f = REWARDS + offset
    for estimator, scale in (('centred', (K_DRAWS - 1) / K_DRAWS), ('paper', 1.0)):
        policy = make_policy(estimator=estimator, explore_ratio=explore_ratio)
        with torch.no_grad():
            policy.alpha.copy_(torch.tensor(alpha, dtype=F64))
        ref_alpha, ref_beta = exact_reward_gradient(policy, f)
        mean_alpha, mean_beta = expected_update(policy, f)
        assert ref_alpha.abs().max() > 1e-3, 'degenerate problem: zero exact gradient'
        torch.testing.assert_close(mean_alpha, scale * ref_alpha, rtol=1e-9, atol=1e-13)
        torch.testing.assert_close(mean_beta, ref_beta, rtol=1e-9, atol=1e-13)


def test_centred_expectation_ignores_a_reward_offset_paper_does_not():
    """Peaked p, uniform proposals (the default sampler): a common reward offset is information-free.

    'centred' gives the same expected update with offset 0 and -1 (exactly); 'paper' moves by
    -offset * E[sum_k w_k d log P_k], which here points towards the most probable entry.
    """
    expected = {}
    for estimator in ('centred', 'paper'):
        for offset in (0.0, -1.0):
            policy = make_policy(estimator=estimator)
            with torch.no_grad():
                policy.alpha.copy_(torch.tensor([2.0, -1.0, 0.0], dtype=F64))
            expected[estimator, offset] = expected_update(policy, REWARDS + offset)[0]
    torch.testing.assert_close(expected['centred', -1.0], expected['centred', 0.0], rtol=1e-9, atol=1e-13)
    drift = expected['paper', -1.0] - expected['paper', 0.0]
    assert drift[0] < -1e-2, f'paper: a negative offset should push the leading entry up, drift {drift.tolist()}'
    # shrunk by self-normalisation at this peaked p, but still along the exact gradient
    ref_alpha, _ = exact_reward_gradient(policy, REWARDS)
    assert cosine(expected['centred', 0.0], ref_alpha) > 0.5


# -- proposals and importance weights -----------------------------------------------------------
def test_sampled_frequencies_match_proposal_prob():
    policy = DDASPolicy(3, explore_ratio=0.5, dtype=F64)
    with torch.no_grad():
        policy.alpha.copy_(torch.tensor([2.0, 0.0, -1.0], dtype=F64))
    proposal = policy.sample(40000, torch.Generator().manual_seed(0))
    codes = proposal.entries[:, 0] * 3 + proposal.entries[:, 1]
    freq = torch.bincount(codes, minlength=9).double() / codes.numel()
    expected = Proposal.from_entries(policy, ALL_PAIRS).proposal_prob
    torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)
    torch.testing.assert_close(proposal.weights.sum(), torch.tensor(1.0, dtype=F64))


def test_importance_weights_remove_the_mixture_bias():
    """explore_ratio = 0.5, peaked p: self-normalised weights estimate E_P[f]; P/Z does not."""
    policy = DDASPolicy(3, explore_ratio=0.5, dtype=F64)
    with torch.no_grad():
        policy.alpha.copy_(torch.tensor([3.0, 0.0, -1.0], dtype=F64))
    f = torch.tensor([1.0, 0.2, -0.5, 0.3, 2.0, 0.0, -1.0, 0.7, 1.5], dtype=F64)  # f(tau) per pair code
    exact = float((Proposal.from_entries(policy, ALL_PAIRS).prob * f).sum())
    proposal = policy.sample(50000, torch.Generator().manual_seed(3))
    f_k = f[proposal.entries[:, 0] * 3 + proposal.entries[:, 1]]
    corrected = float((proposal.weights * f_k).sum())
    official = float((proposal.prob / proposal.prob.sum() * f_k).sum())
    assert abs(corrected - exact) < 0.01, (corrected, exact)
    assert abs(official - exact) > 0.04, (official, exact)  # measurably biased: ~0.09 here


def test_explore_ratio_one_weights_equal_official():
    policy = make_policy()
    proposal = policy.sample(5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(proposal.weights, proposal.prob / proposal.prob.sum())
    torch.testing.assert_close(proposal.proposal_prob, torch.full((5,), 1 / 9, dtype=F64))


def test_sampling_is_reproducible():
    policy = make_policy(explore_ratio=0.3)
    a = policy.sample(7, torch.Generator().manual_seed(5))
    b = policy.sample(7, torch.Generator().manual_seed(5))
    assert torch.equal(a.entries, b.entries)
    assert a.entries.shape == (7, 2) and a.entries.dtype == torch.long


def test_model_grad_coefficients():
    policy = make_policy()
    proposal = Proposal.from_entries(policy, [[0, 1], [2, 2]])
    s = torch.sigmoid(torch.tensor(-0.6, dtype=F64))
    coeffs = policy.model_grad_coefficients(proposal)
    torch.testing.assert_close(coeffs, torch.cat([(1 - s)[None], s * proposal.weights]))
    assert not coeffs.requires_grad
    torch.testing.assert_close(coeffs.sum(), torch.tensor(1.0, dtype=F64))


# -- update -------------------------------------------------------------------------------------
def test_zero_rewards_leave_parameters_unchanged():
    policy = make_policy()
    alpha, beta = policy.alpha.detach().clone(), policy.beta.detach().clone()
    proposal = policy.sample(3, torch.Generator().manual_seed(0))
    log = policy.update(proposal, torch.full((3,), 0.25, dtype=F64), 0.25)
    assert all(math.isfinite(v) for v in log.values())
    assert torch.equal(policy.alpha.detach(), alpha) and torch.equal(policy.beta.detach(), beta)


def test_update_steps_along_policy_gradient():
    """A positive reward for (0, 0) raises p[0] and s; the log holds finite floats."""
    policy = DDASPolicy(3)
    proposal = Proposal.from_entries(policy, [[0, 0], [1, 2]])
    log = policy.update(proposal, torch.tensor([1.0, -0.2]), 0.0)
    p = policy.probs().detach()
    assert p[0] > 1 / 3 and float(policy.apply_prob().detach()) > 0.35
    assert log['top1_entry'] == 0.0 and isinstance(log['entropy'], float)
    assert policy.alpha.dtype == torch.float32 and policy.alpha.device.type == 'cpu'


def test_update_rejects_bad_dots():
    policy = DDASPolicy(3)
    proposal = policy.sample(3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r'\(3,\).*\(2,\)'):
        policy.update(proposal, torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match='finite'):
        policy.update(proposal, torch.tensor([1.0, float('nan'), 0.0]), 0.0)


# -- state, trajectory, schedule ----------------------------------------------------------------
def _drive(policy: DDASPolicy, gen: torch.Generator, steps: int, start: int) -> None:
    for step in range(start, start + steps):
        proposal = policy.sample(3, gen)
        dots = torch.tensor([math.sin(step + i) for i in range(3)])
        policy.update(proposal, dots, math.cos(step))
        policy.snapshot(step)


def test_state_dict_round_trip_continues_bit_for_bit():
    ref = DDASPolicy(6)
    gen_ref = torch.Generator().manual_seed(7)
    _drive(ref, gen_ref, 6, 0)

    first = DDASPolicy(6)
    gen = torch.Generator().manual_seed(7)
    _drive(first, gen, 3, 0)
    blob = io.BytesIO()
    torch.save({'policy': first.state_dict(), 'gen': gen.get_state()}, blob)
    blob.seek(0)
    saved = torch.load(blob, weights_only=True)  # checkpoints must load without unpickling code

    resumed = DDASPolicy(6)
    resumed.load_state_dict(saved['policy'])
    gen_resumed = torch.Generator()
    gen_resumed.set_state(saved['gen'])
    _drive(resumed, gen_resumed, 3, 3)
    assert torch.equal(resumed.alpha.detach(), ref.alpha.detach())
    assert torch.equal(resumed.beta.detach(), ref.beta.detach())
    assert resumed.trajectory == ref.trajectory and resumed.num_updates == 6


def test_load_state_dict_rejects_other_space():
    with pytest.raises(ValueError, match="'num_entries' is 4, expected 5"):
        DDASPolicy(5).load_state_dict(DDASPolicy(4).state_dict())


def test_snapshot_export_and_searcher_protocol():
    policy = make_policy()
    policy.snapshot(0)
    policy.snapshot(0)  # same epoch again (epoch end then run end): replaced, not duplicated
    policy.snapshot(1)
    assert [item['epoch'] for item in policy.trajectory] == [0, 1]
    item = policy.trajectory[0]
    assert set(item) == {'epoch', 'probs', 'apply_prob'} and len(item['probs']) == 3
    assert abs(sum(item['probs']) - 1) < 1e-12 and abs(item['apply_prob'] - 1 / (1 + math.exp(0.6))) < 1e-12
    with pytest.raises(ValueError, match='got 0'):
        policy.snapshot(0)
    exported = policy.export()
    assert exported['searcher'] == 'ddas' and exported['ops_per_policy'] == 2
    assert exported['trajectory'] == policy.trajectory and len(exported['probs']) == 3


def test_schedule_hand_computed_indices():
    # interval = (200 + 0.1) / 20 = 10.005: epoch 10 still reads snapshot 0, epoch 11 snapshot 1
    expected = {0: 0, 9: 0, 10: 0, 11: 1, 20: 1, 21: 2, 100: 9, 101: 10, 190: 18, 191: 19, 199: 19}
    for epoch, index in expected.items():
        assert schedule_index(epoch, 200, 20) == index, epoch
    assert schedule_index(0, 1, 1) == 0
    # as many training as search epochs: interval 1.01, epochs 0 and 1 share snapshot 0 and the
    # last snapshot is never reached (the official formula, kept as is)
    assert [schedule_index(e, 10, 10) for e in range(10)] == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    policy = DDASPolicy(2)
    for epoch in range(20):
        with torch.no_grad():
            policy.alpha.copy_(torch.tensor([float(epoch), 0.0]))
        policy.snapshot(epoch)
    probs, apply_prob = policy.schedule(191, 200)
    assert probs == policy.trajectory[19]['probs'] and apply_prob == pytest.approx(0.35)
    with pytest.raises(ValueError, match='epoch=200'):
        policy.schedule(200, 200)
    with pytest.raises(ValueError, match='num_snapshots=0'):
        DDASPolicy(2).schedule(0, 10)


# -- bad arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs, shown', [
    (dict(num_entries=0), '0'), (dict(num_entries=2.5), '2.5'), (dict(init_tp=0.0), '0.0'),
    (dict(init_tp=1.2), '1.2'), (dict(lr_alpha=0.0), '0.0'), (dict(lr_beta=-1e-3), '-0.001'),
    (dict(explore_ratio=1.5), '1.5'), (dict(explore_ratio=-0.1), '-0.1'),
    (dict(num_policies=0), '0'), (dict(ops_per_policy=0), '0'), (dict(dtype=torch.int64), 'torch.int64'),
])
def test_bad_arguments_raise_value_error_naming_the_value(kwargs, shown):
    args = dict(num_entries=4)
    args.update(kwargs)
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=rf'{name}.*{shown.replace(".", r"[.]")}'):
        DDASPolicy(**args)


def test_bad_sample_and_entries_raise():
    policy = DDASPolicy(3)
    with pytest.raises(ValueError, match='num_policies.*got 0'):
        policy.sample(0)
    with pytest.raises(ValueError, match=r'\[0, 3\).*\[\[0, 3\]\]'):
        Proposal.from_entries(policy, [[0, 3]])
    with pytest.raises(ValueError, match=r'\(K >= 1, 2\).*\(1, 3\)'):
        Proposal.from_entries(policy, [[0, 1, 2]])


# -- FlatGradBuffers ----------------------------------------------------------------------------
def _module_with_frozen_part():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    return model


def test_flat_grad_buffers_store_dot_combine():
    torch.manual_seed(0)
    model = _module_with_frozen_part()
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    bufs = FlatGradBuffers(params, num_slots=4)
    numel = sum(p.numel() for p in trainable)
    assert bufs.buffers.shape == (4, numel) and bufs.buffers.dtype == torch.float32
    ptr = bufs.buffers.data_ptr()

    flats = []
    for slot in range(3):
        model.zero_grad(set_to_none=True)
        model(torch.randn(5, 3)).pow(2).sum().backward()
        if slot == 2:
            model[1].bias.grad = None  # a parameter without gradient contributes zeros
        bufs.store(slot, params)
        flats.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                for p in trainable]))
        assert bufs.buffers.data_ptr() == ptr
    for slot, flat in enumerate(flats):
        torch.testing.assert_close(bufs.buffers[slot], flat)
    torch.testing.assert_close(bufs.dot(0, 1), torch.dot(flats[0], flats[1]))
    torch.testing.assert_close(bufs.dots(2, [0, 1]), torch.stack([flats[2] @ flats[0], flats[2] @ flats[1]]))

    model.zero_grad(set_to_none=True)
    coeffs = torch.tensor([0.5, -2.0, 0.25])
    bufs.combine_into_grads(coeffs, [0, 1, 2], params)
    expected = 0.5 * flats[0] - 2.0 * flats[1] + 0.25 * flats[2]
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in trainable]), expected)
    assert model[0].bias.grad is None  # frozen parameters are never touched
    assert bufs.buffers.data_ptr() == ptr


def test_flat_grad_buffers_all_reduce_single_process_and_errors():
    bufs = FlatGradBuffers(nn.Linear(2, 2).parameters(), num_slots=2)
    bufs.buffers[1] = 3.0
    bufs.all_reduce_(1)  # no process group: a no-op
    assert torch.equal(bufs.buffers[1], torch.full((6,), 3.0))
    with pytest.raises(ValueError, match='slot .* got 2'):
        bufs.store(2)
    with pytest.raises(ValueError, match='num_slots .* got 0'):
        FlatGradBuffers(nn.Linear(2, 2).parameters(), num_slots=0)
    with pytest.raises(ValueError, match='3 values for 2 slots'):
        bufs.combine_into_grads([1.0, 2.0, 3.0], [0, 1])
    with pytest.raises(ValueError, match='params do not match'):
        bufs.store(0, nn.Linear(3, 2).parameters())


# -- devices ------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_policy_and_buffers():
    policy = DDASPolicy(4)
    _drive(policy, torch.Generator().manual_seed(0), 2, 0)
    cpu_state = policy.state_dict()
    policy.to('cuda')
    assert policy.alpha.is_cuda and policy.opt_alpha.state[policy.alpha]['exp_avg'].is_cuda
    proposal = policy.sample(3, torch.Generator(device='cuda').manual_seed(0))
    assert proposal.entries.is_cuda
    policy.update(proposal, torch.randn(3, device='cuda'), torch.tensor(0.1, device='cuda'))
    cpu_policy = DDASPolicy(4)
    cpu_policy.load_state_dict(cpu_state)
    cpu_policy.update(Proposal.from_entries(cpu_policy, proposal.entries.cpu()), torch.zeros(3), 0.0)

    model = nn.Linear(3, 2).cuda()
    bufs = FlatGradBuffers(model.parameters(), num_slots=3)
    model(torch.randn(4, 3, device='cuda')).sum().backward()
    bufs.store(0)
    bufs.combine_into_grads(torch.tensor([2.0]), [0])
    assert bufs.buffers.is_cuda and torch.allclose(model.weight.grad.reshape(-1), 2 * bufs.buffers[0, :6])


_ALL_REDUCE_SCRIPT = '''
import sys, torch, torch.distributed as dist
from torch import nn
from det_autoaug.search import FlatGradBuffers
rank, init = int(sys.argv[1]), sys.argv[2]
dist.init_process_group('gloo', init_method=init, rank=rank, world_size=2)
model = nn.Linear(2, 1)
for p in model.parameters():
    p.grad = torch.full_like(p, float(rank + 1))
bufs = FlatGradBuffers(model.parameters(), num_slots=2)
bufs.store(0)
bufs.store(1)
bufs.all_reduce_(1)
assert torch.equal(bufs.buffers[1], torch.full((3,), 1.5)), bufs.buffers[1]
assert torch.equal(bufs.buffers[0], torch.full((3,), float(rank + 1))), bufs.buffers[0]
dist.destroy_process_group()
'''


def test_flat_grad_buffers_all_reduce_averages_over_two_ranks(tmp_path):
    """Two gloo processes: all_reduce_ averages one slot and leaves the others alone."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    init = f'file://{tmp_path / "rendezvous"}'
    procs = [subprocess.Popen([sys.executable, '-c', _ALL_REDUCE_SCRIPT, str(rank), init], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
