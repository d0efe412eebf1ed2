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
from det_autoaug.evaluation.compare_det_report import merge_results, summarise
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
    # the shape of docs/results/compare_det.json: per arm, the per-seed values of the runs
    runs = {r['arm']: r for r in doc['runs']}
    assert doc['arms'] == {arm: dict(map=[runs[arm]['bbox_mAP']], map50=[runs[arm]['bbox_mAP_50']], seeds=[0])
                           for arm in ARMS}
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


def _part(folder: Path, arms, seeds, runs, searches=(), **settings) -> Path:
    """A work dir holding a results.json as compare_det writes it, with the given runs."""
    base = compare_det._settings(compare_det.parse_args(['--arms', *arms, '--seeds', *map(str, seeds)]))
    base.update(data_root='/data/', n_train=1500, device='cpu', **settings)
    runs = [dict(arm=a, seed=s, bbox_mAP=m, bbox_mAP_50=m50, train_seconds=300.0) for a, s, m, m50 in runs]
    folder.mkdir(parents=True)
    doc = dict(settings=base, runs=runs, searches=list(searches), command=f'part {folder.name}')
    (folder / 'results.json').write_text(json.dumps(doc))
    return folder


def test_merge_joins_parts_run_side_by_side(tmp_path: Path) -> None:
    search = dict(searcher='ddas', seed=0, apply_prob=0.31, top_entries=[dict(entry='TranslateX@3', ratio=1.2)],
                  search_steps=300, model_passes=2736, wall_seconds=150.0, search_seconds=140.0, epochs=2)
    a = _part(tmp_path / 'a', ['none', 'handpicked'], [0, 1],
              [('none', 1, 0.14, 0.30), ('none', 0, 0.18, 0.36), ('handpicked', 0, 0.29, 0.52)])
    b = _part(tmp_path / 'b', ['ddas', 'none'], [0],
              [('ddas', 0, 0.20, 0.41), ('none', 0, 0.18, 0.36)], searches=[search])
    c = _part(tmp_path / 'c', ['none'], [3], [('none', 3, 0.16, 0.33)])
    doc = merge_results([a, b, c / 'results.json'], tmp_path / 'out')
    assert doc['settings']['arms'] == ['none', 'handpicked', 'ddas'] and doc['settings']['seeds'] == [0, 1, 3]
    written = json.loads((tmp_path / 'out' / 'results.json').read_text())
    # the run both a and b hold alike is kept once; values in seed order
    assert written['arms'] == {'none': dict(map=[0.18, 0.14, 0.16], map50=[0.36, 0.30, 0.33], seeds=[0, 1, 3]),
                               'handpicked': dict(map=[0.29], map50=[0.52], seeds=[0]),
                               'ddas': dict(map=[0.20], map50=[0.41], seeds=[0])}
    assert written['searches'] == [search]
    assert [m['command'] for m in written['merged_from']] == ['part a', 'part b', 'part c']
    assert '| handpicked | 1 |' in (tmp_path / 'out' / 'results.md').read_text()
    # the command line: the same, printed
    out = compare_det.main(['--merge', str(a), str(c), '--work-dir', str(tmp_path / 'cli')])
    assert out['arms']['none']['map'] == [0.18, 0.14, 0.16]


def test_merge_refuses_what_is_not_one_comparison(tmp_path: Path) -> None:
    a = _part(tmp_path / 'a', ['none'], [0], [('none', 0, 0.18, 0.36)], epochs=24)
    other = _part(tmp_path / 'e', ['none'], [1], [('none', 1, 0.14, 0.30)], epochs=28)
    with pytest.raises(ValueError, match="setting 'epochs' is 24 in .*a/results.json but 28 in .*e/results.json"):
        merge_results([a, other], tmp_path / 'out')
    clash = _part(tmp_path / 'x', ['none'], [0], [('none', 0, 0.17, 0.36)], epochs=24)
    with pytest.raises(ValueError, match=r"run \('none', 0\) differs"):
        merge_results([a, clash], tmp_path / 'out')
    with pytest.raises(FileNotFoundError, match='missing/results.json does not exist'):
        merge_results([a, tmp_path / 'missing'], tmp_path / 'out')
    with pytest.raises(ValueError, match='1 source'):
        merge_results([a], tmp_path / 'out')
    with pytest.raises(SystemExit, match='--work-dir'):
        compare_det.main(['--merge', str(a), str(clash)])
    assert not (tmp_path / 'out').exists()
