"""The delayed-credit DDAS reward: sketch, window arithmetic, and the searcher with horizon > 1."""
from __future__ import annotations

import pytest
import torch

from det_autoaug.search.core import DDASPolicy
from det_autoaug.search.delayed_credit import DelayedCredit, GradientSketch
from det_autoaug.search.searchers import DDASSearcher
from search_helpers import assert_same_state
from test_searchers import ENTRIES, Toy

pytestmark = pytest.mark.usefixtures('one_thread')  # tiny tensors (conftest.py)


def test_sketch_inner_products_are_unbiased():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1000, generator=gen, dtype=torch.float64)
    b = b + 0.5 * a  # correlated, so <a, b> is far from 0
    exact = float(a @ b)
    estimates = torch.tensor([float(GradientSketch(1000, 64, seed=s)(a) @ GradientSketch(1000, 64, seed=s)(b))
                              for s in range(2000)])
    se = float(estimates.std() / 2000 ** 0.5)
    assert abs(float(estimates.mean()) - exact) < 4 * se, (float(estimates.mean()), exact, se)
    assert float(estimates.std()) > 1.0  # a real sketch: noisy at dim 64
    full = GradientSketch(1000, 1000)
    assert full.exact and torch.equal(full(a), a)


def test_sketch_rejects_bad_input():
    with pytest.raises(ValueError, match='sketch dim'):
        GradientSketch(10, 0)
    with pytest.raises(ValueError, match='length 10'):
        GradientSketch(10, 4)(torch.zeros(3, 11))


def test_window_sums_the_next_w_validation_gradients():
    """Proposal t gets sum_{u=t}^{t+W-1} <d_t, v_u>, returned at step t + W - 1 (W = 3)."""
    gen = torch.Generator().manual_seed(1)
    policy = DDASPolicy(4, dtype=torch.float64)
    credit = DelayedCredit(3)
    directions = [torch.randn(3, 5, generator=gen, dtype=torch.float64) for _ in range(6)]
    vals = [torch.randn(5, generator=gen, dtype=torch.float64) for _ in range(6)]
    proposals = [policy.sample(3, gen) for _ in range(6)]
    out = [credit.step(p, d, v) for p, d, v in zip(proposals, directions, vals)]
    assert out[0] is None and out[1] is None
    for t in range(4):
        ready = out[t + 2]
        assert ready['proposal'] is proposals[t]
        expected = sum(directions[t] @ vals[u] for u in range(t, t + 3))
        torch.testing.assert_close(ready['rewards'], expected)
    with pytest.raises(ValueError, match='horizon'):
        DelayedCredit(0)


def test_horizon_one_is_the_one_step_reward():
    a, b = Toy(DDASSearcher(ENTRIES, signal='one_step', ops_per_policy=1, lr_alpha=0.05)), \
        Toy(DDASSearcher(ENTRIES, signal='one_step', ops_per_policy=1, lr_alpha=0.05, horizon=1))
    a.run(5)
    b.run(5)
    assert_same_state(a.searcher.state_dict(), b.searcher.state_dict())


def test_horizon_delays_the_first_update_and_moves_the_policy_after():
    toy = Toy(DDASSearcher(ENTRIES, signal='one_step', ops_per_policy=1, lr_alpha=0.05, horizon=4))
    toy.run(3)
    assert toy.searcher.policy.num_updates == 0
    toy.run(3)
    assert toy.searcher.policy.num_updates == 3
    assert not torch.equal(toy.searcher.policy.alpha.detach(), torch.zeros(len(ENTRIES)))


def test_state_round_trip_mid_window_continues_identically():
    make = lambda: DDASSearcher(ENTRIES, signal='one_step', ops_per_policy=1, lr_alpha=0.05, horizon=4)  # noqa: E731
    straight = Toy(make())
    straight.run(10)
    first = Toy(make())
    first.run(6)
    second = Toy(make())
    second.load(first.state())
    second.run(4)
    assert_same_state(straight.searcher.state_dict(), second.searcher.state_dict())
    with pytest.raises(ValueError, match='horizon'):
        DDASSearcher(ENTRIES, signal='one_step', ops_per_policy=1).load_state_dict(first.searcher.state_dict())
