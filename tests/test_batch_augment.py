"""BatchPolicyAugment on normalised, padded batches, through mmdet's real DetDataPreprocessor."""
from __future__ import annotations

from typing import List, Sequence

import pytest
import torch

from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.structures import InstanceData

from det_autoaug.mmdet_plugins.batch_augment import (
    IMAGENET_MEAN, IMAGENET_STD, BatchPolicyAugment, batch_augment_cfg)
from det_autoaug.ops.table import FILL_VALUE
from det_autoaug.policy.policy import ChainStep

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
# Two images of different sizes: padded (pad_size_divisor=32) to one 64 x 64 batch.
SHAPES = [(40, 48), (32, 56)]


class FixedChains:
    """A stand-in policy that gives every image the same chain (the ops' signs stay random)."""

    def __init__(self, steps: Sequence[ChainStep]) -> None:
        self.steps = list(steps)

    def sample_chain(self, generator: torch.Generator, epoch=None, train_epochs=None) -> List[ChainStep]:
        return list(self.steps)


def make_preprocessor(device: str = 'cpu', seed: int = 0, **aug_kwargs) -> DetDataPreprocessor:
    aug = dict(type='BatchPolicyAugment', policy='autoaug_det_v0', seed=seed, mean=list(IMAGENET_MEAN),
               std=list(IMAGENET_STD), channel_order='rgb')
    aug.update(aug_kwargs)
    dp = DetDataPreprocessor(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), bgr_to_rgb=True,
                             pad_size_divisor=32, batch_augments=[aug])
    return dp.to(device)


