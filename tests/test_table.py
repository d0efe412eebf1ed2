"""The op table, the named spaces and the generated docs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import det_autoaug
from det_autoaug.ops.spaces import SPACES, get_space
from det_autoaug.ops.table import MAX_LEVEL, OPS, check_magnitude, get_op

ROOT = Path(__file__).resolve().parents[1]


def test_available_ops_lists_every_table_op_with_its_metadata():
    listing = det_autoaug.available_ops()
    assert [o['name'] for o in listing] == [op.name for op in OPS]
    for item in listing:
        assert {'name', 'magnitude_range', 'moves_boxes', 'bbox_only', 'grad', 'kind'} <= set(item)
        lo, hi = item['magnitude_range']
        assert lo <= 0.0 <= hi, f"{item['name']}: 0 (the identity) must be a valid magnitude"
        assert item['grad'] in ('autograd', 'straight_through', 'none')


def test_named_spaces_have_the_published_sizes():
    assert len(get_space('ddas_cifar')) == 52
    assert len(get_space('ddas_imagenet')) == 32
    assert len({e.op for e in get_space('autoaug_det')}) == 25
    assert len({e.op for e in get_space('autoaug_det') if get_op(e.op).bbox_only}) == 9
    assert len(get_space('det_default')) == 36


@pytest.mark.parametrize('space', sorted(SPACES))
def test_space_magnitudes_are_valid(space):
    for entry in SPACES[space]:
        check_magnitude(get_op(entry.op), entry.magnitude)


def test_level_conventions_of_posterize_and_solarize():
    posterize, solarize = get_op('Posterize'), get_op('Solarize')
    # DDAS: keep 4 - int(0.4 level) bits (at least 1); TF detection: keep int(0.4 level) bits (at least 1)
    assert posterize.magnitude_at(0, 'ddas') == 4 and posterize.magnitude_at(10, 'ddas') == 7
    assert posterize.magnitude_at(10, 'det') == 4 and posterize.magnitude_at(0, 'det') == 7
    # DDAS threshold 256 - 25.6 level; TF threshold 25.6 level; magnitude = 256 - threshold
    assert solarize.magnitude_at(0, 'ddas') == 0 and solarize.magnitude_at(10, 'det') == pytest.approx(0)
    assert get_op('Rotate').magnitude_at(10) == 30 and get_op('TranslateX').magnitude_at(10) == 250 / 640


def test_bad_names_levels_and_magnitudes_raise_with_the_value():
    with pytest.raises(KeyError, match='Rotat'):
        get_op('Rotat')
    with pytest.raises(ValueError, match='level=15'):
        get_op('Rotate').magnitude_at(15)
    with pytest.raises(ValueError, match=f'{MAX_LEVEL:g}'):
        get_op('Rotate').magnitude_at(-1)
    with pytest.raises(ValueError, match='magnitude=50'):
        check_magnitude(get_op('Rotate'), 50)
    with pytest.raises(KeyError, match='nope'):
        get_space('nope')
    assert get_op('Rotate_BBox') is get_op('Rotate')


def test_docs_are_generated_from_the_table():
    done = subprocess.run([sys.executable, str(ROOT / 'tools' / 'gen_ops_doc.py'), '--check'],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
