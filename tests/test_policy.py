"""Policy layer: published policies, the policy file, chain sampling and application, mmdet export."""
from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest
import torch

from det_autoaug.ops.spaces import SpaceEntry, get_space
from det_autoaug.ops.table import get_op
from det_autoaug.policy import (PUBLISHED_POLICIES, ChainStep, PublishedPolicy, SearchedPolicy,
                                apply_chain_np, apply_chains_torch, build_policy, image_generators,
                                load_policy_file, save_policy_file, schedule_index, to_mmdet_autoaugment)
from det_autoaug.policy.policy_file import policy_from_dict

ENTRIES = (SpaceEntry('Identity', 1.0), SpaceEntry('Rotate', 9.0, 3.0), SpaceEntry('Color', 0.44, 7.0))


def _image(h=32, w=40, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)


def _policy_doc(**overrides):
    doc = {'schema': 'det_autoaug.policy', 'version': 1, 'searcher': 'ddas', 'space': 'test',
           'entries': [{'op': e.op, 'magnitude': e.magnitude, 'level': e.level} for e in ENTRIES],
           'probs': [0.5, 0.3, 0.2], 'apply_prob': 0.35, 'ops_per_policy': 2,
           'trajectory': [{'epoch': 0, 'probs': [1 / 3] * 3, 'apply_prob': 0.35},
                          {'epoch': 1, 'probs': [0.5, 0.3, 0.2], 'apply_prob': 0.35}],
           'meta': {'iterations': 10}}
    doc.update(overrides)
    return doc


def _write(tmp_path, doc, name='policy.json'):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


# ----------------------------------------------------------------------------- published policies

def test_published_policies_resolve_with_valid_levels():
    counts = {name: len(subs) for name, subs in PUBLISHED_POLICIES.items()}
    assert counts == {'autoaug_det_v0': 5, 'autoaug_det_v1': 20, 'autoaug_det_v2': 15, 'autoaug_det_v3': 15}
    for name, subs in PUBLISHED_POLICIES.items():
        for sub in subs:
            for op, prob, level in sub:
                spec = get_op(op)  # TF aliases resolve
                assert 0.0 <= prob <= 1.0 and 0 <= level <= 10, (name, op, prob, level)
                lo, hi = spec.magnitude_range
                assert lo <= spec.magnitude_at(level, 'det') <= hi
        policy = build_policy(name)
        assert isinstance(policy, PublishedPolicy) and len(policy.sub_policies) == counts[name]
    assert all(len(sub) == 3 for sub in PUBLISHED_POLICIES['autoaug_det_v2'][:2])
    assert PUBLISHED_POLICIES['autoaug_det_v1'][:5] == PUBLISHED_POLICIES['autoaug_det_v0']


def test_published_sampling_is_uniform_over_sub_policies():
    policy = build_policy('autoaug_det_v0')
    g = torch.Generator().manual_seed(0)
    counts = np.zeros(5)
    for _ in range(1500):
        chain = policy.sample_chain(g)
        counts[[list(s) for s in policy.sub_policies].index(chain)] += 1
    assert np.all(np.abs(counts / 1500 - 0.2) < 0.04), counts
    first = policy.sub_policies[0]
    assert first[0] == ChainStep('TranslateX', get_op('TranslateX').magnitude_at(4), 0.6)


# ----------------------------------------------------------------------------- searched policies

def test_searched_policy_apply_frequency_and_entry_frequencies(tmp_path):
    path = save_policy_file(tmp_path / 'p.json', searcher='ddas', space='test', entries=ENTRIES,
                            probs=[0.7, 0.2, 0.1], apply_prob=0.3).path
    policy = build_policy(path)
    assert isinstance(policy, SearchedPolicy) and not policy.uses_epoch
    g = torch.Generator().manual_seed(1)
    chains = [policy.sample_chain(g) for _ in range(2000)]
    applied = [c for c in chains if c]
    assert abs(len(applied) / 2000 - 0.3) < 0.035
    assert all(len(c) == 2 and all(s.prob == 1.0 for s in c) for c in applied)
    ops = [s.op for c in applied for s in c]
    assert abs(ops.count('Identity') / len(ops) - 0.7) < 0.05
    assert abs(ops.count('Color') / len(ops) - 0.1) < 0.04