def make_batch(boxes: Sequence[Sequence[Sequence[float]]], labels: Sequence[Sequence[int]],
               seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for (h, w), b, lab in zip(SHAPES, boxes, labels):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        s.gt_instances = InstanceData(bboxes=HorizontalBoxes(torch.tensor(b, dtype=torch.float32).view(-1, 4)),
                                      labels=torch.tensor(lab, dtype=torch.long),
                                      ids=torch.arange(len(lab)) + 100)
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def clone_batch(batch: dict) -> dict:
    return dict(inputs=[x.clone() for x in batch['inputs']],
                data_samples=[s.clone() for s in batch['data_samples']])


def run(dp: DetDataPreprocessor, batch: dict, steps=None, training: bool = True):
    if steps is not None:
        dp.batch_augments[0].policy = FixedChains(steps)
    out = dp(clone_batch(batch), training=training)
    return out['inputs'], out['data_samples']


BOXES = [[[10.0, 8.0, 30.0, 28.0]], [[20.0, 4.0, 36.0, 20.0], [1.0, 1.0, 12.0, 30.0]]]
LABELS = [[3], [5, 7]]


def test_registered_and_built_by_the_preprocessor():
    dp = make_preprocessor()
    assert isinstance(dp.batch_augments[0], BatchPolicyAugment)
    assert MODELS.get('BatchPolicyAugment') is BatchPolicyAugment


@pytest.mark.parametrize('device', DEVICES)
def test_identity_chain_leaves_the_batch_unchanged(device):
    batch = make_batch(BOXES, LABELS)
    dp = make_preprocessor(device)
    ref, ref_samples = run(dp, batch, training=False)
    for steps in ([], [ChainStep('Identity', 1.0, 1.0)]):
        out, samples = run(dp, batch, steps)
        assert out.device == ref.device and out.shape == ref.shape == (2, 3, 64, 64)
        # Identity goes through un-normalise / re-normalise: equal up to float round-off.
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
        for s, r in zip(samples, ref_samples):
            torch.testing.assert_close(s.gt_instances.bboxes, r.gt_instances.bboxes)
            assert s.gt_instances.labels.tolist() == r.gt_instances.labels.tolist()


@pytest.mark.parametrize('device', DEVICES)
def test_translation_moves_boxes_by_the_true_image_width_and_keeps_the_padding(device):
    batch = make_batch(BOXES, LABELS)
    dp = make_preprocessor(device)
    ref, _ = run(dp, batch, training=False)
    magnitude = 0.25                          # fraction of the image's own width
    out, samples = run(dp, batch, [ChainStep('TranslateX', magnitude, 1.0)])
    assert out.device.type == torch.device(device).type
    fill = ((FILL_VALUE - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).to(out)
    for i, ((h, w), sample) in enumerate(zip(SHAPES, samples)):
        shift = magnitude * w                 # 12 px and 14 px: not a fraction of the padded 64
        new = sample.gt_instances.bboxes.cpu()
        old = torch.tensor(BOXES[i][0])
        dx = float(new[0, 2] - old[2])      # x2 is never clipped here
        assert abs(abs(dx) - shift) < 1e-4, f'image {i}: box moved by {dx}, expected +-{shift}'
        expected = (old + torch.tensor([dx, 0.0, dx, 0.0])).clamp(min=0).clamp(max=w)
        torch.testing.assert_close(new[0], expected, atol=1e-4, rtol=0)
        d = int(round(dx))
        # Pixels: the valid region moved by d; the uncovered columns hold the fill value.
        if d > 0:
            torch.testing.assert_close(out[i, :, :h, d:w], ref[i, :, :h, :w - d], atol=1e-3, rtol=0)
            uncovered = out[i, :, :h, :d]
        else:
            torch.testing.assert_close(out[i, :, :h, :w + d], ref[i, :, :h, -d:w], atol=1e-3, rtol=0)
            uncovered = out[i, :, :h, w + d:w]
        torch.testing.assert_close(uncovered, fill.view(3, 1, 1).expand_as(uncovered), atol=1e-3, rtol=0)
        # The padding is exactly the preprocessor's pad value (0 after normalisation).
        assert torch.equal(out[i, :, h:, :], ref[i, :, h:, :]) and float(out[i, :, h:, :].abs().max()) == 0
        assert torch.equal(out[i, :, :, w:], ref[i, :, :, w:]) and float(out[i, :, :, w:].abs().max()) == 0


def test_boxes_pushed_out_are_dropped_with_labels_and_every_instance_field():
    # Image 0 (48 px wide) has a box at each edge; a shift of 24 px pushes exactly one out.
    boxes = [[[1.0, 5.0, 9.0, 20.0], [39.0, 5.0, 47.0, 20.0]], [[20.0, 4.0, 36.0, 20.0]]]
    labels = [[2, 8], [4]]
    batch = make_batch(boxes, labels)
    dp = make_preprocessor()
    for seed in range(3):
        dp.batch_augments[0].generator = torch.Generator().manual_seed(seed)
        _, samples = run(dp, batch, [ChainStep('TranslateX', 0.5, 1.0)])
        gt = samples[0].gt_instances
        assert len(gt) == 1 and isinstance(gt.bboxes, torch.Tensor)   # boxtype2tensor=True
        left_survived = float(gt.bboxes[0, 0]) > 20        # moved right by 24: the right box left
        assert gt.labels.tolist() == ([2] if left_survived else [8])
        assert gt.ids.tolist() == ([100] if left_survived else [101])
        assert len(gt.bboxes) == len(gt.labels) == len(gt.ids)


def test_boxes_keep_horizontal_boxes_type_and_ignored_instances_follow():
    batch = make_batch(BOXES, LABELS)
    for s in batch['data_samples']:
        s.ignored_instances = InstanceData(bboxes=HorizontalBoxes(torch.tensor([[2.0, 2.0, 20.0, 20.0]])),
                                           labels=torch.tensor([0]))
    dp = DetDataPreprocessor(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), bgr_to_rgb=True,
                             pad_size_divisor=32, boxtype2tensor=False,
                             batch_augments=[dict(type='BatchPolicyAugment', seed=0)])
    dp.batch_augments[0].policy = FixedChains([ChainStep('TranslateY', 0.25, 1.0)])
    out = dp(clone_batch(batch), training=True)
    for (h, w), s in zip(SHAPES, out['data_samples']):
        assert isinstance(s.gt_instances.bboxes, HorizontalBoxes)
        ign = s.ignored_instances.bboxes.tensor
        assert len(ign) == len(s.ignored_instances.labels)
        if len(ign):
            dy = float(ign[0, 1] - 2.0) if float(ign[0, 1]) > 2.0 else float(ign[0, 3] - 20.0)
            assert abs(abs(dy) - 0.25 * h) < 1e-4


def test_validation_batches_are_not_augmented():
    batch = make_batch(BOXES, LABELS)
    dp = make_preprocessor()
    dp.batch_augments[0].policy = FixedChains([ChainStep('TranslateX', 0.5, 1.0)])
    a = dp(clone_batch(batch), training=False)['inputs']
    b = dp(clone_batch(batch), training=False)['inputs']
    assert torch.equal(a, b)
    assert len(dp(clone_batch(batch), training=False)['data_samples'][0].gt_instances) == 1


def test_bgr_channel_order_round_trip_and_from_preprocessor():
    batch = make_batch(BOXES, LABELS)
    caffe_mean, caffe_std = [102.9801, 115.9465, 122.7717], [1.0, 1.0, 1.0]
    dp = DetDataPreprocessor(mean=caffe_mean, std=caffe_std, bgr_to_rgb=False, pad_size_divisor=32)
    aug = BatchPolicyAugment.from_preprocessor(dp, seed=0)
    assert aug.channel_order == 'bgr'
    assert aug.mean.flatten().tolist() == pytest.approx(caffe_mean)
    cfg = batch_augment_cfg(dict(mean=caffe_mean, std=caffe_std, bgr_to_rgb=False), policy='autoaug_det_v1')
    assert cfg == dict(type='BatchPolicyAugment', policy='autoaug_det_v1', mean=caffe_mean, std=caffe_std,
                       channel_order='bgr')
    aug.policy = FixedChains([ChainStep('Identity', 1.0, 1.0)])
    ref = dp(clone_batch(batch), training=False)
    out, _ = aug(ref['inputs'], ref['data_samples'])
    torch.testing.assert_close(out, ref['inputs'], atol=1e-3, rtol=0)
    # Colour ops see RGB: Invert is symmetric in the channels, so BGR in, BGR out.
    aug.policy = FixedChains([ChainStep('Invert', 1.0, 1.0)])
    out, _ = aug(ref['inputs'].clone(), ref['data_samples'])
    h, w = SHAPES[0]
    mean = torch.tensor(caffe_mean).view(3, 1, 1)
    torch.testing.assert_close(out[0, :, :h, :w] + mean, 255 - (ref['inputs'][0, :, :h, :w] + mean),
                               atol=1e-3, rtol=0)


def test_published_policy_keeps_the_batch_consistent():
    batch = make_batch(BOXES, LABELS)
    dp = make_preprocessor(seed=1)
    ref, _ = run(dp, batch, training=False)
    for _ in range(4):
        out, samples = run(dp, batch)
        assert out.shape == ref.shape and out.dtype == ref.dtype
        for (h, w), i, s in zip(SHAPES, range(2), samples):
            assert float(out[i, :, h:, :].abs().max()) == 0 and float(out[i, :, :, w:].abs().max()) == 0
            b = s.gt_instances.bboxes
            assert len(b) == len(s.gt_instances.labels) == len(s.gt_instances.ids)
            if len(b):
                assert float(b[:, 2].max()) <= w + 1e-4 and float(b[:, 3].max()) <= h + 1e-4
                assert float(b.min()) >= -1e-4


def test_the_kernels_run_on_the_batch_device(monkeypatch):
    import det_autoaug.policy.apply as policy_module  # where BatchPolicyAugment finds apply_chains_torch
    seen = []
    real = policy_module.apply_chains_torch

    def spy(images, boxes, chains, generator, **kw):
        seen.append((images.device, [b.device for b in boxes]))
        return real(images, boxes, chains, generator, **kw)

    monkeypatch.setattr(policy_module, 'apply_chains_torch', spy)
    device = DEVICES[-1]
    dp = make_preprocessor(device)
    out, _ = run(dp, make_batch(BOXES, LABELS), [ChainStep('Rotate', 10.0, 1.0)])
    assert seen and all(d.type == torch.device(device).type and all(b.type == d.type for b in bd)
                        for d, bd in seen)
    assert out.device.type == torch.device(device).type


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='no_such_policy'):
        MODELS.build(dict(type='BatchPolicyAugment', policy='no_such_policy'))
    with pytest.raises(FileNotFoundError, match='missing.json'):
        MODELS.build(dict(type='BatchPolicyAugment', policy='/nonexistent/missing.json'))
    with pytest.raises(ValueError, match='channel_order'):
        BatchPolicyAugment(channel_order='rbg')
    with pytest.raises(ValueError, match='std'):
        BatchPolicyAugment(std=[1.0, 0.0, 1.0])
    batch = make_batch(BOXES, LABELS)
    dp = make_preprocessor()
    data = dp(clone_batch(batch), training=False)
    aug = dp.batch_augments[0]
    with pytest.raises(ValueError, match='one data sample per image'):
        aug(data['inputs'], data['data_samples'][:1])
    data['data_samples'][0].gt_instances.masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    with pytest.raises(ValueError, match='masks'):
        aug(data['inputs'], data['data_samples'])


