"""tools/planted_harm_det.py: the detection planted-harm harness end to end (quick), its resume, its
single-entry policies and the paired-effect rule it shares with the classification harness."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from det_autoaug.evaluation.planted_harm import paired_effects
from det_autoaug.ops.spaces import get_space
from det_autoaug.policy.policy_file import load_policy_file

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'planted_harm_det.py'
LABELS = ['FlipLR', 'FlipUD', 'Rotate@10', 'TranslateX@3', 'Brightness@7']


def _run(*args: str) -> subprocess.CompletedProcess:
    # a subprocess: the tool hides CUDA and registers mmdet modules
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def quick(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp('planted_harm_det')
    done = _run('--quick', '--work-dir', str(work))
    if done.returncode != 0:
        raise RuntimeError(f'planted_harm_det.py --quick failed ({done.returncode}):\n{done.stdout[-3000:]}\n'
                           f'{done.stderr[-3000:]}')
    return work


def test_the_space_is_the_five_planted_entries():
    assert [e.label for e in get_space('det_planted')] == LABELS
    rotate = get_space('det_planted')[2]
    assert (rotate.op, rotate.magnitude) == ('Rotate', 30.0)  # level 10 of the detection convention


def test_quick_writes_ground_truth_searches_and_nulls(quick: Path):
    doc = json.loads((quick / 'results.json').read_text())
    assert doc['labels'] == LABELS
    gt = doc['ground_truth']
    assert [r['entry'] for r in gt['entries']] == LABELS
    assert len(gt['none']) == 2 and all(len(r['map']) == 2 and len(r['map50']) == 2 for r in gt['entries'])
    assert set(doc['searches']) == {'ddas', 'daas', 'dada'}
    assert set(doc['nulls']) == {'ddas', 'daas', 'dada'}
    assert all(len(runs) == 2 for runs in doc['nulls'].values())
    for group in ('searches', 'nulls'):
        for runs in doc[group].values():
            for run in runs:
                assert run['labels'] == LABELS
                assert len(run['probs']) == 5 and abs(sum(run['probs']) - 1) < 1e-6
                assert run['search_steps'] > 0 and run['model_passes'] > run['search_steps']
    assert set(doc['summary']['searchers']) == {'ddas', 'daas', 'dada'}
    assert all('null_p05' in row for row in doc['summary']['searchers'].values())


def test_each_ground_truth_run_trains_with_its_entry_alone(quick: Path):
    policy = load_policy_file(quick / 'gt_FlipUD_seed0' / 'policy.json')
    assert [e.label for e in policy.entries] == LABELS
    assert policy.probs == (0.0, 1.0, 0.0, 0.0, 0.0)
    assert policy.apply_prob == 0.5 and policy.ops_per_policy == 1
    assert not (quick / 'gt_none_seed0' / 'policy.json').exists()


def test_a_second_call_resumes_without_rerunning(quick: Path):
    before = {p.name: p.stat().st_mtime_ns for p in (quick / 'runs').glob('*.json')}
    done = _run('--quick', '--work-dir', str(quick))
    assert done.returncode == 0, done.stderr[-2000:]
    assert '0 runs to do' in done.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (quick / 'runs').glob('*.json')} == before
    assert '| searcher | harmful mass' in done.stdout


def test_bad_arguments_are_named():
    done = _run('--gt-prob', '1.5', '--quick')
    assert done.returncode != 0 and '--gt-prob 1.5' in done.stderr
    done = _run('--search-epochs', '0', '--quick')
    assert done.returncode != 0 and '--search-epochs 0: expected a positive integer' in done.stderr


def test_paired_effects_by_hand():
    # differences -0.05, -0.06, -0.04: mean -0.05, sd 0.01, se 0.01 / sqrt(3) = 0.005774;
    # t(0.975, 2) = 4.3027 gives a bound of 0.02484: harmful. +0.01, -0.01, 0: within it, neutral.
    rows = paired_effects([0.10, 0.20, 0.30], {'a': [0.05, 0.14, 0.26], 'b': [0.11, 0.19, 0.30]}, 'map',
                          log=lambda _: None)
    a, b = rows
    assert a['entry'] == 'a' and a['map'] == [0.05, 0.14, 0.26]
    assert a['effect'] == pytest.approx(-0.05) and a['se'] == pytest.approx(0.0057735, rel=1e-4)
    assert a['class'] == 'harmful' and b['class'] == 'neutral'
    with pytest.raises(ValueError, match='c: 2 seeds of map but none has 3'):
        paired_effects([0.1, 0.2, 0.3], {'c': [0.1, 0.2]}, 'map', log=lambda _: None)
