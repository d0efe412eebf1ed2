"""The shared arms table (det_autoaug/evaluation/arms.py) and what each comparison takes from it."""
from __future__ import annotations

import pytest

from det_autoaug.evaluation import arms
from det_autoaug.evaluation.compare_cls import BASELINE_ARMS as CLS_BASELINE_ARMS
from det_autoaug.evaluation.compare_cls import SEARCHED_ARMS as CLS_SEARCHED_ARMS
from det_autoaug.evaluation.compare_det import ARMS as DET_ARMS
from det_autoaug.evaluation.compare_det import SEARCHED_ARMS as DET_SEARCHED_ARMS
from det_autoaug.search.searchers import SEARCHERS


def test_every_arm_of_both_tasks_is_a_row_and_searched_arms_name_a_real_searcher():
    for name in (*DET_ARMS, *CLS_BASELINE_ARMS, *CLS_SEARCHED_ARMS):
        assert arms.get_arm(name).name == name
    for row in arms.ARMS.values():
        if row.kind == arms.SEARCHED:
            assert row.searcher in {k.lower() for k in SEARCHERS} | set(SEARCHERS), row
    # detection's searched arms are exactly the table's searched rows that it runs, with its settings
    assert set(DET_SEARCHED_ARMS) == {a for a in DET_ARMS if arms.get_arm(a).kind == arms.SEARCHED}
    searcher, cfg = DET_SEARCHED_ARMS['ddas_lookahead']
    assert searcher == 'ddas' and cfg['lookahead_steps'] == 25 and cfg['signal'] == 'lookahead'


def test_per_task_arguments_must_be_set_and_keep_their_place():
    row = arms.get_arm('ddas_lookahead')
    with pytest.raises(ValueError, match='set by each task'):
        row.searcher_cfg()
    _, cfg = row.searcher_cfg(lookahead_steps=7, lookahead_val_batches=2, extra=1)
    assert list(cfg)[:3] == ['signal', 'lookahead_steps', 'lookahead_val_batches'] and list(cfg)[-1] == 'extra'
    with pytest.raises(ValueError, match='has no searcher'):
        arms.get_arm('uniform').searcher_cfg()


def test_bad_rows_and_names_are_refused():
    with pytest.raises(ValueError, match="kind 'magic'"):
        arms.Arm('x', 'magic', 'd')
    with pytest.raises(ValueError, match='expected a searcher exactly when'):
        arms.Arm('x', arms.SEARCHED, 'd')
    with pytest.raises(ValueError, match='expected a searcher exactly when'):
        arms.Arm('x', arms.NONE, 'd', searcher='ddas')
    with pytest.raises(ValueError, match="unknown arm 'flip'"):
        arms.task_arms('none', 'flip')
    with pytest.raises(ValueError, match='expected each once'):
        arms.task_arms('none', 'none')


def test_describe_lists_each_arm_once_with_its_kind():
    text = arms.describe(['none', 'dada'])
    assert text.splitlines()[2] == '| none | none | no augmentation |'
    assert text.splitlines()[3].startswith('| dada | searched (dada) | DADA')
