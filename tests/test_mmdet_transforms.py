"""MMDetection transforms: the generated ``DA<op>`` transforms and ``PolicyAugment``."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

import det_autoaug.mmdet_plugins  # noqa: F401  (registers the transforms)
from det_autoaug.mmdet_plugins import transforms as da_transforms
from det_autoaug.ops.table import OPS
from det_autoaug.policy import save_policy_file
from det_autoaug.ops.spaces import SpaceEntry

H, W = 32, 40


def _image(seed=0):
    return np.random.RandomState(seed).randint(0, 256, (H, W, 3)).astype(np.uint8)


def _results(boxes=((4.0, 4.0, 20.0, 24.0), (22.0, 6.0, 38.0, 30.0), (10.0, 2.0, 30.0, 12.0)), **extra):
    n = len(boxes)
    return dict(img=_image(), img_shape=(H, W), ori_shape=(H, W),
                gt_bboxes=HorizontalBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(n, 4)),
                gt_bboxes_labels=np.arange(n, dtype=np.int64) + 1,
                gt_ignore_flags=np.array([False, True, False][:n] + [False] * max(0, n - 3)), **extra)


def test_one_registered_transform_per_table_op():
    assert sorted(da_transforms.OP_TRANSFORMS) == sorted(op.name for op in OPS)
    for op in OPS:
        cls = TRANSFORMS.get(f'DA{op.name}')
        assert cls is da_transforms.OP_TRANSFORMS[op.name] and cls.op_name == op.name
        assert getattr(da_transforms, f'DA{op.name}') is cls  # module attribute: pickles by reference
        assert 'Required Keys' in cls.__doc__ and op.doc in cls.__doc__
    assert TRANSFORMS.get('PolicyAugment') is da_transforms.PolicyAugment
    assert TRANSFORMS.get('Rotate').__module__.startswith('mmdet')  # mmdet's own names untouched


def test_registering_a_taken_name_raises():
    class Clash:
        pass
    with pytest.raises(RuntimeError, match="'Rotate'.*already holds mmdet"):
        da_transforms._register(Clash, 'Rotate')


@pytest.mark.parametrize('op', [op.name for op in OPS])
def test_every_op_transform_builds_and_runs(op):
    spec = next(s for s in OPS if s.name == op)
    lo, hi = spec.magnitude_range
    np.random.seed(0)
    for cfg in (dict(type=f'DA{op}', prob=1.0, level=5), dict(type=f'DA{op}', magnitude=lo + 0.7 * (hi - lo))):
        transform = TRANSFORMS.build(cfg)
        results = _results()
        original = results['img'].copy()
        out = transform(results)
        assert out['img'].shape == (H, W, 3) and out['img'].dtype == np.uint8
        assert out['img_shape'] == (H, W)
        assert isinstance(out['gt_bboxes'], HorizontalBoxes)
        n = len(out['gt_bboxes'])
        assert len(out['gt_bboxes_labels']) == n and len(out['gt_ignore_flags']) == n
        if spec.kind == 'geometric':
            matrix = out['homography_matrix']
            assert matrix.shape == (3, 3) and matrix.dtype == np.float32
        else:
            assert 'homography_matrix' not in out
            assert n == 3  # only geometric ops drop boxes
        assert np.array_equal(_image(), original)  # the loaded array is not modified in place
    assert op in repr(transform) or f'DA{op}' in repr(transform)


def test_dropped_boxes_take_their_labels_and_flags_with_them():
    # 0.54 * 40 px = 21.6 px either way: the two narrow central boxes leave the image, the wide one stays
    boxes = ((17.0, 2.0, 23.0, 10.0), (0.0, 12.0, 40.0, 20.0), (18.0, 22.0, 22.0, 30.0))
    transform = TRANSFORMS.build(dict(type='DATranslateX', magnitude=0.54))
    for seed in range(4):
        np.random.seed(seed)
        out = transform(_results(boxes))
        assert out['gt_bboxes_labels'].tolist() == [2]
        assert out['gt_ignore_flags'].tolist() == [True]
        assert len(out['gt_bboxes']) == 1


def test_homography_matrix_is_composed_and_moves_the_boxes():
    previous = np.array([[1, 0, 2], [0, 1, 3], [0, 0, 1]], np.float32)
    flip = TRANSFORMS.build(dict(type='DAFlipLR'))  # magnitude-free: no level needed
    results = _results(homography_matrix=previous.copy())
    boxes_in = results['gt_bboxes'].tensor.clone()
    out = flip(results)
    mirror = np.array([[-1, 0, W], [0, 1, 0], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(out['homography_matrix'], mirror @ previous)
    moved = HorizontalBoxes(boxes_in.clone())
    moved.project_(mirror)
    torch.testing.assert_close(out['gt_bboxes'].tensor, moved.tensor)
    np.testing.assert_array_equal(out['img'], _image()[:, ::-1])
    # a signed op: the matrix is one of the two translations, composed after the previous one
    np.random.seed(0)
    out = TRANSFORMS.build(dict(type='DATranslateY', magnitude=0.25))(_results(homography_matrix=previous.copy()))
    shifts = [np.array([[1, 0, 0], [0, 1, s * 0.25 * H], [0, 0, 1]], np.float32) @ previous for s in (-1, 1)]
    assert any(np.allclose(out['homography_matrix'], m) for m in shifts)
    # prob 0: nothing moves, the identity is recorded
    out = TRANSFORMS.build(dict(type='DARotate', prob=0.0, level=10))(_results())
    np.testing.assert_array_equal(out['homography_matrix'], np.eye(3))
    np.testing.assert_array_equal(out['img'], _image())


def test_channel_order_only_changes_which_channel_is_red():
    image = _image(3)
    rgb = TRANSFORMS.build(dict(type='DAColor', magnitude=-0.8, channel_order='rgb'))
    bgr = TRANSFORMS.build(dict(type='DAColor', magnitude=-0.8))
    out_rgb = rgb(dict(img=image.copy(), img_shape=(H, W)))['img']
    out_bgr = bgr(dict(img=np.ascontiguousarray(image[..., ::-1]), img_shape=(H, W)))['img']
    np.testing.assert_array_equal(out_bgr[..., ::-1], out_rgb)
    assert not np.array_equal(out_rgb, image)


def test_per_call_randomness_comes_from_numpy():
    transform = TRANSFORMS.build(dict(type='DARotate', level=8, prob=0.5))
    runs = []
    for _ in range(2):
        np.random.seed(7)
        runs.append([transform(_results())['img'] for _ in range(6)])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    assert len({a.tobytes() for a in runs[0]}) > 1  # not the same outcome every call


def test_bbox_only_probability_rule_and_override():
    image_changed = []
    for box_prob in (None, 1.0):
        transform = TRANSFORMS.build(dict(type='DAFlip_Only_BBoxes', prob=0.9, box_prob=box_prob))
        np.random.seed(0)
        changed = [not np.array_equal(transform(_results(((4.0, 4.0, 20.0, 24.0),)))['img'], _image())
                   for _ in range(300)]
        image_changed.append(np.mean(changed))
    assert abs(image_changed[0] - 0.3) < 0.08 and image_changed[1] == 1.0


BAD_ARGS = [
    (dict(type='DARotate', level=20), 'level=20'),
    (dict(type='DARotate', level=3, magnitude=9.0), 'expected exactly one'),
    (dict(type='DARotate'), 'expected exactly one of level'),
    (dict(type='DARotate', magnitude=90.0), 'magnitude=90.0'),
    (dict(type='DARotate', level=3, prob=1.5), 'prob=1.5'),
    (dict(type='DARotate', level=3, min_visible=2.0), 'min_visible=2.0'),
    (dict(type='DAColor', level=3, channel_order='hsv'), 'channel_order'),
    (dict(type='PolicyAugment', policy='autoaug_det_v7'), "'autoaug_det_v7' is neither a published policy"),
]


@pytest.mark.parametrize('cfg,message', BAD_ARGS, ids=[m for _, m in BAD_ARGS])
def test_bad_arguments_raise_at_build_time(cfg, message):
    with pytest.raises(ValueError, match=message):
        TRANSFORMS.build(cfg)


def test_bad_policy_files_raise_at_build_time(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.json'):
        TRANSFORMS.build(dict(type='PolicyAugment', policy=str(tmp_path / 'nope.json')))
    path = tmp_path / 'old.json'
    path.write_text(json.dumps({'schema': 'det_autoaug.policy', 'version': 0}))
    with pytest.raises(ValueError, match='schema version mismatch: file has 0, this det_autoaug reads 1'):
        TRANSFORMS.build(dict(type='PolicyAugment', policy=str(path)))


def test_geometric_ops_refuse_masks():
    from mmdet.structures.mask import BitmapMasks
    masks = BitmapMasks(np.zeros((3, H, W), np.uint8), H, W)
    with pytest.raises(ValueError, match="gt_masks"):
        TRANSFORMS.build(dict(type='DAShearX', level=4))(_results(gt_masks=masks))
    out = TRANSFORMS.build(dict(type='DAEqualize'))(_results(gt_masks=masks))  # pixel-only: fine
    assert out['gt_masks'] is masks
    with pytest.raises(ValueError, match="gt_masks"):
        TRANSFORMS.build(dict(type='PolicyAugment', policy='autoaug_det_v0'))(_results(gt_masks=masks))


def _tiny_coco(root):
    (root / 'img').mkdir()
    images, annotations = [], []
    for i in range(3):
        cv2.imwrite(str(root / 'img' / f'{i}.png'), _image(i))
        images.append({'id': i, 'file_name': f'{i}.png', 'height': H, 'width': W})
        for j, (x, y, w, h) in enumerate([(2, 3, 14, 16), (20, 8, 16, 18)]):
            annotations.append({'id': 10 * i + j, 'image_id': i, 'category_id': 1 + j, 'bbox': [x, y, w, h],
                                'area': w * h, 'iscrowd': 0})
    categories = [{'id': 1, 'name': 'a'}, {'id': 2, 'name': 'b'}]
    (root / 'ann.json').write_text(json.dumps({'images': images, 'annotations': annotations,
                                               'categories': categories}))


def test_policy_augment_in_an_mmdet_dataset_pipeline(tmp_path):
    from mmdet.datasets import CocoDataset
    _tiny_coco(tmp_path)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PolicyAugment', policy='autoaug_det_v0'), dict(type='DARotate', level=2, prob=0.5),
                dict(type='PackDetInputs')]
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = CocoDataset(data_root=str(tmp_path), ann_file='ann.json', data_prefix=dict(img='img/'),
                              metainfo=dict(classes=('a', 'b')), pipeline=pipeline, filter_cfg=None)
    np.random.seed(0)
    changed = 0
    for _ in range(4):
        for i in range(len(dataset)):
            item = dataset[i]
            inputs, sample = item['inputs'], item['data_samples']
            assert tuple(inputs.shape) == (3, H, W) and inputs.dtype == torch.uint8
            gt = sample.gt_instances
            assert len(gt.bboxes) == len(gt.labels) <= 2
            assert sample.img_shape == (H, W)
            original = torch.from_numpy(cv2.imread(str(tmp_path / 'img' / f'{sample.img_id}.png'))).permute(2, 0, 1)
            changed += not torch.equal(inputs, original)
    assert changed >= 6  # v0 changes most images (4 of its 5 sub-policies act with prob >= 0.6)


def test_policy_augment_follows_the_epoch_schedule(tmp_path, monkeypatch):
    entries = (SpaceEntry('Identity', 1.0), SpaceEntry('FlipLR', 1.0))
    trajectory = [{'epoch': 0, 'probs': [1.0, 0.0], 'apply_prob': 0.0},
                  {'epoch': 1, 'probs': [0.0, 1.0], 'apply_prob': 1.0}]
    path = save_policy_file(tmp_path / 'p.json', searcher='ddas', space='test', entries=entries, probs=[0.5, 0.5],
                            apply_prob=0.5, ops_per_policy=1, trajectory=trajectory).path
    transform = TRANSFORMS.build(dict(type='PolicyAugment', policy=path))
    # a private hub: registering one with get_instance would leave it current for later tests
    hub = MessageHub('test_policy_augment_schedule')
    monkeypatch.setattr(MessageHub, 'get_current_instance', classmethod(lambda cls: hub))
    hub.update_info('max_epochs', 3)  # floor(e / (3.1 / 2)): epochs 0, 1 -> snapshot 0, epoch 2 -> 1
    hub.update_info('epoch', 0)
    assert MessageHub.get_current_instance() is hub
    for _ in range(10):
        out = transform(_results())
        np.testing.assert_array_equal(out['img'], _image())
        np.testing.assert_array_equal(out['homography_matrix'], np.eye(3))
    hub.update_info('epoch', 2)
    for _ in range(10):
        np.testing.assert_array_equal(transform(_results())['img'], _image()[:, ::-1])
    # an explicit train_epochs wins over the hub's max_epochs: 4 epochs -> epoch 2 uses snapshot 0
    transform = TRANSFORMS.build(dict(type='PolicyAugment', policy=path, train_epochs=4))
    np.testing.assert_array_equal(transform(_results())['img'], _image())
