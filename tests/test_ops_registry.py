"""The op table dispatches: every op has its kernels registered against its row, nothing else does."""
from __future__ import annotations

import pytest

from det_autoaug.ops.registry import BACKENDS, get_kernel, kernels, register_kernel
from det_autoaug.ops.table import OPS

NAMES = {op.name for op in OPS}
WARPS_BOXES = {'Rotate_Only_BBoxes', 'ShearX_Only_BBoxes', 'ShearY_Only_BBoxes', 'TranslateX_Only_BBoxes',
               'TranslateY_Only_BBoxes', 'Flip_Only_BBoxes'}


@pytest.mark.parametrize('backend', ['torch', 'cv2'])
def test_every_op_has_a_kernel_per_backend(backend):
    registered = kernels(backend)
    assert sorted(NAMES - set(registered)) == []
    assert sorted(set(registered) - NAMES) == []


def test_geometric_ops_have_their_matrices():
    assert set(kernels('matrix')) == {op.name for op in OPS if op.kind == 'geometric'}
    assert set(kernels('box_matrix')) == WARPS_BOXES
    assert set(kernels('box_matrix')) <= {op.name for op in OPS if op.bbox_only}


def test_no_kernel_for_an_op_outside_the_table():
    for backend in BACKENDS:
        assert set(kernels(backend)) <= NAMES


def test_registering_an_unknown_op_or_a_duplicate_raises():
    with pytest.raises(ValueError, match="'NoSuchOp'"):
        register_kernel('NoSuchOp', 'torch')
    with pytest.raises(ValueError, match="'Rotate_BBox'"):   # an alias is not a table name
        register_kernel('Rotate_BBox', 'cv2')
    with pytest.raises(ValueError, match="'Rotate'.*already has a 'torch' kernel"):
        register_kernel('Rotate', 'torch')
    with pytest.raises(ValueError, match="'jax'"):
        register_kernel('Rotate', 'jax')


def test_lookup_of_a_missing_kernel_names_the_op():
    with pytest.raises(KeyError, match="'Invert' has no matrix kernel"):
        get_kernel('Invert', 'matrix')
    with pytest.raises(ValueError, match="'jax'"):
        get_kernel('Invert', 'jax')