def test_schedule_index_matches_ddas_formula():
    assert [schedule_index(e, 200, 20) for e in (0, 10, 11, 20, 21, 199)] == [0, 0, 1, 1, 2, 19]
    assert [schedule_index(e, 5, 5) for e in range(5)] == [0, 0, 1, 2, 3]  # the 0.1 shifts by one
    assert [schedule_index(e, 3, 6) for e in range(3)] == [0, 1, 3]
    for e in range(37):
        assert schedule_index(e, 37, 4) == min(math.floor(e / ((37 + 0.1) / 4)), 3)
    with pytest.raises(ValueError, match='epoch=5'):
        schedule_index(5, 5, 2)
    with pytest.raises(ValueError, match='num_snapshots'):
        schedule_index(0, 5, 0)


def test_searched_policy_follows_the_trajectory_schedule():
    doc = _policy_doc(apply_prob=0.5, trajectory=[{'epoch': 0, 'probs': [0, 1, 0], 'apply_prob': 0.0},
                                                  {'epoch': 1, 'probs': [0, 0, 1], 'apply_prob': 1.0}])
    policy = build_policy(policy_from_dict(doc), train_epochs=4)
    assert policy.uses_epoch
    g = torch.Generator().manual_seed(0)
    # 4 epochs over 2 snapshots: floor(e / 2.05) -> epochs 0..2 use snapshot 0, epoch 3 snapshot 1
    assert all(policy.sample_chain(g, epoch=e) == [] for e in (0, 1, 2) for _ in range(50))
    late = [policy.sample_chain(g, epoch=3) for _ in range(50)]
    assert all([s.op for s in c] == ['Color', 'Color'] for c in late)
    # no epoch (or no train_epochs): the final policy
    final = [policy.sample_chain(g) for _ in range(400)]
    assert 0.4 < sum(bool(c) for c in final) / 400 < 0.6
    unscheduled = build_policy(policy_from_dict(doc))
    assert unscheduled.distribution(epoch=0)[1] == 0.5
    assert unscheduled.distribution(epoch=0, train_epochs=4)[1] == 0.0
    with pytest.raises(ValueError, match='epoch=4'):
        policy.sample_chain(g, epoch=4)


# ----------------------------------------------------------------------------- policy file

def test_policy_file_round_trip(tmp_path):
    path = tmp_path / 'sub' / 'policy.json'
    space = get_space('det_default')
    probs = torch.softmax(torch.linspace(-1, 1, len(space)), 0)
    trajectory = [{'epoch': e, 'probs': probs.tolist(), 'apply_prob': 0.3 + 0.1 * e} for e in range(3)]
    written = save_policy_file(path, searcher='ddas', space='det_default', entries=space, probs=probs,
                               apply_prob=0.4, ops_per_policy=2, trajectory=trajectory,
                               meta={'iterations': 7, 'config': 'x.py'})
    loaded = load_policy_file(path)
    assert loaded == written
    assert loaded.entries == space and loaded.probs == tuple(probs.tolist()) and loaded.apply_prob == 0.4
    assert [s.epoch for s in loaded.trajectory] == [0, 1, 2] and loaded.trajectory[2].apply_prob == 0.5
    assert loaded.meta['iterations'] == 7 and 'created' in loaded.meta
    doc = json.loads(path.read_text())
    assert list(doc) == ['schema', 'version', 'searcher', 'space', 'entries', 'probs', 'apply_prob',
                         'ops_per_policy', 'trajectory', 'meta']
    assert list(doc['meta']) == sorted(doc['meta'])
    assert os.listdir(path.parent) == ['policy.json']  # no temporary file left behind
    # a second save over the same path replaces it atomically
    save_policy_file(path, searcher='ddas', space='det_default', entries=space, probs=probs, apply_prob=0.1)
    assert load_policy_file(path).apply_prob == 0.1 and load_policy_file(path).trajectory == ()


