"""The classification comparison: its quick mode end to end, resume, and the policies it adds."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from det_autoaug.evaluation.compare_cls import (RANDAUGMENT_OPS, RandAugmentPolicy, RangePolicy,
                                                apply_chains_batched, quick_setting, summarise)
from det_autoaug.policy.policy import ChainStep

REPO = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'compare_cls.py'), '--quick', *args],
                          capture_output=True, text=True, timeout=600)


def test_quick_mode_writes_every_arm_then_resumes_without_rerunning(tmp_path):
    proc = run_tool('--work-dir', str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / 'results.json').read_text())
    expected = {'none', 'handpicked', 'randaugment', 'trivialaugment', 'uniform', 'ddas', 'ddas_one_step',
                'ddas_lookahead', 'dada', 'daas', 'daas_paired'}
    assert set(results['arms']) == expected == set(quick_setting().arms)
    for arm in results['arms'].values():
        assert len(arm['acc']) == len(results['settings']['seeds']) == 1
        assert all(0.0 <= a <= 1.0 for a in arm['acc'] + arm['train_acc'])
    for name in ('ddas', 'ddas_one_step', 'ddas_lookahead', 'dada', 'daas', 'daas_paired'):
        found = results['searches'][f'{name}/0']
        assert found['model_passes'] > 0 and found['seconds'] >= 0
        assert Path(found['policy_file']).is_file()
    assert {row['arm'] for row in results['summary']} == expected
    assert '| arm | test acc' in proc.stdout

    again = run_tool('--work-dir', str(tmp_path), '--resume')
    assert again.returncode == 0, again.stderr[-2000:]
    assert 'test acc' not in again.stdout.split('| arm |')[0], 'a finished run ran again'
    assert json.loads((tmp_path / 'results.json').read_text())['runs'] == results['runs']


def test_resume_refuses_other_settings(tmp_path):
    assert run_tool('--work-dir', str(tmp_path), '--arms', 'none').returncode == 0
    proc = run_tool('--work-dir', str(tmp_path), '--arms', 'none', '--steps', '5', '--resume')
    assert proc.returncode != 0 and 'differ' in proc.stderr


def test_batched_chains_follow_each_image_and_its_step_probability():
    images = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28) % 256
    chains = [[ChainStep('FlipLR', 1.0, 1.0)], [ChainStep('FlipLR', 1.0, 0.0)]]
    out = apply_chains_batched(images, chains, torch.Generator().manual_seed(0))
    assert torch.equal(out[0], images[0].flip(-1)) and torch.equal(out[1], images[1])
    assert torch.equal(apply_chains_batched(images, [[], []], torch.Generator()), images)
    with pytest.raises(ValueError, match='one per image'):
        apply_chains_batched(images, [[]], torch.Generator())


def test_range_and_randaugment_policies_sample_inside_their_ranges():
    policy = RangePolicy('p', [('Rotate', 0.5, 2.0, 4.0)])
    gen = torch.Generator().manual_seed(0)
    chains = [policy.sample_chain(gen) for _ in range(50)]
    assert all(c[0].op == 'Rotate' and c[0].prob == 0.5 and 2.0 <= c[0].magnitude <= 4.0 for c in chains)
    with pytest.raises(ValueError, match='range'):
        RangePolicy('p', [('Rotate', 1.0, 0.0, 1000.0)])
    ra = RandAugmentPolicy(num_ops=2, magnitude=9)
    chains = [ra.sample_chain(gen) for _ in range(200)]
    assert all(len(c) == 2 and c[0].op in RANDAUGMENT_OPS for c in chains)
    rotations = [abs(s.magnitude) for c in chains for s in c if s.op == 'Rotate']
    assert rotations and all(r == pytest.approx(9.0) for r in rotations)  # 9 of 30 of TrivialAugment's 30 degrees
    colours = [s.magnitude for c in chains for s in c if s.op == 'Color']
    assert min(colours) < 0 < max(colours)


def test_summary_in_pooled_standard_deviations():
    rows = {r['arm']: r for r in summarise({'none': dict(acc=[0.5, 0.6]), 'uniform': dict(acc=[0.6, 0.7]),
                                            'x': dict(acc=[0.7, 0.8])})}
    assert rows['x']['vs_none'] == pytest.approx(0.2)
    assert rows['x']['vs_none_pooled_std'] == pytest.approx(0.2 / 0.0707107, rel=1e-5)
    assert rows['x']['vs_uniform'] == pytest.approx(0.1)
