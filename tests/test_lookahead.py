"""The look-ahead DDAS signal: training-state copies, branch rewards against an independent
computation, the main model left untouched, reward scale, arguments, and the hook path."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from det_autoaug.ops.spaces import SpaceEntry
from det_autoaug.search.core import DDASPolicy
from det_autoaug.search.searchers import DDASSearcher, TorchSearchContext

# FlipLR and FlipUD have no random parameters: a branch can be recomputed exactly by hand.
ENTRIES = (SpaceEntry('FlipLR', 1.0), SpaceEntry('FlipUD', 1.0))


class TinyNet(nn.Module):
    """Conv + batch norm + linear: parameters, running statistics and momentum all change per step."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x / 255.0))).flatten(1))


def _data(seed: int, n: int):
    gen = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randint(0, 256, (n, 1, 6, 6), generator=gen).float(),
                targets=torch.randint(0, 3, (n,), generator=gen))


def _context(seed: int = 0, val=None):
    torch.manual_seed(seed)
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    val = val or [_data(100, 8), _data(101, 8)]
    order = iter(val * 1000)
    ctx = TorchSearchContext(model, nn.functional.cross_entropy, opt, lambda: next(order), num_slots=1, seed=seed)
    return ctx, model, opt, val


def _snapshot(model, opt):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())


def test_train_state_restores_parameters_buffers_and_momentum_and_can_be_loaded_twice():
    ctx, model, opt, _ = _context()
    ctx.train_step(_data(0, 4))  # momentum buffers exist
    before_model, before_opt = _snapshot(model, opt)
    state = ctx.train_state()
    for attempt in range(2):
        for i in range(3):
            ctx.train_step(_data(10 + i, 4))
        assert not torch.equal(model.conv.weight, before_model['conv.weight'])
        ctx.load_train_state(state)
        for key, value in before_model.items():
            assert torch.equal(model.state_dict()[key], value), (attempt, key)
        for p, saved in zip(model.parameters(), before_opt['state'].values()):
            assert torch.equal(opt.state[p]['momentum_buffer'], saved['momentum_buffer']), attempt


def _manual_branch(start_model, start_opt, batches, flip_dims, val):
    """The branch recomputed with a fresh model and optimiser (no search code)."""
    model = TinyNet()
    model.load_state_dict(start_model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt.load_state_dict(start_opt)
    for b in batches:
        x = b['inputs'].flip(flip_dims) if flip_dims else b['inputs']
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), b['targets']).backward()
        opt.step()
    with torch.no_grad():  # training mode, as the search scores its branches
        return float(torch.stack([nn.functional.cross_entropy(model(v['inputs']), v['targets']) for v in val]).mean())


def test_round_rewards_match_branches_trained_by_hand_and_leave_the_main_model_alone():
    ctx, model, opt, val = _context()
    searcher = DDASSearcher(ENTRIES, num_policies=2, ops_per_policy=1, signal='lookahead', lookahead_steps=3,
                            lookahead_val_batches=2, lr_alpha=0.1)
    batches = [_data(20 + i, 4) for i in range(3)]
    start = _snapshot(model, opt)
    seen = {}
    finish = searcher.lookahead.finish

    def spy(ctx_, chains):
        seen['main'] = _snapshot(model, opt)
        seen['proposal'] = searcher.lookahead.proposal.entries.tolist()
        return finish(ctx_, chains)
    searcher.lookahead.finish = spy
    for b in batches:
        searcher.step(ctx, b)
    assert searcher.policy.num_updates == 1 and not searcher.lookahead.in_flight
    # the main model is where its own training left it, branches or not
    for key, value in seen['main'][0].items():
        assert torch.equal(model.state_dict()[key], value), key
    flips = {0: [3], 1: [2]}  # FlipLR: width; FlipUD: height
    expected = [_manual_branch(*start, batches, None, val)]
    expected += [_manual_branch(*start, batches, flips[e[0]], val) for e in seen['proposal']]
    assert searcher.lookahead.last_losses == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert searcher.last_stats['reward_mean'] == pytest.approx(
        sum(expected[0] - x for x in expected[1:]) / 2, rel=1e-4, abs=1e-6)


def test_no_update_before_a_round_completes_and_rounds_follow_each_other():
    ctx, *_ = _context()
    searcher = DDASSearcher(ENTRIES, ops_per_policy=1, signal='lookahead', lookahead_steps=4,
                            lookahead_val_batches=1)
    for i in range(11):
        searcher.step(ctx, _data(30 + i, 4))
        assert searcher.policy.num_updates == (i + 1) // 4
    assert searcher.lookahead.in_flight and len(searcher.lookahead.batches) == 3


def test_unnormalised_rewards_keep_their_scale_and_normalised_ones_do_not():
    def grad(normalise, scale):
        policy = DDASPolicy(4, num_policies=3, ops_per_policy=1, normalise_rewards=normalise, dtype=torch.float64)
        proposal = policy.evaluate([[0], [1], [2]])
        return policy.policy_gradient(proposal, torch.tensor([0.3, -0.1, 0.5]) * scale, 0.2 * scale)
    for normalise, factor in ((False, 10.0), (True, 1.0)):
        (a1, b1), (a10, b10) = grad(normalise, 1.0), grad(normalise, 10.0)
        torch.testing.assert_close(a10, a1 * factor)
        torch.testing.assert_close(b10, b1 * factor)
    with pytest.raises(ValueError, match='normalise_rewards'):
        DDASPolicy(4, normalise_rewards=1)


@pytest.mark.parametrize('kwargs, match', [
    (dict(signal='look-ahead'), 'signal must be one of'),
    (dict(signal='lookahead', horizon=5), 'horizon=5 applies to'),
    (dict(signal='lookahead', lookahead_steps=0), 'lookahead_steps must be an int >= 1'),
    (dict(signal='lookahead', lookahead_val_batches=1.5), 'lookahead_val_batches must be an int >= 1'),
])
def test_bad_lookahead_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDASSearcher(ENTRIES, **kwargs)


def test_a_diverged_branch_is_reported():
    ctx, model, *_ = _context()
    searcher = DDASSearcher(ENTRIES, ops_per_policy=1, signal='lookahead', lookahead_steps=1,
                            lookahead_val_batches=1)
    ctx.val_loss = lambda batches: torch.tensor(float('nan'))
    with pytest.raises(ValueError, match='look-ahead validation losses must be finite'):
        searcher.step(ctx, _data(0, 4))