BAD_DOCS = {
    'wrong schema': (dict(schema='something.else'), 'schema'),
    'version mismatch': (dict(version=2), 'schema version mismatch: file has 2, this det_autoaug reads 1'),
    'unknown op': (dict(entries=[{'op': 'Foo', 'magnitude': 1.0}] * 3), "unknown op 'Foo'"),
    'magnitude out of range': (dict(entries=[{'op': 'Rotate', 'magnitude': 90.0, 'level': None}] * 3),
                               'magnitude 90.0 out of range'),
    'level out of range': (dict(entries=[{'op': 'Rotate', 'magnitude': 9.0, 'level': 20}] * 3), 'level 20'),
    'probs length': (dict(probs=[0.5, 0.5]), 'probs has 2 values but there are 3 entries'),
    'probs negative': (dict(probs=[1.2, -0.1, -0.1]), r'probs\[1\]=-0.1'),
    'probs sum': (dict(probs=[0.5, 0.3, 0.3]), 'probs sums to 1.1'),
    'apply_prob': (dict(apply_prob=1.5), 'apply_prob=1.5'),
    'ops_per_policy': (dict(ops_per_policy=0), 'ops_per_policy=0'),
    'trajectory not a list': (dict(trajectory={'epoch': 0}), 'trajectory must be a list'),
    'trajectory item missing keys': (dict(trajectory=[{'epoch': 0, 'probs': [1, 0, 0]}]), r'trajectory\[0\]'),
    'trajectory probs length': (dict(trajectory=[{'epoch': 0, 'probs': [1.0], 'apply_prob': 0.3}]),
                                r'trajectory\[0\].probs has 1 values'),
    'trajectory epoch order': (dict(trajectory=[{'epoch': 2, 'probs': [1, 0, 0], 'apply_prob': 0.3},
                                                {'epoch': 1, 'probs': [1, 0, 0], 'apply_prob': 0.3}]),
                               r'trajectory\[1\].epoch=1'),
    'trajectory apply_prob': (dict(trajectory=[{'epoch': 0, 'probs': [1, 0, 0], 'apply_prob': -1}]),
                              r'trajectory\[0\].apply_prob=-1'),
}


@pytest.mark.parametrize('case', sorted(BAD_DOCS))
def test_policy_file_errors_name_the_path_and_the_problem(tmp_path, case):
    overrides, message = BAD_DOCS[case]
    path = _write(tmp_path, _policy_doc(**overrides))
    with pytest.raises(ValueError, match=message) as info:
        load_policy_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=message):
        build_policy(str(path))