# With mmdet's ImageNet mean/std, float32 brings levels 1, 6, 61, 62 of channel 0, 56 of channel 1 and
# 42, 45 of channel 2 back just below the integer: thresholds at 62 and 56, and posterisation steps of
# 2 and 8, fall on them.
@pytest.mark.parametrize('op,magnitude', [('Solarize', 256.0 - 62), ('Solarize', 256.0 - 56), ('Posterize', 1.0),
                                          ('Posterize', 3.0), ('SolarizeAdd', 60.0)])
def test_threshold_ops_see_the_integer_pixels_the_preprocessor_normalised(op, magnitude):
    """Every uint8 level in every channel goes through (x - mean) / std and back; float32 round-off
    leaves some just below the integer, which a threshold would put one step off. The output must
    equal the op on the uint8 image itself (re-normalised the same way)."""
    from det_autoaug.ops.torch_ops import apply_op

    levels = torch.arange(256, dtype=torch.uint8).view(16, 16)
    image = torch.stack([levels, levels.flip(0), levels.t()])            # (3, 16, 16): all 256 levels
    sample = DetDataSample(metainfo=dict(img_shape=(16, 16), ori_shape=(16, 16)))
    sample.gt_instances = InstanceData(bboxes=HorizontalBoxes(torch.tensor([[2.0, 2.0, 12.0, 12.0]])),
                                       labels=torch.tensor([1]))
    dp = DetDataPreprocessor(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), bgr_to_rgb=False, pad_size_divisor=1,
                             batch_augments=[dict(type='BatchPolicyAugment', policy='autoaug_det_v0', seed=0)])
    dp.batch_augments[0].policy = FixedChains([ChainStep(op, magnitude, 1.0)])
    out = dp(dict(inputs=[image], data_samples=[sample]), training=True)['inputs']
    # The preprocessor's input is BGR (bgr_to_rgb=False keeps it; the augment then works in RGB).
    expected_rgb = apply_op(op, image.flip(0)[None], None, magnitude).images.float()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    got_rgb = (out * std + mean).flip(1)
    wrong = (got_rgb - expected_rgb).abs() > 0.01
    assert not bool(wrong.any()), (f'{op}@{magnitude}: {int(wrong.sum())} of {wrong.numel()} pixels differ from the '
                                   f'uint8 result, e.g. {got_rgb[wrong][:4].tolist()} '
                                   f'vs {expected_rgb[wrong][:4].tolist()}')
