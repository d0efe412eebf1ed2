"""The user path without traps (issue 14 items 1, 2 config half, 4; issue 15 item 3).

- ``BatchPolicyAugment`` reads the normalisation of the data preprocessor it runs in: an
  identity policy leaves the batch of every stock-like preprocessor unchanged, and the README's
  one-liner on stock mmdet configs does too.
- ``configs/_base_/det_autoaug_policy.py``: the documented override of the policy takes effect.
- ``to_mmdet_autoaugment`` reports how far the export is from the policy, and can keep its
  augmentation probability.
- Box validation does not depend on the draw: an invalid box raises even when no op is applied.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import MODELS, TRANSFORMS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.config import Config
from mmengine.structures import InstanceData

import det_autoaug.mmdet_plugins  # noqa: F401  (registers the transforms and BatchPolicyAugment)
from det_autoaug.mmdet_plugins.batch_augment import IMAGENET_MEAN, IMAGENET_STD, BatchPolicyAugment
from det_autoaug.mmdet_plugins.transforms import PolicyAugment
from det_autoaug.policy.policy import (SearchedPolicy, build_policy, export_mmdet_autoaugment,
                                       to_mmdet_autoaugment)
from det_autoaug.policy.policy_file import policy_from_dict

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(40, 48), (32, 56)]


def _mmdet_config(name: str) -> Path:
    import mmdet
    return Path(mmdet.__file__).parent / '.mim' / 'configs' / name


def policy_doc(entries, probs, apply_prob, ops_per_policy=1):
    return {'schema': 'det_autoaug.policy', 'version': 1, 'searcher': 'ddas', 'space': 'test',
            'entries': [{'op': op, 'magnitude': m, 'level': None} for op, m in entries],
            'probs': list(probs), 'apply_prob': apply_prob, 'ops_per_policy': ops_per_policy}


def write_policy(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


#: Always applies Identity: the batch goes through un-normalise, the op and re-normalise.
IDENTITY = policy_doc([('Identity', 1.0)], [1.0], apply_prob=1.0)
#: Never applies anything.
NOTHING = policy_doc([('Rotate', 10.0)], [1.0], apply_prob=0.0)


def make_batch(channels: int = 3, seed: int = 0, boxes=None) -> dict:
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i, (h, w) in enumerate(SHAPES):
        inputs.append(torch.randint(0, 256, (channels, h, w), generator=g, dtype=torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        b = boxes[i] if boxes is not None else [[4.0, 4.0, 20.0, 24.0], [10.0, 2.0, 30.0, 12.0]]
        s.gt_instances = InstanceData(bboxes=HorizontalBoxes(torch.tensor(b, dtype=torch.float32).view(-1, 4)),
                                      labels=torch.arange(len(b)) + 1)
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def assert_identity(dp: DetDataPreprocessor, channels: int = 3) -> None:
    """Training (batch augment on) and validation (off) give the same batch and boxes."""
    batch = make_batch(channels)
    ref = dp(dict(inputs=[x.clone() for x in batch['inputs']],
                  data_samples=[s.clone() for s in batch['data_samples']]), training=False)
    out = dp(batch, training=True)
    (aug,) = dp.batch_augments
    assert aug.generator is not None  # it ran
    assert out['inputs'].shape == ref['inputs'].shape and out['inputs'].shape[1] == channels
    torch.testing.assert_close(out['inputs'], ref['inputs'], atol=1e-3, rtol=0)
    assert float(out['inputs'].min()) == pytest.approx(float(ref['inputs'].min()), abs=1e-3)
    assert float(out['inputs'].max()) == pytest.approx(float(ref['inputs'].max()), abs=1e-3)
    for s, r in zip(out['data_samples'], ref['data_samples']):
        torch.testing.assert_close(s.gt_instances.bboxes, r.gt_instances.bboxes)


# ----------------------------------------------------------------------------- item 1: normalisation

PREPROCESSORS = {
    'imagenet': (dict(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), bgr_to_rgb=True), 3),
    'caffe': (dict(mean=[102.9801, 115.9465, 122.7717], std=[1.0, 1.0, 1.0], bgr_to_rgb=False), 3),
    'rtmdet': (dict(mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395], bgr_to_rgb=False), 3),
    'grey': (dict(mean=[127.5], std=[64.0], bgr_to_rgb=False), 1),
    'none': (dict(), 3),
}


@pytest.mark.parametrize('name', sorted(PREPROCESSORS))
def test_identity_policy_leaves_every_stock_like_batch_unchanged(name, tmp_path):
    kwargs, channels = PREPROCESSORS[name]
    policy = write_policy(tmp_path / 'identity.json', IDENTITY)
    dp = DetDataPreprocessor(pad_size_divisor=32, **kwargs,
                             batch_augments=[dict(type='BatchPolicyAugment', policy=str(policy), seed=0)])
    (aug,) = dp.batch_augments
    assert aug.bound
    if kwargs:
        assert aug.mean.flatten().tolist() == pytest.approx(kwargs['mean'])
        assert aug.std.flatten().tolist() == pytest.approx(kwargs['std'])
    assert aug.channel_order == ('rgb' if kwargs.get('bgr_to_rgb') else 'bgr')
    assert_identity(dp, channels)


def test_explicit_values_that_disagree_with_the_preprocessor_raise():
    caffe = PREPROCESSORS['caffe'][0]
    with pytest.raises(ValueError, match=r'mean=\[123\.675.*disagrees.*mean=\[102\.98'):
        DetDataPreprocessor(**caffe, batch_augments=[dict(type='BatchPolicyAugment', mean=list(IMAGENET_MEAN),
                                                          std=list(IMAGENET_STD))])
    with pytest.raises(ValueError, match=r"channel_order='rgb' disagrees.*'bgr'"):
        DetDataPreprocessor(**caffe, batch_augments=[dict(type='BatchPolicyAugment', channel_order='rgb')])
    # Equal values (the preprocessor keeps them in float32) are accepted.
    dp = DetDataPreprocessor(**caffe, batch_augments=[dict(type='BatchPolicyAugment', mean=caffe['mean'],
                                                           std=caffe['std'], channel_order='bgr')])
    assert dp.batch_augments[0].bound
    with pytest.raises(ValueError, match='std=.*disagrees'):
        BatchPolicyAugment.from_preprocessor(DetDataPreprocessor(**caffe), std=[2.0])


def test_unbound_without_values_warns_and_assumes_imagenet():
    aug = BatchPolicyAugment(policy='autoaug_det_v0', seed=0)
    dp = DetDataPreprocessor(**PREPROCESSORS['imagenet'][0], pad_size_divisor=32)
    data = dp(make_batch(), training=False)
    with pytest.warns(UserWarning, match='outside a data preprocessor'):
        aug(data['inputs'], data['data_samples'])
    assert aug.mean.flatten().tolist() == pytest.approx(list(IMAGENET_MEAN))


def _readme_python_lines():
    text = (ROOT / 'README.md').read_text()
    return [line for block in re.findall(r'```python\n(.*?)```', text, flags=re.S) for line in block.splitlines()]


STOCK = ['fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
         'retinanet/retinanet_r50_fpn_1x_coco.py']


@pytest.mark.parametrize('stock', STOCK)
def test_readme_batch_one_liner_on_stock_configs(stock, tmp_path, monkeypatch):
    lines = _readme_python_lines()
    (imports,) = {line for line in lines if line.startswith('custom_imports =')}
    (one_liner,) = [line for line in lines if "type='BatchPolicyAugment'" in line]
    # The one-liner's policy path, relative to the current directory, holds an identity policy.
    (policy_path,) = re.findall(r"policy='([^']+)'", one_liner)
    monkeypatch.chdir(tmp_path)
    write_policy(tmp_path / policy_path, IDENTITY)
    config = tmp_path / 'user_config.py'
    config.write_text(f"_base_ = ['{_mmdet_config(stock)}']\n{imports}\n{one_liner}\n")
    cfg = Config.fromfile(str(config))
    stock_dp = Config.fromfile(str(_mmdet_config(stock))).model.data_preprocessor
    dp = MODELS.build(cfg.model.data_preprocessor)
    (aug,) = dp.batch_augments
    assert isinstance(aug, BatchPolicyAugment) and isinstance(aug.policy, SearchedPolicy)
    assert aug.mean.flatten().tolist() == pytest.approx(stock_dp.mean)
    assert aug.std.flatten().tolist() == pytest.approx(stock_dp.std)
    assert aug.channel_order == ('rgb' if stock_dp.bgr_to_rgb else 'bgr')
    assert_identity(dp)


# ----------------------------------------------------------------------------- item 2: config override

def test_policy_fragment_override_takes_effect(tmp_path):
    fragment = ROOT / 'configs/_base_/det_autoaug_policy.py'
    policy = write_policy(tmp_path / 'searched' / 'policy.json', IDENTITY)
    stock = _mmdet_config('retinanet/retinanet_r50_fpn_1x_coco.py')
    override = tmp_path / 'override.py'
    override.write_text(
        f"_base_ = ['{stock}', '{fragment}']\n"
        "train_dataloader = dict(dataset=dict(pipeline=[\n"
        "    *_base_.coco_pipeline_before_policy,\n"
        f"    dict(type='PolicyAugment', policy='{policy}'),\n"
        "    *_base_.coco_pipeline_after_policy]))\n")
    default = tmp_path / 'default.py'
    default.write_text(f"_base_ = ['{stock}', '{fragment}']\n"
                       "train_dataloader = dict(dataset=dict(pipeline={{_base_.autoaug_coco_train_pipeline}}))\n")
    # No variable of the fragment pretends to choose the policy: an override of it would be ignored.
    assert 'det_autoaug_policy' not in Config.fromfile(str(fragment))

    def built_policy(path):
        pipeline = Config.fromfile(str(path)).train_dataloader.dataset.pipeline
        types = [t['type'] for t in pipeline]
        assert types.index('PolicyAugment') == types.index('RandomFlip') + 1 and types[-1] == 'PackDetInputs'
        (transform,) = [TRANSFORMS.build(t) for t in pipeline if t['type'] == 'PolicyAugment']
        assert isinstance(transform, PolicyAugment)
        return transform.policy

    searched = built_policy(override)
    assert isinstance(searched, SearchedPolicy) and searched.file.path == str(policy)
    assert built_policy(default).name == 'autoaug_det_v0'


# ----------------------------------------------------------------------------- item 4: export distance

#: 20 entries with mmdet equivalents, probabilities near uniform (as after a short search).
NEAR_UNIFORM_ENTRIES = [(op, m) for op in ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')
                        for m in ((10.0, 20.0) if op == 'Rotate' else (0.1, 0.2))] + \
    [(op, m) for op in ('Color', 'Contrast', 'Brightness', 'Sharpness') for m in (0.2, 0.4)] + \
    [('Equalize', 1.0), ('AutoContrast', 1.0)]


def near_uniform_policy():
    n = len(NEAR_UNIFORM_ENTRIES)
    probs = 1.0 / n + np.random.RandomState(0).uniform(-0.002, 0.002, n)
    probs = probs / probs.sum()
    return build_policy(policy_from_dict(policy_doc(NEAR_UNIFORM_ENTRIES, probs.tolist(), apply_prob=0.35,
                                                    ops_per_policy=2)))


def brute_force_tv(policy, config) -> float:
    """TV between the searched distribution over (tuple | no augmentation) and the exported one."""
    probs = policy.distribution()[0].numpy()
    pairs = 0.35 * np.outer(probs, probs).reshape(-1)
    ranked = np.argsort(-pairs, kind='stable')
    exported = np.array(config['prob'])
    kept = len(exported) - 1                          # the last sub-policy is "no augmentation"
    tv = np.abs(exported[:kept] - pairs[ranked[:kept]]).sum() + abs(exported[-1] - 0.65)
    return 0.5 * float(tv + pairs[ranked[kept:]].sum())


def test_export_of_a_near_uniform_policy_reports_its_distance():
    policy = near_uniform_policy()
    with pytest.warns(UserWarning, match=r'total-variation distance 0\.3\d+ .* goes from 0\.35 to 0\.0\d+'):
        result = export_mmdet_autoaugment(policy, keep_apply_prob=False)
    assert result.kept == 25 and result.augment_prob == pytest.approx(0.35)
    assert result.exported_augment_prob == pytest.approx(1 - result.config['prob'][-1])
    assert result.exported_augment_prob < 0.05                # the trap, now reported
    assert result.tv_distance == pytest.approx(brute_force_tv(policy, result.config), abs=1e-9)
    with pytest.raises(ValueError, match=r'total-variation distance 0\.3\d+'):
        to_mmdet_autoaugment(policy, strict=True)

    with pytest.warns(UserWarning, match='total-variation distance'):
        kept = export_mmdet_autoaugment(policy)  # the default keeps the chance of augmenting
    assert kept.exported_augment_prob == pytest.approx(0.35, abs=1e-12)
    assert kept.config['prob'][-1] == pytest.approx(0.65, abs=1e-12) and sum(kept.config['prob']) == 1.0
    assert kept.tv_distance == pytest.approx(brute_force_tv(policy, kept.config), abs=1e-9)

    top_k = result.top_k_within_tolerance
    assert top_k is not None and 25 < top_k < 400
    with warnings.catch_warnings():
        warnings.simplefilter('error')   # within the tolerance: no warning (magnitudes round exactly)
        close = export_mmdet_autoaugment(policy, top_k=top_k)
    assert close.tv_distance <= 0.1 and close.tv_distance == pytest.approx(brute_force_tv(policy, close.config))
    with pytest.warns(UserWarning, match='total-variation distance'):
        export_mmdet_autoaugment(policy, top_k=top_k - 1)
    transform = TRANSFORMS.build(close.config)
    assert len(transform.transforms) == top_k + 1


def test_export_that_keeps_every_chain_is_exact_and_arguments_are_checked():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        result = export_mmdet_autoaugment(policy_from_dict(policy_doc([('Rotate', 10.0)], [1.0], 1.0)))
    assert result.tv_distance == 0.0 and result.exported_augment_prob == 1.0
    for kwargs in (dict(tolerance=1.5), dict(tolerance=True), dict(strict=1), dict(keep_apply_prob='yes')):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            to_mmdet_autoaugment('autoaug_det_v0', **kwargs)


# ----------------------------------------------------------------------------- issue 15 item 3: boxes

INVALID = {'nan': [float('nan'), 2.0, 10.0, 12.0], 'inf': [2.0, 2.0, float('inf'), 12.0],
           'x2<x1': [20.0, 2.0, 10.0, 12.0]}


def _results(bad):
    return dict(img=np.zeros((32, 40, 3), np.uint8), img_shape=(32, 40), ori_shape=(32, 40),
                gt_bboxes=HorizontalBoxes(torch.tensor([[4.0, 4.0, 20.0, 24.0], bad])),
                gt_bboxes_labels=np.array([1, 2]), gt_ignore_flags=np.array([False, True]))


@pytest.mark.parametrize('kind', sorted(INVALID))
def test_policy_augment_validates_boxes_when_nothing_is_applied(kind, tmp_path):
    bad = INVALID[kind]
    value = re.escape(repr(bad[0] if kind == 'nan' else bad[2]))
    nothing = str(write_policy(tmp_path / 'nothing.json', NOTHING))
    for cfg in (dict(type='PolicyAugment', policy=nothing), dict(type='DARotate', prob=0.0, level=5)):
        transform = TRANSFORMS.build(cfg)
        for _ in range(3):
            with pytest.raises(ValueError, match=rf'gt_bboxes holds 1 invalid boxes at \[1\]: .*{value}'):
                transform(_results(bad))
    out = TRANSFORMS.build(dict(type='PolicyAugment', policy=nothing, sanitize_boxes=True))(_results(bad))
    assert out['gt_bboxes'].tensor.tolist() == [[4.0, 4.0, 20.0, 24.0]]
    assert out['gt_bboxes_labels'].tolist() == [1] and out['gt_ignore_flags'].tolist() == [False]


@pytest.mark.parametrize('kind', sorted(INVALID))
def test_batch_policy_augment_validates_boxes_when_nothing_is_applied(kind, tmp_path):
    nothing = str(write_policy(tmp_path / 'nothing.json', NOTHING))
    boxes = [[[4.0, 4.0, 20.0, 24.0]], [[4.0, 4.0, 20.0, 24.0], INVALID[kind]]]
    dp = DetDataPreprocessor(**PREPROCESSORS['imagenet'][0], pad_size_divisor=32,
                             batch_augments=[dict(type='BatchPolicyAugment', policy=nothing, seed=0)])
    with pytest.raises(ValueError, match=r'data_samples\[1\]\.gt_instances\.bboxes holds 1 invalid boxes at \[1\]'):
        dp(make_batch(boxes=boxes), training=True)
    dp = DetDataPreprocessor(**PREPROCESSORS['imagenet'][0], pad_size_divisor=32,
                             batch_augments=[dict(type='BatchPolicyAugment', policy=nothing, seed=0,
                                                  sanitize_boxes=True)])
    out = dp(make_batch(boxes=boxes), training=True)
    gt = out['data_samples'][1].gt_instances
    assert gt.bboxes.tolist() == [[4.0, 4.0, 20.0, 24.0]] and gt.labels.tolist() == [1]