def test_policy_file_missing_and_not_json(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.json'):
        load_policy_file(tmp_path / 'missing.json')
    with pytest.raises(FileNotFoundError, match='missing.json'):
        build_policy(str(tmp_path / 'missing.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"schema": ')
    with pytest.raises(ValueError, match='not valid JSON'):
        load_policy_file(bad)


def test_save_policy_file_validates_before_writing(tmp_path):
    path = tmp_path / 'p.json'
    with pytest.raises(ValueError, match='probs has 2 values'):
        save_policy_file(path, searcher='ddas', space='s', entries=ENTRIES, probs=[0.5, 0.5], apply_prob=0.3)
    with pytest.raises(ValueError, match='meta is not JSON-serialisable'):
        save_policy_file(path, searcher='ddas', space='s', entries=ENTRIES, probs=[0.5, 0.3, 0.2],
                         apply_prob=0.3, meta={'x': object()})
    assert not path.exists() and os.listdir(tmp_path) == []


def test_build_policy_rejects_unknown_names():
    with pytest.raises(ValueError, match="'autoaug_det_v9' is neither a published policy"):
        build_policy('autoaug_det_v9')
    with pytest.raises(ValueError, match='policy spec'):
        build_policy(3)
    assert isinstance(build_policy(policy_from_dict(_policy_doc())), SearchedPolicy)


# ----------------------------------------------------------------------------- applying chains

def test_apply_chain_np_drops_boxes_and_keeps_the_mask_over_the_input():
    image = _image(32, 40)
    boxes = np.array([[18, 5, 22, 9], [0, 10, 40, 20], [17, 22, 23, 30]], np.float32)
    big = get_op('TranslateX').magnitude_range[1]  # 0.55 * 40 px = 22 px: the small boxes leave either way
    g = torch.Generator().manual_seed(0)
    out, kept, keep = apply_chain_np(image, boxes, [ChainStep('TranslateX', big, 1.0)], g)
    assert keep.tolist() == [False, True, False] and kept.shape == (1, 4)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, _image(32, 40))  # input untouched
    labels = np.array([3, 4, 5])
    assert labels[keep].tolist() == [4]
    # keep composes across steps: it always indexes the original boxes
    for seed in range(5):
        chain = [ChainStep('TranslateX', 0.3, 1.0), ChainStep('Rotate', 30.0, 1.0), ChainStep('TranslateY', 0.4, 1.0)]
        _, kept, keep = apply_chain_np(image, boxes, chain, torch.Generator().manual_seed(seed))
        assert keep.shape == (3,) and kept.shape == (int(keep.sum()), 4)
    out, kept, keep = apply_chain_np(image, None, [ChainStep('Equalize', 1.0, 1.0)], g)
    assert kept.shape == (0, 4) and keep.shape == (0,)


def test_step_probability_and_bbox_only_rule():
    image = _image(24, 24)
    boxes = np.array([[2, 2, 12, 12]], np.float32)
    g = torch.Generator().manual_seed(0)
    never = apply_chain_np(image, boxes, [ChainStep('Invert', 1.0, 0.0)], g)[0]
    assert np.array_equal(never, image)
    always = apply_chain_np(image, boxes, [ChainStep('Invert', 1.0, 1.0)], g)[0]
    assert np.array_equal(always, 255 - image)
    # bbox-only ops: each box selected with probability prob / 3
    changed = sum(not np.array_equal(apply_chain_np(image, boxes, [ChainStep('Flip_Only_BBoxes', 1.0, 0.9)], g)[0],
                                     image) for _ in range(600))
    assert abs(changed / 600 - 0.3) < 0.06


def _replay_case():
    images = np.stack([_image(32, 40, seed) for seed in range(3)])
    boxes = [np.array([[4, 4, 20, 24], [22, 6, 38, 30]], np.float32), np.array([[10, 8, 30, 28]], np.float32),
             np.zeros((0, 4), np.float32)]
    chains = [
        [ChainStep('Rotate', 10.0, 1.0), ChainStep('Color', 0.5, 1.0)],
        [ChainStep('Rotate', 20.0, 1.0), ChainStep('TranslateY_Only_BBoxes', 0.1, 1.0),
         ChainStep('Equalize', 1.0, 1.0)],
        [ChainStep('Cutout', 0.3, 0.5), ChainStep('ShearX', 0.2, 1.0)],
    ]
    return images, boxes, chains


def test_apply_chains_torch_matches_per_image_application():
    images, boxes, chains = _replay_case()
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    tboxes = [torch.from_numpy(b) for b in boxes]
    generators = image_generators(torch.Generator().manual_seed(3), 3)
    out, out_boxes, keeps = apply_chains_torch(batch, tboxes, chains, generators)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    assert torch.equal(batch, torch.from_numpy(images).permute(0, 3, 1, 2))  # input untouched
    assert not torch.equal(out, batch)
    replay = image_generators(torch.Generator().manual_seed(3), 3)
    replay_np = image_generators(torch.Generator().manual_seed(3), 3)
    for i in range(3):
        single, single_boxes, single_keep = apply_chains_torch(batch[i:i + 1], [tboxes[i]], [chains[i]], [replay[i]])
        assert (single[0].int() - out[i].int()).abs().max() <= 1
        torch.testing.assert_close(single_boxes[0], out_boxes[i], atol=1e-4, rtol=0)
        assert torch.equal(single_keep[0], keeps[i])
        assert keeps[i].shape == (len(boxes[i]),) and out_boxes[i].shape[0] == int(keeps[i].sum())
        # the cv2 path draws the same parameters from the same per-image generator
        np_image, np_boxes, np_keep = apply_chain_np(images[i], boxes[i], chains[i], replay_np[i])
        assert np_keep.tolist() == keeps[i].tolist()
        np.testing.assert_allclose(np_boxes, out_boxes[i].numpy(), atol=1e-3, rtol=0)
        diff = np.abs(np_image.astype(int) - out[i].permute(1, 2, 0).numpy().astype(int))
        assert diff.mean() < 3.0, f'image {i}: cv2 and torch chains differ by {diff.mean():.2f} on average'


def test_apply_chains_torch_single_generator_is_reproducible():
    images, boxes, chains = _replay_case()
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    tboxes = [torch.from_numpy(b) for b in boxes]
    a = apply_chains_torch(batch, tboxes, chains, torch.Generator().manual_seed(5))
    b = apply_chains_torch(batch, tboxes, chains, torch.Generator().manual_seed(5))
    assert a[0].dtype == torch.float32 and torch.equal(a[0], b[0])
    assert all(torch.equal(x, y) for x, y in zip(a[1], b[1]))
    with pytest.raises(ValueError, match='2 chains for 3 images'):
        apply_chains_torch(batch, tboxes, chains[:2], torch.Generator())
    empty = apply_chains_torch(batch, None, [[], [], []], torch.Generator())
    assert torch.equal(empty[0], batch) and all(k.shape == (0,) for k in empty[2])


# ----------------------------------------------------------------------------- mmdet export

def _results():
    from mmdet.structures.bbox import HorizontalBoxes
    return dict(img=_image(48, 48), img_shape=(48, 48),
                gt_bboxes=HorizontalBoxes(torch.tensor([[4.0, 4.0, 30.0, 40.0], [20.0, 10.0, 44.0, 30.0]])),
                gt_bboxes_labels=np.array([1, 2]), gt_ignore_flags=np.array([False, False]))


def test_to_mmdet_autoaugment_published_builds_and_runs():
    import mmdet.datasets.transforms  # noqa: F401
    from mmdet.registry import TRANSFORMS
    from mmengine.registry import DefaultScope
    with pytest.raises(ValueError, match='TranslateY_Only_BBoxes'):
        to_mmdet_autoaugment('autoaug_det_v0')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cfg = to_mmdet_autoaugment('autoaug_det_v0', skip_unsupported=True)
    messages = [str(w.message) for w in caught]
    assert any('dropped 2 sub-policies' in m and 'TranslateY_Only_BBoxes' in m for m in messages), messages
    assert any('TranslateX 0.1562 -> 0.2' in m for m in messages), messages  # mmdet's one-decimal rounding
    assert cfg['type'] == 'AutoAugment' and len(cfg['policies']) == 3 and sum(cfg['prob']) == 1.0
    first = cfg['policies'][0]
    assert first[0]['type'] == 'mmdet.TranslateX' and first[0]['min_mag'] == first[0]['max_mag'] == 0.2
    assert first[0]['prob'] == 0.6 and first[1] == {'type': 'mmdet.Equalize', 'prob': 0.8}
    assert cfg['policies'][1] == [{'type': 'mmdet.Equalize', 'prob': 0.0}]  # (Sharpness p=0, ShearX level 0): identity
    rotate, color = cfg['policies'][2]
    assert rotate['type'] == 'mmdet.Rotate' and rotate['min_mag'] == 30.0 and rotate['reversal_prob'] == 0.5
    assert color == {'type': 'mmdet.Color', 'min_mag': 1.2, 'max_mag': 1.2, 'prob': 1.0}
    np.random.seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):  # as in an mmdet config, and without it
        scoped = TRANSFORMS.build(cfg)
    for transform in (scoped, TRANSFORMS.build(cfg)):
        for _ in range(10):
            out = transform(_results())
            assert out['img'].shape == (48, 48, 3) and len(out['gt_bboxes']) == 2
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for name in ('autoaug_det_v2', 'autoaug_det_v3'):
            TRANSFORMS.build(to_mmdet_autoaugment(name, skip_unsupported=True))


