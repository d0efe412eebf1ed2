"""Reliability (issue 15): no crash on valid input, bounded policy files with clear errors.

Two parts. The kernels: every op of the table on every image size from 1 px, uint8 and the float
dtypes, contiguous, channels_last and sliced batches, through the torch and the cv2 kernel, plus
the reproducers the issue names. The policy files: every field bounded, booleans are not numbers,
and every error names the file and the field.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from det_autoaug.ops import OPS, apply_op, get_op, sample_params
from det_autoaug.ops.cv2_ops import apply_op_np
from det_autoaug.policy.policy_file import (MAX_ENTRIES, MAX_EPOCH, MAX_FILE_BYTES, MAX_OPS_PER_POLICY,
                                            MAX_SNAPSHOTS, MAX_SUBPOLICIES, load_policy_file)

ALL = [op.name for op in OPS]
SIZES = [(1, 1), (1, 5), (2, 48), (5, 1), (64, 64)]
FLOATS = [torch.float32, torch.float16, torch.bfloat16]
FORMATS = ['contiguous', 'channels_last', 'sliced']
# Float identity tolerance on the 0..255 scale: a warp by the identity matrix goes through
# kornia's normalised float32 grid and is off by up to ~4e-3 at 64 px.
FLOAT_IDENTITY_ATOL = 1e-2


# ----------------------------------------------------------------------------- kernels: property test

def _images(dtype, channels, height, width, memory_format, generator):
    """A batch of 2 with random levels, laid out as ``memory_format`` asks."""
    if memory_format == 'sliced':
        wide = torch.randint(0, 256, (2, channels, height, 2 * width), generator=generator).to(dtype)
        return wide[..., ::2]
    images = torch.randint(0, 256, (2, channels, height, width), generator=generator).to(dtype)
    if memory_format == 'channels_last':
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def _boxes(height, width):
    """Image 0: the whole image and its top-left quarter (at least 1 px); image 1: no box."""
    return [torch.tensor([[0.0, 0.0, width, height], [0.0, 0.0, max(1.0, width / 2), max(1.0, height / 2)]]),
            torch.zeros(0, 4)]


def _magnitudes(name, generator):
    lo, hi = get_op(name).magnitude_range
    return [0.0, hi, lo + float(torch.rand(1, generator=generator)) * (hi - lo)]


def _run(case, fn):
    try:
        return fn()
    except Exception as e:  # valid input: any exception fails, with the case that raised it
        pytest.fail(f'{case}: {type(e).__name__}: {e}')


@pytest.mark.parametrize('name', ALL)
def test_torch_kernel_accepts_every_size_dtype_and_memory_format(name):
    g = torch.Generator().manual_seed(0)
    for height, width in SIZES:
        boxes = _boxes(height, width)
        for dtype in [torch.uint8] + FLOATS:
            for memory_format in FORMATS:
                for channels in (1, 3):
                    images = _images(dtype, channels, height, width, memory_format, g)
                    before = images.clone()
                    params = sample_params(name, 2, height, width, boxes, generator=g, box_prob=1.0)
                    for m in _magnitudes(name, g):
                        case = f'{name} {height}x{width} {dtype} {memory_format} C={channels} m={m:g}'
                        out = _run(case, lambda: apply_op(name, images, boxes, m, params))
                        assert out.images.shape == images.shape and out.images.dtype == dtype, case
                        assert torch.equal(images, before), f'{case}: input modified'
                        if dtype.is_floating_point:
                            assert bool(torch.isfinite(out.images).all()), f'{case}: non-finite pixels'
                        if m == 0.0:
                            if dtype == torch.uint8:
                                assert torch.equal(out.images, images), f'{case}: not the identity'
                            else:
                                torch.testing.assert_close(out.images.float(), images.float(), rtol=0,
                                                           atol=FLOAT_IDENTITY_ATOL, msg=case)
                            for b, after, keep in zip(boxes, out.boxes, out.keep):
                                assert bool(keep.all()) and torch.equal(after, b), f'{case}: boxes changed'


def _np_layouts(image):
    """The same uint8 image as a contiguous array, a strided slice, a negative-stride view, 2-D grey."""
    wide = np.repeat(image, 2, axis=1)
    return {'contiguous': image, 'sliced': wide[:, ::2], 'flipped': np.flip(np.flip(image, 0), 0),
            'grey': np.ascontiguousarray(image[:, :, 0])}


@pytest.mark.parametrize('name', ALL)
def test_cv2_kernel_accepts_every_size_and_layout(name):
    g = torch.Generator().manual_seed(0)
    rng = np.random.RandomState(0)
    for height, width in SIZES:
        boxes = _boxes(height, width)[0].numpy()
        params = sample_params(name, 1, height, width, [torch.from_numpy(boxes)], generator=g, box_prob=1.0)
        image = rng.randint(0, 256, (height, width, 3)).astype(np.uint8)
        for layout, view in _np_layouts(image).items():
            before = view.copy()
            for m in _magnitudes(name, g):
                case = f'cv2 {name} {height}x{width} {layout} m={m:g}'
                out, kept, keep = _run(case, lambda: apply_op_np(name, view, boxes, m, params))
                assert out.shape == view.shape and out.dtype == np.uint8, case
                assert np.array_equal(view, before), f'{case}: input modified'
                if m == 0.0:
                    assert np.array_equal(out, view), f'{case}: not the identity'
                    assert keep.all() and np.array_equal(kept, boxes), f'{case}: boxes changed'


# ----------------------------------------------------------------------------- kernels: reproducers

def test_sharpness_under_3_px_is_the_identity_as_in_pil():
    images = torch.zeros(1, 3, 2, 48, dtype=torch.uint8)
    assert torch.equal(apply_op('Sharpness', images, None, 0.0).images, images)
    g = torch.Generator().manual_seed(0)
    for height, width in [(2, 48), (48, 2), (1, 1)]:
        images = torch.randint(0, 256, (2, 3, height, width), generator=g, dtype=torch.uint8)
        for m in get_op('Sharpness').magnitude_range:
            assert torch.equal(apply_op('Sharpness', images, None, m).images, images)
            hwc = images[0].permute(1, 2, 0).numpy()
            assert np.array_equal(apply_op_np('Sharpness', hwc, None, m)[0], hwc)


@pytest.mark.parametrize('name', ['Equalize', 'Equalize_Only_BBoxes'])
def test_equalize_on_channels_last_batches(name):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 200, (3, 3, 32, 40), generator=g, dtype=torch.uint8)
    boxes = [torch.tensor([[2.0, 2.0, 38.0, 30.0]])] * 3   # over 255 pixels: equalising changes them
    params = sample_params(name, 3, 32, 40, boxes, generator=g, box_prob=1.0)
    expected = apply_op(name, images, boxes, 1.0, params).images
    assert not torch.equal(expected, images)
    got = apply_op(name, images.contiguous(memory_format=torch.channels_last), boxes, 1.0, params).images
    assert torch.equal(got, expected)


@pytest.mark.parametrize('value', [float('nan'), float('inf'), -float('inf')])
@pytest.mark.parametrize('name', ALL)
def test_non_finite_pixels_are_refused_by_every_op(name, value):
    images = torch.full((2, 3, 8, 8), 100.0)
    images[1, 2, 3, 4] = value
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])] * 2
    params = sample_params(name, 2, 8, 8, boxes, generator=torch.Generator().manual_seed(0), box_prob=1.0)
    for m in (0.0, get_op(name).magnitude_range[1]):   # whatever the draw: the identity too
        with pytest.raises(ValueError, match=r'images\[1, 2, 3, 4\]=(nan|inf|-inf).*finite'):
            apply_op(name, images, boxes, m, params)
        with pytest.raises(ValueError, match=r'images\[1, 2, 3, 4\]'):
            apply_op(name, images.half(), boxes, m, params)


def test_cv2_kernel_takes_uint8_only_so_no_nan_reaches_it():
    image = np.full((8, 8, 3), np.nan, np.float32)
    with pytest.raises(ValueError, match='dtype uint8'):
        apply_op_np('Equalize', image, None, 1.0)


def test_empty_images_are_refused():
    with pytest.raises(ValueError, match=r'H >= 1 and W >= 1'):
        apply_op('Identity', torch.zeros(1, 3, 0, 5), None, 0.0)


def _wide_batch(dtype, height=16, width=1400):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (1, 3, height, width), generator=g).to(dtype)


def test_float16_flip_only_bboxes_on_a_large_box_matches_float32():
    boxes = [torch.tensor([[1003.0, 1.0, 1390.0, 15.0]])]
    params = sample_params('Flip_Only_BBoxes', 1, 16, 1400, boxes, box_prob=1.0)
    reference = apply_op('Flip_Only_BBoxes', _wide_batch(torch.float32), boxes, 1.0, params).images
    got = apply_op('Flip_Only_BBoxes', _wide_batch(torch.float16), boxes, 1.0, params).images
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got.float(), reference, rtol=0, atol=0.125)   # float16 spacing at 255


def test_bfloat16_solarize_only_bboxes_mask_is_where_the_box_is():
    boxes = [torch.tensor([[1003.0, 1.0, 1390.0, 15.0]])]
    params = sample_params('Solarize_Only_BBoxes', 1, 16, 1400, boxes, box_prob=1.0)
    reference = apply_op('Solarize_Only_BBoxes', _wide_batch(torch.float32), boxes, 128.0, params).images
    got = apply_op('Solarize_Only_BBoxes', _wide_batch(torch.bfloat16), boxes, 128.0, params).images
    # Integer levels are exact in bfloat16, so only a shifted mask could make these differ.
    assert torch.equal(got.float(), reference)


# ----------------------------------------------------------------------------- policy files

def _doc(**overrides):
    doc = {'schema': 'det_autoaug.policy', 'version': 1, 'searcher': 'ddas', 'space': 'test',
           'entries': [{'op': 'Rotate', 'magnitude': 9.0, 'level': 3.0}, {'op': 'Color', 'magnitude': 0.44}],
           'probs': [0.5, 0.5], 'apply_prob': 0.35, 'ops_per_policy': 2,
           'trajectory': [{'epoch': 0, 'probs': [0.5, 0.5], 'apply_prob': 0.35}], 'meta': {}}
    doc.update(overrides)
    return doc


def _sub_doc(**overrides):
    ops = [{'op': 'Rotate', 'magnitude': 9.0, 'prob': 0.5}, {'op': 'Color', 'magnitude': 0.5, 'prob': 1.0}]
    return _doc(version=2, subpolicies=[{'prob': 1.0, 'ops': ops}], **overrides)


def _write(tmp_path, content, name='policy.json'):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _refused(path, message, error=ValueError):
    with pytest.raises(error, match=message) as info:
        load_policy_file(path)
    assert str(path) in str(info.value)


def test_valid_policy_files_load(tmp_path):
    assert load_policy_file(_write(tmp_path, _doc(ops_per_policy=MAX_OPS_PER_POLICY))).ops_per_policy == 16
    assert len(load_policy_file(_write(tmp_path, _sub_doc(), 'sub.json')).subpolicies) == 1


BOOLEANS = {
    'version': dict(version=True),
    'ops_per_policy': dict(ops_per_policy=True),
    'apply_prob': dict(apply_prob=True),
    'probs': dict(probs=[True, False]),
    'magnitude': dict(entries=[{'op': 'Rotate', 'magnitude': True}, {'op': 'Color', 'magnitude': 0.4}]),
    'level': dict(entries=[{'op': 'Rotate', 'magnitude': 9.0, 'level': True}, {'op': 'Color', 'magnitude': 0.4}]),
    'trajectory epoch': dict(trajectory=[{'epoch': True, 'probs': [0.5, 0.5], 'apply_prob': 0.3}]),
}


@pytest.mark.parametrize('case', sorted(BOOLEANS))
def test_booleans_are_not_numbers(tmp_path, case):
    _refused(_write(tmp_path, _doc(**BOOLEANS[case])), 'True')


def test_version_true_is_not_version_1(tmp_path):
    _refused(_write(tmp_path, _doc(version=True)), r'"version" is True: expected the integer 1')


@pytest.mark.parametrize('value', [MAX_OPS_PER_POLICY + 1, 10 ** 6, 10 ** 30])
def test_ops_per_policy_is_bounded(tmp_path, value):
    _refused(_write(tmp_path, _doc(ops_per_policy=value)), rf'ops_per_policy={value} is invalid.*\[1, 16\]')


def test_list_lengths_are_bounded(tmp_path):
    n = MAX_ENTRIES + 1
    entries = [{'op': 'Rotate', 'magnitude': 9.0}] * n
    _refused(_write(tmp_path, _doc(entries=entries, probs=[1 / n] * n, trajectory=None), 'entries.json'),
             f'entries has {n} items: the limit is {MAX_ENTRIES}')
    snapshots = [{'epoch': 0, 'probs': [0.5, 0.5], 'apply_prob': 0.3}] * (MAX_SNAPSHOTS + 1)
    _refused(_write(tmp_path, _doc(trajectory=snapshots), 'trajectory.json'),
             f'trajectory has {MAX_SNAPSHOTS + 1} items')
    late = [{'epoch': MAX_EPOCH + 1, 'probs': [0.5, 0.5], 'apply_prob': 0.3}]
    _refused(_write(tmp_path, _doc(trajectory=late), 'epoch.json'), r'trajectory\[0\].epoch=1000001')
    n = MAX_SUBPOLICIES + 1
    subpolicies = [{'prob': 1 / n, 'ops': [{'op': 'Rotate', 'magnitude': 9.0, 'prob': 1.0}]}] * n
    _refused(_write(tmp_path, _doc(version=2, subpolicies=subpolicies), 'subpolicies.json'),
             f'subpolicies has {n} items')
    ops = [{'op': 'Rotate', 'magnitude': 9.0, 'prob': 1.0}] * (MAX_OPS_PER_POLICY + 1)
    _refused(_write(tmp_path, _doc(version=2, subpolicies=[{'prob': 1.0, 'ops': ops}]), 'ops.json'),
             r'subpolicies\[0\].ops has 17 items')


def test_bad_op_in_a_subpolicy_is_reported_where_it_is(tmp_path):
    doc = _sub_doc()
    doc['subpolicies'][0]['ops'][1]['op'] = 'Foo'
    with pytest.raises(ValueError, match=r"subpolicies\[0\].ops\[1\] has unknown op 'Foo'") as info:
        load_policy_file(_write(tmp_path, doc))
    assert 'entries[' not in str(info.value)
    doc = _sub_doc()
    doc['subpolicies'][0]['ops'][0]['magnitude'] = 500.0
    _refused(_write(tmp_path, doc, 'magnitude.json'), r'subpolicies\[0\].ops\[0\] \(Rotate\) has magnitude 500.0')


def test_file_size_is_bounded(tmp_path):
    padding = ' ' * (MAX_FILE_BYTES + 1 - len(json.dumps(_doc())))
    _refused(_write(tmp_path, json.dumps(_doc()) + padding), f'larger than the limit of {MAX_FILE_BYTES} bytes')


def test_non_utf8_bytes_name_the_file(tmp_path):
    _refused(_write(tmp_path, b'{"schema": "\xff\xfe"}'), 'is not UTF-8 text')


def test_json_errors_name_the_file(tmp_path):
    _refused(_write(tmp_path, '{"schema": '), 'is not valid JSON')
    _refused(_write(tmp_path, '{"ops_per_policy": ' + '9' * 5000 + '}', 'digits.json'), 'is not valid JSON')


def test_deep_nesting_is_a_value_error(tmp_path):
    _refused(_write(tmp_path, '[' * 100_000 + ']' * 100_000), 'too deeply')
    meta = {}
    for _ in range(40):
        meta = {'x': meta}
    _refused(_write(tmp_path, _doc(meta=meta), 'meta.json'), 'nests lists or objects 42 deep: the limit is 32')


def test_directory_is_reported_as_a_directory(tmp_path):
    folder = tmp_path / 'policy.json'
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match='is a directory') as info:
        load_policy_file(folder)
    assert str(folder) in str(info.value) and 'does not exist' not in str(info.value)
