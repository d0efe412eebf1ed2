"""tools/compare_det.py and det_autoaug.evaluation.compare_det: the quick comparison runs every arm and
writes the table, JSON and plot; the summary, the arms and the command line reject what they should."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import compare_det  # tools/ (conftest.py): the command line
from det_autoaug.evaluation.compare_det import augmentation
from det_autoaug.evaluation.compare_det_report import summarise
from det_helpers import ROOT

ARMS = ('none', 'handpicked', 'randaugment', 'trivialaugment', 'autoaug_v0', 'uniform', 'ddas', 'ddas_one_step',
        'ddas_paper', 'ddas_lookahead', 'dada', 'daas', 'daas_paired')
# arm -> searcher written in its policy file
SEARCHER = {'ddas_one_step': 'ddas', 'ddas_paper': 'ddas', 'ddas_lookahead': 'ddas', 'daas_paired': 'daas'}
# one-step DDAS: K = 3 copies + clean + validation; DAAS paired: 3; the look-ahead: 1 per step plus its rounds
PASSES_PER_STEP = {'ddas': 1, 'ddas_one_step': 3 + 2, 'ddas_paper': 3 + 2, 'ddas_lookahead': 1, 'dada': 4,
                   'daas': 1, 'daas_paired': 3}
LOOKAHEAD_POLICIES = {'ddas': 6, 'ddas_lookahead': 3, 'daas': 6}  # K per round


@pytest.fixture(scope='module')
def quick(tmp_path_factory) -> Path:
    """One --quick run in a subprocess (it hides CUDA and registers mmdet modules: keep it apart)."""
    work = tmp_path_factory.mktemp('compare') / 'out'
    cmd = [sys.executable, str(ROOT / 'tools' / 'compare_det.py'), '--quick', '--device', 'cpu',
           '--work-dir', str(work)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f'compare_det.py --quick failed ({done.returncode}):\n{done.stdout[-3000:]}\n'
                           f'{done.stderr[-3000:]}')
    return work


def test_quick_writes_table_json_and_plot(quick: Path) -> None:
    doc = json.loads((quick / 'results.json').read_text())
    assert doc['settings']['arms'] == list(ARMS)
    assert sorted((r['arm'], r['seed']) for r in doc['runs']) == sorted((a, 0) for a in ARMS)
    for arm in ARMS:
        s = doc['summary'][arm]
        assert s['n'] == 1
        for metric in ('bbox_mAP', 'bbox_mAP_50'):
            assert math.isfinite(s[metric]['mean']) and 0.0 <= s[metric]['mean'] <= 1.0
            assert s[metric]['std'] == 0.0
    table = (quick / 'results.md').read_text()
    for arm in ARMS:
        assert f'| {arm} | 1 |' in table
    png = (quick / 'compare_det.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 1000


def test_quick_search_cost_and_policies(quick: Path) -> None:
    doc = json.loads((quick / 'results.json').read_text())
    searches = {s['searcher']: s for s in doc['searches']}
    assert sorted(searches) == sorted(PASSES_PER_STEP) and len(doc['searches']) == len(PASSES_PER_STEP)
    runs = {r['arm']: r for r in doc['runs']}
    for name, search in searches.items():
        assert search['search_steps'] > 0
        # counted by the hook, so a searcher that skipped a pass would show here
        rounds = 0
        if name in LOOKAHEAD_POLICIES:  # --quick: rounds of 2 steps, (K + 1) branches x (2 steps + 1 val forward)
            rounds = search['search_steps'] // 2 * (LOOKAHEAD_POLICIES[name] + 1) * (2 + 1)
            assert rounds > 0
        assert search['model_passes'] == search['search_steps'] * PASSES_PER_STEP[name] + rounds, name
        assert search['wall_seconds'] >= search['search_seconds'] > 0
        policy = json.loads(Path(search['policy']).read_text())
        assert policy['searcher'] == SEARCHER.get(name, name)
        assert runs[name]['policy'] == search['policy']
    searched = json.loads(Path(searches['ddas']['policy']).read_text())
    uniform = json.loads((quick / 'uniform_seed0.json').read_text())
    assert uniform['space'] == searched['space'] and len(uniform['probs']) == len(searched['probs'])
    assert max(uniform['probs']) == pytest.approx(min(uniform['probs']))
    # The control differs from the DDAS policy only in p: same s, same entries per policy.
    assert uniform['apply_prob'] == pytest.approx(searched['apply_prob'])
    assert uniform['ops_per_policy'] == searched['ops_per_policy'] == 1
    assert 'DADA search seed 0' in (quick / 'results.md').read_text()


def test_summarise_mean_and_sample_std() -> None:
    runs = [dict(arm='none', seed=s, bbox_mAP=v, bbox_mAP_50=2 * v, train_seconds=1.0)
            for s, v in enumerate((0.1, 0.2, 0.3))]
    s = summarise(runs, ['none', 'ddas'])
    assert list(s) == ['none']
    assert s['none']['bbox_mAP']['mean'] == pytest.approx(0.2)
    assert s['none']['bbox_mAP']['std'] == pytest.approx(0.1)
    assert s['none']['bbox_mAP_50']['values'] == pytest.approx([0.2, 0.4, 0.6])


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(SystemExit):
        compare_det.parse_args(['--arms', 'flip'])
    with pytest.raises(SystemExit):
        compare_det._settings(compare_det.parse_args(['--epochs', '0']))
    for bad in ('0', '1.5', 'nan'):
        with pytest.raises(SystemExit, match=f'--uniform-apply-prob {bad}'):
            compare_det._settings(compare_det.parse_args(['--uniform-apply-prob', bad]))
    assert compare_det._settings(compare_det.parse_args(['--uniform-apply-prob', '0.75']))['uniform_apply_prob'] == 0.75
    with pytest.raises(SystemExit, match='--uniform-ops-per-policy 0'):
        compare_det._settings(compare_det.parse_args(['--uniform-ops-per-policy', '0']))
    settings = compare_det._settings(compare_det.parse_args(['--uniform-ops-per-policy', '1']))
    assert settings['uniform_ops_per_policy'] == 1
    with pytest.raises(ValueError, match='unknown arm'):
        augmentation('flip', None)
    with pytest.raises(ValueError, match='needs a policy file'):
        augmentation('ddas', None)