def test_to_mmdet_autoaugment_searched_policy_top_k():
    import mmdet.datasets.transforms  # noqa: F401
    from mmdet.registry import TRANSFORMS
    entries = (SpaceEntry('ShearX', 0.3, 10.0), SpaceEntry('Color', 0.44, 7.0), SpaceEntry('Cutout', 0.25, 8.0),
               SpaceEntry('Equalize', 1.0))
    doc = _policy_doc(entries=[{'op': e.op, 'magnitude': e.magnitude, 'level': e.level} for e in entries],
                      probs=[0.4, 0.3, 0.2, 0.1], apply_prob=0.6, trajectory=None)
    policy = build_policy(policy_from_dict(doc))
    cfg = to_mmdet_autoaugment(policy, top_k=3)
    policies, prob = cfg['policies'], cfg['prob']
    assert len(policies) == 4 and sum(prob) == 1.0 and all(isinstance(p, float) for p in prob)
    # top pairs: (ShearX, ShearX) .16, then (ShearX, Color) and (Color, ShearX) .12 each
    shear = {'type': 'mmdet.ShearX', 'min_mag': round(math.degrees(math.atan(0.3)), 1),
             'max_mag': round(math.degrees(math.atan(0.3)), 1), 'reversal_prob': 0.5, 'img_border_value': 128,
             'prob': 1.0}
    color = {'type': 'mmdet.Color', 'min_mag': 1.4, 'max_mag': 1.4, 'prob': 1.0}
    assert policies[:3] == [[shear, shear], [shear, color], [color, shear]]
    assert policies[3] == [{'type': 'mmdet.Equalize', 'prob': 0.0}]
    # the default keeps P(augmented) = 0.6: the kept tuples share it, the identity keeps 0.4
    weights = np.array([0.6 * 0.16 / 0.4, 0.6 * 0.12 / 0.4, 0.6 * 0.12 / 0.4, 0.4])
    np.testing.assert_allclose(prob, weights, atol=1e-12)
    legacy = to_mmdet_autoaugment(policy, top_k=3, keep_apply_prob=False, tolerance=1.0)['prob']
    old_weights = np.array([0.6 * 0.16, 0.6 * 0.12, 0.6 * 0.12, 0.4])
    np.testing.assert_allclose(legacy, old_weights / old_weights.sum(), atol=1e-12)
    cutout = to_mmdet_autoaugment(policy, top_k=16)['policies']
    assert {'type': 'RandomApply', 'prob': 1.0, 'transforms': [
        {'type': 'mmdet.CutOut', 'n_holes': 1, 'cutout_ratio': (0.25, 0.25), 'fill_in': (128, 128, 128)}]} in \
        [s for sub in cutout for s in sub]
    transform = TRANSFORMS.build(cfg)
    np.random.seed(1)
    out = transform(_results())
    assert out['img'].shape == (48, 48, 3)
    transform = TRANSFORMS.build(to_mmdet_autoaugment(policy, top_k=16))
    out = transform(_results())
    assert out['img'].dtype == np.uint8


