"""The planted-harm harness: its quick mode end to end, the null's permutation and the summary rule."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

import pytest

from det_autoaug.evaluation.planted_harm import _shuffle_rewards, make_null, planted_space, summarise
from det_autoaug.search.searchers import DDASSearcher, build_searcher

REPO = Path(__file__).resolve().parents[1]


def test_quick_mode_writes_every_part(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'planted_harm.py'), '--quick', '--work-dir',
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / 'results.json').read_text())
    labels = [e.label for e in planted_space()]
    assert results['space'] == labels
    assert [r['entry'] for r in results['ground_truth']['entries']] == labels
    assert set(results['searches']) == {'ddas', 'ddas_one_step', 'daas', 'daas_paired', 'dada'}
    assert set(results['nulls']) == {'ddas', 'ddas_one_step', 'daas', 'daas_paired', 'dada'}
    for runs in results['searches'].values():
        for run in runs:
            assert len(run['probs']) == len(labels) and abs(sum(run['probs']) - 1) < 1e-6
    assert '| searcher | harmful mass' in proc.stdout


def test_the_null_feeds_the_policy_a_permutation_of_the_rewards():
    searcher = DDASSearcher(planted_space(), num_policies=4)
    seen = []
    searcher.policy.update = lambda proposal, dot_aug, dot_clean: seen.append(dot_aug.tolist())
    _shuffle_rewards(searcher, torch.Generator().manual_seed(0))
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])
    for _ in range(20):
        searcher.policy.update(None, rewards, 0.0)
    assert all(sorted(s) == [1.0, 2.0, 3.0, 4.0] for s in seen)
    assert any(s != [1.0, 2.0, 3.0, 4.0] for s in seen), 'the null never permuted the rewards'


@pytest.mark.parametrize('name, keys', [('daas', ('val_loss', 'val_loss_before')), ('dada', ('d', 'grad_mag'))])
def test_the_null_of_one_sample_searchers_feeds_outcomes_of_recent_steps(name, keys):
    searcher = build_searcher(name, planted_space(), dict(reward='paired') if name == 'daas' else {})
    seen = []
    if name == 'daas':
        def record(ctx, val_loss, entries, applied, val_loss_before=None):
            seen.append((entries, val_loss, val_loss_before))
    else:
        def record(k, b, p_score, d, grad_mag):
            seen.append((k, d, grad_mag))
    searcher.update_policy = record
    assert make_null(searcher, torch.Generator().manual_seed(0), window=5) == 'time'
    for step in range(40):
        outcome = {keys[0]: 10.0 * step, keys[1]: 10.0 * step + 1}  # an outcome's two parts stay together
        if name == 'daas':
            searcher.update_policy(None, outcome['val_loss'], step, None, val_loss_before=outcome['val_loss_before'])
        else:
            searcher.update_policy(step, None, None, outcome['d'], outcome['grad_mag'])
    for step, first, second in seen:
        source = int(first // 10)
        assert second == first + 1 and step - 5 < source <= step, (step, first, second)
    assert sum(int(first // 10) != step for step, first, _ in seen) > 20, 'the null kept most steps\' own outcomes'


def test_a_searcher_without_a_null_is_named():
    with pytest.raises(ValueError, match='no shuffled-reward null for searcher DDASSearcher'):
        make_null(DDASSearcher(planted_space(), num_policies=1), torch.Generator())


def test_summary_counts_seeds_below_the_null_5th_percentile():
    labels = ['a', 'b', 'c', 'd']
    gt = dict(entries=[dict(entry='a', **{'class': 'harmful'}), dict(entry='b', **{'class': 'helpful'}),
                       dict(entry='c', **{'class': 'neutral'}), dict(entry='d', **{'class': 'harmful'})])
    searches = {'s': [dict(probs=[0.1, 0.5, 0.3, 0.1]), dict(probs=[0.3, 0.2, 0.2, 0.3])]}
    nulls = {'s': [dict(probs=[0.25, 0.25, 0.25, 0.25]), dict(probs=[0.2, 0.3, 0.25, 0.25]),
                   dict(probs=[0.3, 0.2, 0.2, 0.3])]}
    out = summarise(gt, searches, nulls, labels)
    assert out['uniform_harmful'] == 0.5 and out['uniform_helpful'] == 0.25
    row = out['searchers']['s']
    assert row['harmful_mass'] == [0.2, 0.6] and row['helpful_mass'] == [0.5, 0.2]
    # null harmful masses 0.5, 0.45, 0.6: 5th percentile 0.455; only the first seed (0.2) is below
    assert abs(row['null_p05'] - 0.455) < 1e-9 and row['separated'] == 1
    # null helpful masses 0.25, 0.3, 0.2: 95th percentile 0.295; only the first seed (0.5) is above it
    assert row['null_helpful_mass'] == [0.25, 0.3, 0.2]
    assert abs(row['null_helpful_p95'] - 0.295) < 1e-9 and row['helpful_separated'] == 1


def test_signal_study_tool_writes_both_signals_per_round(tmp_path):
    out = tmp_path / 'study.json'
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'signal_study.py'), '--seeds', '0', '--steps', '10',
                           '--round', '5', '--val-batches', '2', '--out', str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    rounds = doc['runs']['0']
    assert len(rounds) == 2 and [r['step'] for r in rounds] == [0, 5]
    for r in rounds:
        assert len(r['lookahead']) == len(r['one_step']) == len(doc['space']) == 10
        assert r['lookahead'][0] == 0.0  # Identity trains exactly as the clean branch
        assert r['one_step'][0] == 0.0
        assert any(v != 0.0 for v in r['lookahead'][1:]) and any(v != 0.0 for v in r['one_step'][1:])
    assert set(doc['summary']) == {'one_step', 'lookahead'}
    assert '| lookahead |' in proc.stdout
