"""DAAS with the look-ahead reward: the REINFORCE update against closed forms computed here, its
expectation against the exact gradient, information-free rewards inside the random-walk band, the
shuffled-reward null, the arguments, and a round on a tiny model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from det_autoaug.evaluation.planted_harm import make_null
from det_autoaug.ops.spaces import SpaceEntry
from det_autoaug.search.searchers import DAASSearcher, TorchSearchContext

from test_lookahead import TinyNet, _data
from test_search_null import random_walk_band

ENTRIES = tuple(SpaceEntry(op, 1.0) for op in ('FlipLR', 'FlipUD', 'Invert', 'Identity', 'Solarize'))


def _searcher(**kwargs) -> DAASSearcher:
    cfg = dict(reward='lookahead', lookahead_policies=3, ops_per_policy=1, lr_alpha=0.2, lr_beta=0.04,
               lookahead_steps=2, lookahead_val_batches=1)
    cfg.update(kwargs)
    return DAASSearcher(ENTRIES, **cfg)


def _captured_gradients(searcher: DAASSearcher, entries, rewards):
    """``(grad_alpha, grad_beta)`` that one look-ahead update hands to the policy's Adam step."""
    seen = {}
    searcher.policy.step = lambda ga, gb: seen.update(alpha=ga.detach().double(), beta=gb.detach().double())
    proposal = searcher.policy.evaluate(torch.tensor(entries))
    searcher.update_lookahead(proposal, torch.tensor(rewards, dtype=torch.float64))
    return seen['alpha'], seen['beta']


def test_update_matches_the_leave_one_out_reinforce_gradient_computed_by_hand():
    searcher = _searcher()
    with torch.no_grad():
        searcher.policy.alpha.copy_(torch.tensor([0.3, -0.2, 0.1, 0.0, 0.5]))
    entries, rewards = [[0], [2], [0]], [0.4, -0.1, 0.25]
    grad_alpha, grad_beta = _captured_gradients(searcher, entries, rewards)

    p = np.exp([0.3, -0.2, 0.1, 0.0, 0.5])
    p /= p.sum()
    s = 1 / (1 + np.exp(-float(searcher.policy.beta.detach())))
    r = np.array(rewards)
    expected = np.zeros(5)
    for k, (e,) in enumerate(entries):
        b = (r.sum() - r[k]) / 2  # the mean of the other two
        expected -= s / 3 * (r[k] - b) * (np.eye(5)[e] - p)
    np.testing.assert_allclose(grad_alpha.numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(grad_beta), -s * (1 - s) * r.mean(), rtol=1e-5)


def test_sampled_updates_average_to_the_exact_gradient_of_the_expected_reward():
    """On-policy proposals, rewards a fixed function of the entry plus a common offset: the mean
    of many updates' alpha gradients is ``-s * grad_alpha E_p[r]`` (the offset cancels)."""
    searcher = _searcher(lookahead_policies=4)
    with torch.no_grad():
        searcher.policy.alpha.copy_(torch.tensor([0.6, -0.4, 0.2, 0.0, -0.1]))
    value = torch.tensor([0.5, -1.0, 0.2, 0.0, 0.3], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    grads = []
    for _ in range(3000):
        proposal = searcher.policy.sample(4, gen)
        rewards = value[proposal.entries[:, 0]] + 7.0
        grads.append(_captured_gradients(searcher, proposal.entries.tolist(), rewards.tolist())[0])
    grads = torch.stack(grads).numpy()
    p = torch.softmax(searcher.policy.alpha.detach().double(), 0).numpy()
    s = float(searcher.policy.apply_prob())
    exact = -s * p * (value.numpy() - (p * value.numpy()).sum())
    se = grads.std(0, ddof=1) / np.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(0) - exact) < 4 * se + 1e-9), (grads.mean(0), exact, se)


def test_information_free_rounds_stay_in_the_random_walk_band():
    """The shipped look-ahead setting (lr_alpha 0.2, 6 policies a round) over 300 rounds of rewards
    that do not depend on the policies."""
    rounds = 300
    peaks = []
    for seed in range(3):
        searcher = _searcher(lookahead_policies=6)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(rounds):
            proposal = searcher.policy.sample(6, gen)
            rewards = torch.randn(6, generator=gen, dtype=torch.float64) * 3.0 - 0.5
            searcher.update_lookahead(proposal, rewards)
        peaks.append(float(searcher.policy.probs().max()) * len(ENTRIES))
    band = random_walk_band(len(ENTRIES), 0.2, steps=rounds)
    assert max(peaks) <= band, f'max(p) * N reached {peaks}; the random-walk band is {band:.2f}'


def test_the_null_permutes_each_rounds_rewards_across_its_proposals():
    searcher = _searcher(lookahead_policies=3)
    seen = []
    searcher.update_lookahead = lambda proposal, rewards: seen.append(rewards.clone())
    assert searcher.num_policies == 3 and DAASSearcher(ENTRIES).num_policies == 6  # the default: 6 a round
    assert DAASSearcher(ENTRIES, reward='paired').num_policies == 1  # one-step: one a step
    assert make_null(searcher, torch.Generator().manual_seed(0)) == 'proposals'
    proposal = searcher.policy.sample(3, torch.Generator().manual_seed(1))
    rewards = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    for _ in range(20):
        searcher.update_lookahead(proposal, rewards)
    assert all(sorted(r.tolist()) == [1.0, 2.0, 3.0] for r in seen)
    assert any(r.tolist() != [1.0, 2.0, 3.0] for r in seen), 'never permuted in 20 rounds'


@pytest.mark.parametrize('kwargs, match', [
    (dict(reward='lookahead', lookahead_policies=1), 'lookahead_policies'),
    (dict(reward='lookahead', lookahead_steps=0), 'lookahead_steps'),
    (dict(reward='lookahead', lookahead_policies=2.5), 'lookahead_policies'),
    (dict(reward='lookahead', lookahead_policies=True), 'lookahead_policies'),
])
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DAASSearcher(ENTRIES, **kwargs)


def test_a_round_updates_once_with_the_branches_rewards_and_keeps_the_main_model():
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    val = iter([_data(100, 8)] * 100)
    ctx = TorchSearchContext(model, nn.functional.cross_entropy, opt, lambda: next(val), num_slots=1, seed=0)
    searcher = _searcher(lookahead_policies=3, lookahead_steps=2)
    seen = []
    update = searcher.update_lookahead
    searcher.update_lookahead = lambda proposal, rewards: seen.append(rewards) or update(proposal, rewards)
    main = []
    train_step = ctx.train_step
    ctx.train_step = lambda batch: main.append(1) or train_step(batch)
    searcher.step(ctx, _data(0, 4))
    assert not seen and searcher.policy.num_updates == 0
    weights_before_finish = None

    finish = searcher.lookahead.finish

    def spy(c, chains):
        nonlocal weights_before_finish
        weights_before_finish = {k: v.clone() for k, v in model.state_dict().items()}
        return finish(c, chains)
    searcher.lookahead.finish = spy
    searcher.step(ctx, _data(1, 4))
    assert len(seen) == 1 and seen[0].shape == (3,) and searcher.policy.num_updates == 1
    losses = searcher.lookahead.last_losses  # [clean, policy 1..3]
    np.testing.assert_allclose(seen[0].numpy(), [losses[0] - x for x in losses[1:]], rtol=1e-6)
    for key, value in weights_before_finish.items():
        assert torch.equal(model.state_dict()[key], value), key