def test_to_mmdet_autoaugment_unsupported_entries_and_ranges():
    entries = [{'op': 'Rotate_Only_BBoxes', 'magnitude': 10.0, 'level': None},
               {'op': 'Brightness', 'magnitude': 0.5, 'level': None}]
    policy = build_policy(policy_from_dict(_policy_doc(entries=entries, probs=[0.9, 0.1], trajectory=None)))
    with pytest.raises(ValueError, match=r"\['Rotate_Only_BBoxes'\]"):
        to_mmdet_autoaugment(policy, top_k=2)
    with pytest.warns(UserWarning, match='Rotate_Only_BBoxes'):
        cfg = to_mmdet_autoaugment(policy, top_k=2, skip_unsupported=True)
    assert cfg['policies'][0][0]['type'] == 'mmdet.Brightness' and len(cfg['policies']) == 2
    too_bright = [{'op': 'Brightness', 'magnitude': 1.5, 'level': None}]
    policy = build_policy(policy_from_dict(_policy_doc(entries=too_bright, probs=[1.0], trajectory=None)))
    with pytest.raises(ValueError, match=r'outside mmdet Brightness.s range \[0, 2\]'):
        to_mmdet_autoaugment(policy)
    with pytest.raises(ValueError, match='top_k=0'):
        to_mmdet_autoaugment(policy, top_k=0)



# -- TrivialAugment --------------------------------------------------------------------------------
# The interval each det_default op's magnitude is drawn from, by hand from REFERENCE section 2 (the
# AutoAugment-for-detection strength at level 10, in the table's units) and the identity 0. The
# magnitude-free ops keep their fixed magnitude 1.
TA_DET_RANGES = {
    'Identity': (1.0, 1.0), 'FlipLR': (1.0, 1.0), 'AutoContrast': (1.0, 1.0), 'Equalize': (1.0, 1.0),
    'Color': (-0.9, 0.9), 'Contrast': (-0.9, 0.9), 'Brightness': (-0.9, 0.9), 'Sharpness': (-0.9, 0.9),
    'Solarize': (0.0, 256.0),        # 256 - threshold: threshold 256 (identity) .. 0 (invert all)
    'Posterize': (0.0, 7.0),         # bits removed: none .. all but one
    'Rotate': (0.0, 30.0), 'ShearX': (0.0, 0.3), 'ShearY': (0.0, 0.3),
    'TranslateX': (0.0, 250 / 640), 'TranslateY': (0.0, 250 / 640),   # 250 px at 640 px
    'Cutout': (0.0, 200 / 640),      # side 2 * level * 10 px at 640 px
    'BBox_Cutout': (0.0, 0.75), 'TranslateY_Only_BBoxes': (0.0, 120 / 640), 'Rotate_Only_BBoxes': (0.0, 30.0),
    'Cutout_Only_BBoxes': (0.0, 100 / 640),
}


def _ks_uniform(values, low, high):
    """Kolmogorov-Smirnov distance between ``values`` and the uniform law on ``[low, high]``."""
    u = np.sort((np.asarray(values) - low) / (high - low))
    n = len(u)
    return max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))


