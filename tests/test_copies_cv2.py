"""The search's hard copies take the same draws on either route (cv2 per image, batched torch).

``augment_batch`` makes hard copies of uint8 images for a CPU device with the cv2 kernels, and
everything else (CUDA, differentiable copies, gates, float images) with the torch kernels. For one
seed both routes must give the same boxes, keep masks, labels and per-instance fields bit for bit
and leave the generator in the same state; the pixels may differ by the kernels' interpolation and
rounding. Measured on these images (two resized photos, three seeds, each op alone at its largest
and its middle magnitude), the largest difference per op is 0 for the exact ops
(:data:`EXACT_OPS`: flips, look-up tables, cutouts, Identity) and 1 grey level for every other op
(warps, filters, blends). In chains a statistics op after an interpolating one spreads those
one-level differences (Equalize after a warp: a few pixels differ by up to 106 levels, 0.7% by more
than 1), so chains are held to: mean absolute difference <= 0.25 (measured <= 0.08), at least 98% of
the values within 1 level (measured >= 99.3%) and 99.5% within 4 (measured >= 99.9%).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from det_autoaug.ops.table import OPS, get_op
from det_autoaug.policy.step import ChainStep
from det_autoaug.search.batch_augment import augment_batch, copy_route
from det_autoaug.search.context import SearchContext, TorchSearchContext

pytestmark = pytest.mark.usefixtures('one_thread')  # small images (conftest.py)

#: Ops whose cv2 and torch kernels give the same pixels (measured maximum difference 0).
EXACT_OPS = {'Identity', 'FlipLR', 'FlipUD', 'AutoContrast', 'Equalize', 'Invert', 'Posterize', 'Solarize',
             'SolarizeAdd', 'Contrast', 'Brightness', 'Cutout', 'BBox_Cutout', 'Solarize_Only_BBoxes',
             'Equalize_Only_BBoxes', 'Cutout_Only_BBoxes'}
#: The largest difference of every other op alone (warps, filters, blends), in grey levels.
OP_MAX_DIFF = 1
SIZES = ((48, 64), (48, 64), (40, 56))  # two sizes: the images are augmented in two groups
CHAINS = [
    [ChainStep('Rotate', 20.0), ChainStep('Color', 0.6), ChainStep('Cutout', 0.2)],
    [ChainStep('TranslateX', 0.3), ChainStep('ShearY', 0.2), ChainStep('Equalize', 1.0)],
    [ChainStep('Rotate_Only_BBoxes', 20.0, 0.9), ChainStep('Solarize', 128.0), ChainStep('FlipLR', 1.0)],
    [ChainStep('BBox_Cutout', 0.4), ChainStep('Cutout_Only_BBoxes', 0.2, 1.0), ChainStep('Posterize', 4.0),
     ChainStep('Sharpness', 0.8)],
    [ChainStep('ShearX', 0.3), ChainStep('TranslateY_Only_BBoxes', 0.25, 1.0), ChainStep('AutoContrast', 1.0),
     ChainStep('Rotate', 30.0)],
]


def _photos():
    from skimage.data import astronaut, coffee
    return [astronaut(), coffee()]


PHOTOS = _photos()


def _det_batch(seed: int) -> dict:
    """Three BGR images of two sizes, each with 4 gt boxes (labels, an ``index`` field) and 1 ignored box;
    some boxes near the border, so that geometric ops drop them."""
    import cv2
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmengine.structures import InstanceData
    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    for i, (h, w) in enumerate(SIZES):
        rgb = cv2.resize(PHOTOS[i % 2], (w, h), interpolation=cv2.INTER_AREA)
        inputs.append(torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1].transpose(2, 0, 1))))
        xy = rng.uniform(0, [w - 4, h - 4], (5, 2))
        boxes = torch.from_numpy(np.concatenate([xy, np.minimum(xy + rng.uniform(3, 30, (5, 2)), [w, h])], 1)).float()
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        sample.gt_instances = InstanceData(bboxes=HorizontalBoxes(boxes[:4]), labels=torch.arange(4) + i,
                                           index=torch.arange(4))
        sample.ignored_instances = InstanceData(bboxes=HorizontalBoxes(boxes[4:]), labels=torch.tensor([9]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _cls_batch(seed: int) -> dict:
    """A stacked (6, 3, 28, 28) RGB uint8 classification batch (grey replicated, as Fashion-MNIST)."""
    import cv2
    from mmengine.structures import BaseDataElement
    grey = cv2.cvtColor(cv2.resize(PHOTOS[seed % 2], (56, 84)), cv2.COLOR_RGB2GRAY)
    crops = [grey[r:r + 28, c:c + 28] for r in (0, 28, 56) for c in (0, 28)]
    images = torch.from_numpy(np.stack(crops))[:, None].expand(-1, 3, -1, -1).contiguous()
    return dict(inputs=images, data_samples=[BaseDataElement(gt_label=torch.tensor([k])) for k in range(6)])


def _both(batch: dict, chain, seed: int, **kwargs):
    """``(torch copy, cv2 copy)`` from the same seed; the generators end in the same state."""
    g_torch, g_cv2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    ref = augment_batch(batch, chain, g_torch, backend='torch', **kwargs)
    ours = augment_batch(batch, chain, g_cv2, backend='cv2', **kwargs)
    assert torch.equal(g_torch.get_state(), g_cv2.get_state()), 'the routes drew differently'
    return ref, ours


def _pixel_diff(ref: dict, ours: dict) -> np.ndarray:
    for a, b in zip(ref['inputs'], ours['inputs']):
        assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    return torch.cat([(a.int() - b.int()).abs().flatten() for a, b in zip(ref['inputs'], ours['inputs'])]).numpy()


def _assert_same_instances(ref: dict, ours: dict) -> int:
    """Every instance field equal bit for bit (boxes, labels, the keep mask through ``index``); returns
    how many instances were dropped."""
    dropped = 0
    for a, b in zip(ref['data_samples'], ours['data_samples']):
        for key in ('gt_instances', 'ignored_instances'):
            x, y = a.get(key), b.get(key)
            assert x.keys() == y.keys()
            assert torch.equal(x.bboxes.tensor, y.bboxes.tensor), f'{key} boxes differ'
            assert x.bboxes.tensor.dtype == y.bboxes.tensor.dtype
            for field in x.keys():
                if field != 'bboxes':
                    assert torch.equal(x.get(field), y.get(field)), f'{key}.{field} differs'
        dropped += 4 - len(a.gt_instances)
    return dropped


@pytest.mark.parametrize('op', [op.name for op in OPS])
def test_each_op_alone_same_instances_and_draws_pixels_within_its_measured_difference(op):
    lo, hi = get_op(op).magnitude_range
    worst = 0
    for seed in range(3):
        batch = _det_batch(seed)
        for magnitude in (hi, (lo + hi) / 2):
            ref, ours = _both(batch, [ChainStep(op, magnitude, 1.0)], seed)
            _assert_same_instances(ref, ours)
            worst = max(worst, int(_pixel_diff(ref, ours).max()))
    assert worst <= (0 if op in EXACT_OPS else OP_MAX_DIFF), f'{op}: largest pixel difference {worst}'


@pytest.mark.parametrize('chain', range(len(CHAINS)))
def test_chains_on_detection_batches_same_instances_and_draws(chain):
    dropped = 0
    for seed in range(3):
        batch = _det_batch(seed)
        ref, ours = _both(batch, CHAINS[chain], seed)
        dropped += _assert_same_instances(ref, ours)
        diff = _pixel_diff(ref, ours)
        within_1, within_4 = np.mean(diff <= 1), np.mean(diff <= 4)
        assert diff.mean() <= 0.25 and within_1 >= 0.98 and within_4 >= 0.995, \
            f'seed {seed}: mean {diff.mean():.3f}, within 1: {within_1:.4f}, within 4: {within_4:.4f}'
        for before, after in zip(batch['data_samples'], ref['data_samples']):
            assert len(before.gt_instances) == 4, 'the input batch was modified'
            assert after.metainfo == before.metainfo
    if chain == 1:
        assert dropped > 0, 'the translation chain should drop boxes (the keep masks are then exercised)'


@pytest.mark.parametrize('chain', range(len(CHAINS)))
def test_chains_on_classification_batches_same_draws_labels_untouched(chain):
    for seed in range(2):
        batch = _cls_batch(seed)
        ref, ours = _both(batch, CHAINS[chain], seed, bgr=False)
        assert isinstance(ours['inputs'], torch.Tensor) and ours['inputs'].shape == batch['inputs'].shape
        diff = _pixel_diff(ref, ours)
        assert diff.mean() <= 0.25 and np.mean(diff <= 1) >= 0.98 and np.mean(diff <= 4) >= 0.995
        assert ours['data_samples'] is batch['data_samples']
        assert not torch.equal(ours['inputs'], batch['inputs'])


def test_empty_chain_copies_and_the_input_stays_untouched():
    batch = _det_batch(0)
    before = [img.clone() for img in batch['inputs']]
    ref, ours = _both(batch, [], 0)
    assert _pixel_diff(ref, ours).max() == 0 and _assert_same_instances(ref, ours) == 0
    for img, kept, copy in zip(batch['inputs'], before, ours['inputs']):
        assert torch.equal(img, kept) and copy.data_ptr() != img.data_ptr()


def test_route_by_device_and_kind_of_copy():
    images = [torch.zeros(3, 8, 8, dtype=torch.uint8)]
    hard = [ChainStep('Rotate', 10.0)]
    assert copy_route(images, 'cpu', False, hard) == 'cv2'
    assert copy_route(images, torch.device('cpu'), False, hard) == 'cv2'
    assert copy_route(images, 'cuda', False, hard) == 'torch'  # CUDA keeps the batched kernels
    assert copy_route(images, 'cuda:0', False, hard, backend='cv2') == 'cv2'  # forced: on the host
    assert copy_route(images, 'cpu', True, hard) == 'torch'  # differentiable (DADA)
    assert copy_route([img.float() for img in images], 'cpu', False, hard) == 'torch'
    assert copy_route(images, 'cpu', False, [ChainStep('Rotate', 10.0, 1.0, torch.tensor(0.7))]) == 'torch'
    assert copy_route(images, 'cpu', False, hard, backend='torch') == 'torch'
    with pytest.raises(ValueError, match="backend='cv2'"):
        copy_route(images, 'cpu', True, hard, backend='cv2')
    with pytest.raises(ValueError, match='backend=.numpy.'):
        copy_route(images, 'cpu', False, hard, backend='numpy')


def test_auto_is_cv2_on_the_cpu_and_differentiable_copies_stay_on_torch():
    batch = _det_batch(1)
    chain = [ChainStep('Rotate', 20.0), ChainStep('Sharpness', 0.8)]
    auto = augment_batch(batch, chain, torch.Generator().manual_seed(5))
    cv2_copy = augment_batch(batch, chain, torch.Generator().manual_seed(5), backend='cv2')
    torch_copy = augment_batch(batch, chain, torch.Generator().manual_seed(5), backend='torch')
    assert all(torch.equal(a, b) for a, b in zip(auto['inputs'], cv2_copy['inputs']))
    assert not all(torch.equal(a, b) for a, b in zip(auto['inputs'], torch_copy['inputs']))
    magnitude = torch.tensor(20.0, requires_grad=True)
    soft = augment_batch(batch, [ChainStep('Rotate', magnitude)], torch.Generator().manual_seed(5), differentiable=True)
    ref = augment_batch(batch, [ChainStep('Rotate', magnitude)], torch.Generator().manual_seed(5), differentiable=True,
                        backend='torch')
    assert soft['inputs'][0].dtype == torch.float32 and soft['inputs'][0].requires_grad
    assert all(torch.equal(a, b) for a, b in zip(soft['inputs'], ref['inputs']))
    with pytest.raises(ValueError, match="backend='cv2'"):
        augment_batch(batch, [ChainStep('Rotate', magnitude)], torch.Generator(), differentiable=True, backend='cv2')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_copies_keep_the_torch_route():
    batch = _det_batch(2)
    chain = CHAINS[0]
    cuda = augment_batch(batch, chain, torch.Generator().manual_seed(3), device='cuda')
    ref = augment_batch(batch, chain, torch.Generator().manual_seed(3), device='cuda', backend='torch')
    assert all(a.is_cuda and torch.equal(a, b) for a, b in zip(cuda['inputs'], ref['inputs']))


def test_the_search_context_passes_its_copy_backend():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 2))
    ctx = TorchSearchContext(model, torch.nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1),
                             lambda: None, num_slots=1, seed=0)
    assert SearchContext.copy_backend == ctx.copy_backend == 'auto'
    batch = _cls_batch(0)
    chain = [ChainStep('ShearX', 0.3)]
    for backend in ('auto', 'torch'):
        ctx.copy_backend = backend
        state = ctx.aug_gen.get_state()
        copy = ctx.augment(batch, chain)['inputs']
        ctx.aug_gen.set_state(state)
        expected = augment_batch(batch, chain, ctx.aug_gen, backend='cv2' if backend == 'auto' else 'torch', bgr=False)
        assert torch.equal(copy, expected['inputs'])
