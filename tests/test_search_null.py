"""Information-free rewards must leave the DDAS policy in the random-walk band (issue: "searches
that find good policies").

A reward that carries no information about the policy (here ``dot_clean = 0`` and
``dot_aug ~ N(-0.5, 3)``, independent of the proposals: a typical negative mean, large noise)
should move ``p`` no further than a random walk. The band is computed here without the searcher:
Adam moves each logit by about its learning rate per step, so after T steps a logit is about
``N(0, (lr sqrt(T))^2)``; the band is the 99.9th percentile of ``max(p) * N`` over 4,000 such
walks (numpy). The published update (``estimator='paper'``) leaves it at the raised learning rate
of the Fashion-MNIST config (over 3,000 steps), which shows the test can fail.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from det_autoaug.ops.spaces import get_space
from det_autoaug.search import DDASPolicy
from det_autoaug.search.hook_cfg import hook_searcher, is_search_hook
from det_autoaug.search.searchers.ddas import SIGNAL_DEFAULTS

REPO = Path(__file__).resolve().parents[1]
STEPS = 1000
# policy updates of a look-ahead search: one per round; a shipped look-ahead search makes 12-18
ROUNDS = 100
SEEDS = (0, 1, 2)
DDAS_KEYS = ('signal', 'num_policies', 'ops_per_policy', 'init_apply_prob', 'lr_alpha', 'lr_beta', 'explore_ratio',
             'estimator')
HOOK_DEFAULTS = dict(space='det_default', signal='lookahead', init_apply_prob=0.35, explore_ratio=1.0,
                     estimator='centred')


def shipped_search_hooks():
    """``(config file name, searcher name, its settings with the space)`` of every search hook in a
    shipped config, unset settings at the DDAS defaults (which DAAS shares)."""
    for path in sorted((REPO / 'configs').rglob('*.py')):
        if '_base_' in path.parts:
            continue
        for hook in Config.fromfile(str(path)).get('custom_hooks', []):
            if not is_search_hook(hook):
                continue
            if hook['type'] != 'PolicySearchHook':
                raise ValueError(f"{path.name}: its search hook is {hook['type']!r}; shipped configs name "
                                 'PolicySearchHook, whose searcher dict this reads')
            searcher = hook.get('searcher', 'DDAS')
            searcher = {} if isinstance(searcher, str) else {k: v for k, v in searcher.items() if k != 'type'}
            merged = dict(HOOK_DEFAULTS, space=hook.get('space', HOOK_DEFAULTS['space']), **searcher)
            merged = dict(SIGNAL_DEFAULTS[merged['signal']], **merged)  # DAAS shares the one-step ones
            yield path.name, hook_searcher(hook), merged


def shipped_ddas_settings():
    """Every distinct DDAS setting of a search hook in a shipped config: (space, DDAS kwargs)."""
    settings = {}
    for name, searcher, merged in shipped_search_hooks():
        if searcher == 'ddas':
            settings.setdefault((merged['space'],) + tuple(merged[k] for k in DDAS_KEYS), name)
    return settings


SETTINGS = shipped_ddas_settings()


def random_walk_band(num_entries: int, lr: float, steps: int = STEPS, walks: int = 4000) -> float:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, lr * np.sqrt(steps), (walks, num_entries))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return float(np.percentile(p.max(1) * num_entries, 99.9))


def null_search(num_entries: int, seed: int, steps: int = STEPS, **kwargs) -> float:
    """``max(p) * N`` after ``steps`` updates with information-free rewards (normalised per update
    with the one-step signal, as DDAS does; kept at their scale with the look-ahead)."""
    kwargs = dict(kwargs)
    init_tp = kwargs.pop('init_apply_prob')
    signal = kwargs.pop('signal', 'one_step')
    policy = DDASPolicy(num_entries, init_tp=init_tp, normalise_rewards=signal == 'one_step', **kwargs)
    gen = torch.Generator().manual_seed(seed)
    reward_gen = torch.Generator().manual_seed(seed + 1000)
    for _ in range(steps):
        proposal = policy.sample(generator=gen)
        dot_aug = torch.randn(policy.num_policies, generator=reward_gen) * 3.0 - 0.5
        policy.update(proposal, dot_aug, 0.0)
    return float(policy.probs().detach().max()) * num_entries


def test_the_shipped_configs_have_ddas_settings():
    assert len(SETTINGS) >= 3, f'expected the detection, CIFAR and Fashion-MNIST DDAS configs, found {SETTINGS}'
    assert any(key[1] == 'lookahead' for key in SETTINGS), f'expected the detection config\'s look-ahead: {SETTINGS}'


@pytest.mark.parametrize('key', sorted(SETTINGS, key=str), ids=lambda key: SETTINGS[key])
def test_information_free_rewards_stay_in_the_random_walk_band(key):
    space, *values = key
    kwargs = dict(zip(DDAS_KEYS, values))
    num_entries = len(get_space(space))
    steps = ROUNDS if kwargs['signal'] == 'lookahead' else STEPS
    band = random_walk_band(num_entries, kwargs['lr_alpha'], steps=steps)
    peaks = [null_search(num_entries, seed, steps=steps, **kwargs) for seed in SEEDS]
    assert max(peaks) <= band, (f'{SETTINGS[key]}: max(p) * N reached {peaks} over seeds {SEEDS} after {steps} '
                                f'information-free updates; the random-walk band is {band:.2f}')


def test_the_paper_update_leaves_the_band_at_a_raised_learning_rate():
    num_entries = len(get_space('ddas_cifar'))
    kwargs = dict(HOOK_DEFAULTS, **SIGNAL_DEFAULTS['one_step'])
    kwargs.update(signal='one_step', lr_alpha=0.03, lr_beta=0.006, estimator='paper')
    del kwargs['space']
    band = random_walk_band(num_entries, 0.03, steps=3 * STEPS)
    peaks = [null_search(num_entries, seed, steps=3 * STEPS, **kwargs) for seed in SEEDS]
    assert min(peaks) > band, f'the paper update stayed in the band ({band:.2f}): {peaks}'


class _NoDDPContext:
    """What DAAS's and DADA's policy updates need from a search context: one process, no phases."""

    def all_reduce_mean(self, tensors):
        return tensors

    @contextlib.contextmanager
    def phase(self, name):
        yield


def shipped_one_sample_settings():
    """(searcher, space, lr_alpha, lr_beta) of every DAAS search with a one-step reward in a shipped
    config (the joint searches), DAAS's paired reward at its defaults, and DADA's defaults
    (``--searcher dada`` of tools/search_det.py). DAAS's default look-ahead reward has its own
    check (``tests/test_daas_lookahead.py``)."""
    settings = {('daas', 'det_default', 0.005, 0.001): 'paired defaults (daas)',
                ('dada', 'det_default', None, None): 'hook defaults (dada)'}
    for name, searcher, merged in shipped_search_hooks():
        if searcher in ('daas', 'daas_joint'):
            settings.setdefault(('daas', merged['space'], merged['lr_alpha'], merged['lr_beta']), name)
    return settings


ONE_SAMPLE = shipped_one_sample_settings()


def test_the_shipped_configs_have_daas_settings():
    assert len(ONE_SAMPLE) >= 4, f'expected the two DAAS-joint configs besides the defaults, found {ONE_SAMPLE}'


def one_sample_null_search(name: str, space: str, cfg: dict, seed: int):
    """``(max(p) * N, N, lr)`` of DAAS or DADA after ``STEPS`` information-free updates.

    DAAS: paired validation losses whose difference is noise; DADA: a finite-difference derivative
    that is noise (N(-0.5, 3), as above) and no magnitude gradient. The policy update sees what its
    sampler drew (entries, applied images; sub-policy and slot draws), as in a search."""
    from det_autoaug.search.searchers import build_searcher
    from det_autoaug.search.searchers.dada_published import EPS

    searcher = build_searcher(name, get_space(space), cfg)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        noise = float(torch.randn((), generator=gen, dtype=torch.float64)) * 3.0 - 0.5
        if name == 'daas':
            p = searcher.policy.probs().detach().double()
            entries = torch.multinomial(p, searcher.policy.ops_per_policy, replacement=True, generator=gen)
            applied = torch.rand(8, generator=gen) < 0.35
            before = torch.tensor(2.0, dtype=torch.float64)
            searcher.update_policy(_NoDDPContext(), before - 0.01 * noise, entries, applied, before)
        else:
            w = searcher.subpolicy_probs().detach().double()
            k = int(torch.multinomial(w, 1, generator=gen))
            p = searcher.probabilities
            p_score = p + (p.clamp(EPS, 1 - EPS) - p).detach()
            b = (torch.rand(p.shape, generator=gen) < p_score.detach()).to(p.dtype)
            searcher.update_policy(k, b, p_score, noise, torch.zeros_like(searcher.magnitudes))
    probs = (searcher.policy.probs() if name == 'daas' else searcher.subpolicy_probs()).detach()
    lr = (searcher.policy.opt_alpha if name == 'daas' else searcher.opt).param_groups[0]['lr']
    return float(probs.max()) * len(probs), len(probs), lr


@pytest.mark.parametrize('key', sorted(ONE_SAMPLE, key=str), ids=lambda key: ONE_SAMPLE[key])
def test_information_free_outcomes_leave_daas_and_dada_in_the_band(key):
    name, space, lr_alpha, lr_beta = key
    cfg = {} if name == 'dada' else dict(reward='paired', lr_alpha=lr_alpha, lr_beta=lr_beta)
    runs = [one_sample_null_search(name, space, cfg, seed) for seed in SEEDS]
    peaks = [peak for peak, _, _ in runs]
    _, num_entries, lr = runs[0]
    band = random_walk_band(num_entries, lr)
    assert max(peaks) <= band, (f'{name} ({ONE_SAMPLE[key]}): max(p) * N reached {peaks} over seeds {SEEDS} after '
                                f'{STEPS} information-free steps; the random-walk band is {band:.2f}')


def test_published_dada_without_a_baseline_leaves_the_band():
    """The same information-free run with ``baseline_decay=None`` (the official update): shows the
    DADA check above can fail."""
    runs = [one_sample_null_search('dada', 'det_default', dict(baseline_decay=None), seed) for seed in SEEDS]
    peaks = [peak for peak, _, _ in runs]
    _, num_entries, lr = runs[0]
    band = random_walk_band(num_entries, lr)
    assert min(peaks) > band, f'the published DADA update stayed in the band ({band:.2f}): {peaks}'