@pytest.fixture(scope='module')
def ta_draws():
    policy = build_policy('trivialaugment')
    gen = torch.Generator().manual_seed(0)
    return policy, [policy.sample_chain(gen) for _ in range(20000)]


def test_trivialaugment_draws_each_op_of_the_space_uniformly_once_per_image(ta_draws):
    policy, chains = ta_draws
    ops = set(TA_DET_RANGES)
    assert {e.op for e in get_space('det_default')} == ops and len(policy.ops) == len(ops) == 20
    assert all(len(c) == 1 and c[0].prob == 1.0 for c in chains)
    counts = {op: 0 for op in ops}
    for (step,) in chains:
        counts[step.op] += 1
    n, p = len(chains), 1 / len(ops)
    band = 5 * math.sqrt(n * p * (1 - p))
    assert all(abs(k - n * p) < band for k in counts.values()), counts


def test_trivialaugment_magnitudes_are_uniform_from_the_identity_to_the_level_10_strength(ta_draws):
    _, chains = ta_draws
    by_op = {}
    for (step,) in chains:
        by_op.setdefault(step.op, []).append(step.magnitude)
    for op, (low, high) in TA_DET_RANGES.items():
        values = np.array(by_op[op])
        table_low, table_high = get_op(op).magnitude_range
        assert table_low <= low <= high <= table_high, op  # a valid magnitude of the op
        if low == high:
            assert np.all(values == low), op
            continue
        width = high - low
        assert values.min() >= low - 1e-9 and values.max() <= high + 1e-9, (op, values.min(), values.max())
        # ~1000 draws per op: both ends are reached (P(miss) ~ 0.98 ** 1000) ...
        assert values.min() < low + 0.02 * width and values.max() > high - 0.02 * width, op
        # ... and the law is uniform: DKW bound at false-alarm probability 1e-6
        assert _ks_uniform(values, low, high) < math.sqrt(math.log(2 / 1e-6) / (2 * len(values))), op
        deciles = np.histogram(values, bins=10, range=(low, high))[0]
        expected = len(values) / 10
        assert np.all(np.abs(deciles - expected) < 5 * math.sqrt(expected)), (op, deciles)


def test_trivialaugment_is_reproducible_from_the_generator():
    policy = build_policy('trivialaugment')
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = [policy.sample_chain(gen_a) for _ in range(50)]
    b = [policy.sample_chain(gen_b) for _ in range(50)]
    c = [policy.sample_chain(torch.Generator().manual_seed(4)) for _ in range(50)]
    assert a == b and a != c


def test_trivialaugment_space_option_and_bad_specs():
    cls = build_policy(dict(name='trivialaugment', space='ddas_cifar'))
    assert set(cls.ops) == {e.op for e in get_space('ddas_cifar')} and len(cls.ops) == 19
    gen = torch.Generator().manual_seed(0)
    blur = [c[0].magnitude for c in (cls.sample_chain(gen) for _ in range(2000)) if c[0].op == 'Blur']
    assert blur and set(blur) == {1.0}  # magnitude-free in DDAS: kept at its fixed magnitude
    assert build_policy(dict(name='trivialaugment')).ops == build_policy('trivialaugment').ops
    assert isinstance(build_policy(dict(name='autoaug_det_v0')), PublishedPolicy)
    with pytest.raises(ValueError, match="space='nope' is unknown"):
        build_policy(dict(name='trivialaugment', space='nope'))
    with pytest.raises(ValueError, match=r"unknown keys \['magnitude'\]"):
        build_policy(dict(name='trivialaugment', magnitude=5))
    with pytest.raises(ValueError, match='"space" is for TrivialAugment only'):
        build_policy(dict(name='autoaug_det_v0', space='det_default'))
    with pytest.raises(ValueError, match="name='trivial' is not a published policy"):
        build_policy(dict(name='trivial'))


def test_trivialaugment_in_policy_augment_moves_boxes_with_the_image(tmp_path):
    """On a real digits image: boxes follow the recorded matrix, and so do the pixels."""
    import cv2
    from mmdet.registry import TRANSFORMS
    from mmdet.structures.bbox import HorizontalBoxes
    import det_autoaug.mmdet_plugins  # noqa: F401  (registers PolicyAugment)
    from det_helpers import make_digits

    root = make_digits(tmp_path / 'digits', train=1, val=1, test=1)
    doc = json.loads((root / 'train.json').read_text())
    image = cv2.imread(str(root / 'images' / doc['images'][0]['file_name']))
    h, w = image.shape[:2]
    xywh = np.array([a['bbox'] for a in doc['annotations'] if a['image_id'] == doc['images'][0]['id']], np.float32)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    labels = np.arange(len(boxes))  # distinct, so the kept boxes can be told apart
    transform = TRANSFORMS.build(dict(type='PolicyAugment', policy='trivialaugment'))
    assert isinstance(TRANSFORMS.build(dict(type='PolicyAugment', policy=dict(name='trivialaugment'))).policy,
                      type(transform.policy))
    to_index = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])  # continuous -> pixel-index coordinates
    np.random.seed(0)
    moved = 0
    for _ in range(80):
        out = transform(dict(img=image.copy(), img_shape=(h, w), ori_shape=(h, w),
                             gt_bboxes=HorizontalBoxes(torch.from_numpy(boxes.copy())),
                             gt_bboxes_labels=labels.copy(), gt_ignore_flags=np.zeros(len(boxes), bool)))
        matrix = out['homography_matrix'].astype(np.float64)
        expected = HorizontalBoxes(torch.from_numpy(boxes.copy()))
        expected.project_(matrix)
        projected = expected.tensor.clone()
        expected.clip_((h, w))
        clipped = expected.tensor
        size = clipped[:, 2:] - clipped[:, :2]
        area = (projected[:, 2:] - projected[:, :2]).prod(1)
        keep = (size >= 1.0).all(1) & (size.prod(1) >= 0.3 * area)
        assert out['gt_bboxes_labels'].tolist() == labels[keep.numpy()].tolist()
        assert len(out['gt_ignore_flags']) == int(keep.sum())
        torch.testing.assert_close(out['gt_bboxes'].tensor, clipped[keep], atol=1e-3, rtol=0)
        if np.allclose(matrix, np.eye(3)):
            continue
        moved += 1
        index_matrix = to_index @ matrix @ np.linalg.inv(to_index)
        warped = cv2.warpAffine(image, index_matrix[:2], (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
        error = np.abs(out['img'].astype(float) - warped).mean()
        assert error < 2.0, (matrix, error)
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], float).T
        if np.abs(matrix @ corners - corners).max() > 4:
            # a clear move: no move, and the opposite one (a sign error), explain the pixels much worse
            alternatives = [np.eye(3)] + ([] if np.allclose(matrix @ matrix, np.eye(3)) else [np.linalg.inv(matrix)])
            for other in alternatives:
                wrong = cv2.warpAffine(image, (to_index @ other @ np.linalg.inv(to_index))[:2], (w, h),
                                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                       borderValue=(128, 128, 128))
                assert np.abs(out['img'].astype(float) - wrong).mean() > 3 * error + 2.0, (matrix, other)
    assert moved >= 15, f'only {moved} of 80 draws moved the image'  # 6 of 20 ops are geometric


def test_trivialaugment_in_batch_policy_augment_is_seeded():
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmengine.structures import InstanceData
    import det_autoaug.mmdet_plugins  # noqa: F401  (registers BatchPolicyAugment)
    from det_autoaug.policy import TrivialAugmentPolicy

    def run(policy):
        aug = MODELS.build(dict(type='BatchPolicyAugment', policy=policy, seed=5))
        assert isinstance(aug.policy, TrivialAugmentPolicy) and aug.policy.space == 'det_default'
        inputs = torch.randn(4, 3, 48, 48, generator=torch.Generator().manual_seed(0))
        samples = []
        for _ in range(4):
            s = DetDataSample(metainfo=dict(img_shape=(48, 48)))
            s.gt_instances = InstanceData(bboxes=HorizontalBoxes(torch.tensor([[8.0, 8.0, 30.0, 40.0]])),
                                          labels=torch.tensor([1]))
            samples.append(s)
        out, samples = aug(inputs.clone(), samples)
        assert out.shape == inputs.shape and not torch.equal(out, inputs)
        return out, [s.gt_instances.bboxes.tensor for s in samples]

    a, boxes_a = run('trivialaugment')
    b, boxes_b = run(dict(name='trivialaugment', space='det_default'))
    torch.testing.assert_close(a, b)
    assert all(torch.equal(x, y) for x, y in zip(boxes_a, boxes_b))
