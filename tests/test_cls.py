"""Classification path: datasets on tiny files in the real formats, the model, the policy
transforms, and a tiny DDAS search + training runs through tools/search_cls.py and tools/train_cls.py."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate

import det_autoaug.cls as cls
from det_autoaug.ops.spaces import get_space
from det_autoaug.policy.policy_file import load_policy_file, save_policy_file

from cls_helpers import make_fashion_root

ROOT = Path(__file__).resolve().parents[1]

PACK = [dict(type='PackClsInputs')]


@pytest.fixture(scope='module')
def fashion_root(tmp_path_factory) -> Path:
    return make_fashion_root(tmp_path_factory.mktemp('fmnist'))


def test_fashion_mnist_subset_pad_and_get_subset(fashion_root):
    ds = cls.DAFashionMNIST(split='train', data_root=fashion_root, subset=30, subset_seed=3, pad_to=32,
                            pipeline=PACK)
    labels = ds.get_labels()
    assert len(ds) == 30 and np.bincount(labels, minlength=10).tolist() == [3] * 10
    item = ds[0]
    assert item['inputs'].shape == (3, 32, 32) and item['inputs'].dtype == torch.uint8
    assert (item['inputs'][:, :2] == 0).all()  # the zero padding
    assert torch.equal(item['inputs'][0], item['inputs'][2])  # grey replicated
    assert int(item['data_samples'].gt_label) == labels[0]
    sub = ds.get_subset([2, 5])
    assert len(sub) == 2 and int(sub[1]['data_samples'].gt_label) == labels[5]
    assert ds.metainfo['classes'][0] == 'T-shirt/top'
    with pytest.raises(ValueError, match='subset=500 exceeds'):
        cls.DAFashionMNIST(split='train', data_root=fashion_root, subset=500)
    with pytest.raises(ValueError, match='pad_to'):
        cls.DAFashionMNIST(data_root=fashion_root, pad_to=20)


def test_cifar_svhn_imagefolder(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(1)
    folder = tmp_path / 'cifar-10-batches-py'
    folder.mkdir()
    rows = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        with open(folder / name, 'wb') as f:
            pickle.dump({b'data': rows, b'labels': [i % 10 for i in range(20)]}, f)
    with open(folder / 'batches.meta', 'wb') as f:
        pickle.dump({b'label_names': [f'c{i}'.encode() for i in range(10)]}, f)
    cifar = cls.DACIFAR(data_root=tmp_path, split='train', subset=20, pipeline=PACK)
    assert len(cifar) == 20 and cifar.metainfo['classes'][3] == 'c3'
    item = cifar[0]
    # every batch file holds the same 20 rows: the image is row j, with row j's label
    flat = item['inputs'].numpy().reshape(-1)
    j = [k for k in range(20) if np.array_equal(rows[k], flat)]
    assert len(j) == 1 and j[0] % 10 == int(item['data_samples'].gt_label)

    x = rng.integers(0, 256, (32, 32, 3, 12), dtype=np.uint8)
    savemat(tmp_path / 'test_32x32.mat', {'X': x, 'y': (np.arange(12) % 10 + 1).reshape(-1, 1)})
    svhn = cls.DASVHN(data_root=tmp_path, split='test', pipeline=PACK)
    assert len(svhn) == 12 and int(svhn[9]['data_samples'].gt_label) == 0  # label 10 is digit 0
    assert torch.equal(svhn[1]['inputs'], torch.from_numpy(x[..., 1].transpose(2, 0, 1).copy()))

    for c in range(4):
        (tmp_path / 'inet' / 'train' / f'n0{c}').mkdir(parents=True)
        for i in range(3):
            bgr = np.full((20, 30, 3), (10 * c, 100, 200), np.uint8)
            cv2.imwrite(str(tmp_path / 'inet' / 'train' / f'n0{c}' / f'{i}.png'), bgr)
    folder_ds = cls.DAImageFolder(data_root=tmp_path / 'inet', split='train', num_classes=2, class_seed=0,
                                  pipeline=[dict(type='ResizeCls', size=16), dict(type='CenterCropCls', size=16),
                                            dict(type='PackClsInputs')])
    assert len(folder_ds) == 6 and len(folder_ds.metainfo['classes']) == 2
    out = folder_ds[0]['inputs']
    assert out.shape == (3, 16, 16) and out[0, 0, 0] == 200 and out[2, 0, 0] < 40  # RGB, not BGR


def test_wideresnet_and_classifier_forward_backward_predict(fashion_root):
    with pytest.raises(ValueError, match='6n \\+ 4'):
        cls.WideResNet(depth=12)
    model = cls.DAImageClassifier(
        backbone=dict(type='DAWideResNet', depth=10, widen_factor=1, num_classes=10),
        data_preprocessor=dict(type='ImgDataPreprocessor', mean=[73.0] * 3, std=[90.0] * 3))
    ds = cls.DAFashionMNIST(data_root=fashion_root, split='train', pipeline=PACK)
    batch = pseudo_collate([ds[i] for i in range(8)])
    data = model.data_preprocessor(batch, training=True)
    assert data['inputs'].dtype == torch.float32 and data['inputs'].shape == (8, 3, 28, 28)
    losses = model(**data, mode='loss')
    losses['loss'].backward()
    assert torch.isfinite(losses['loss']) and model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model(data['inputs'], mode='tensor').shape == (8, 10)
    preds = model(**data, mode='predict')
    assert len(preds) == 8 and preds[0].pred_score.shape == (10,)
    metric = cls.DAAccuracy(topk=(1, 10))
    metric.process(batch, [p.to_dict() for p in preds])
    result = metric.compute_metrics(metric.results)
    assert 0.0 <= result['accuracy/top1'] <= 1.0 and result['accuracy/top10'] == 1.0
    assert cls.TorchvisionResNet('resnet18', 5).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_policy_transform_applies_the_drawn_entry(tmp_path):
    entries = [e for e in get_space('ddas_cifar') if e.op in ('FlipLR', 'Invert')]
    path = save_policy_file(tmp_path / 'p.json', searcher='ddas', space='ddas_cifar', entries=entries,
                            probs=[1.0, 0.0], apply_prob=1.0, ops_per_policy=1).path
    img = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3) * 8
    out = cls.DAClsPolicy(policy=path).transform({'img': img.copy()})['img']
    np.testing.assert_array_equal(out, img[:, ::-1])
    save_policy_file(tmp_path / 'q.json', searcher='ddas', space='ddas_cifar', entries=entries,
                     probs=[1.0, 0.0], apply_prob=0.0, ops_per_policy=1)
    np.testing.assert_array_equal(cls.DAClsPolicy(policy=str(tmp_path / 'q.json')).transform({'img': img})['img'], img)
    with pytest.raises(ValueError, match='no trajectory'):
        cls.DAClsPolicy(policy=path, schedule=True)
    out = cls.DAClsTorchvisionAug('randaugment').transform({'img': np.zeros((8, 8, 3), np.uint8)})['img']
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match='randaugment'):
        cls.DAClsTorchvisionAug('randaug')


def test_tiny_search_then_training_runs(fashion_root, tmp_path):
    import search_cls
    import train_cls
    data = [f'{key}.dataset.data_root={fashion_root}' for key in ('train_dataloader', 'test_dataloader')]
    policy = search_cls.main([
        '--device', 'cpu', '--work-dir', str(tmp_path / 'search'), '--cfg-options', *data[:1],
        'train_dataloader.dataset.subset=64', 'train_cfg.max_epochs=1', 'custom_hooks.0.searcher.num_policies=2'])
    loaded = load_policy_file(policy)
    assert len(loaded.probs) == 52 and loaded.space == 'ddas_cifar'
    assert [s.epoch for s in loaded.trajectory] == [1] and loaded.meta['iterations'] == 1
    assert abs(sum(loaded.probs) - 1) < 1e-4 and loaded.probs != tuple([1 / 52] * 52)  # one update moved p
    config = str(ROOT / 'configs' / 'cls' / 'wrn_fashion_mnist_train.py')
    tiny = [*data, 'train_dataloader.dataset.subset=40', 'test_dataloader.dataset.subset=20',
            'train_cfg.max_epochs=1', 'train_dataloader.batch_size=20']
    for i, extra in enumerate([['--policy', str(policy), '--schedule'], ['--policy', 'randaugment'],
                               ['--policy', 'none'], ['--policy', 'uniform', '--reference-policy', str(policy)]]):
        work = tmp_path / f'train{i}'
        result = train_cls.main([config, *extra, '--device', 'cpu', '--work-dir', str(work), '--cfg-options', *tiny])
        assert 0.0 <= result['metrics']['accuracy/top1'] <= 1.0
        assert json.loads((work / 'result.json').read_text())['policy'] == extra[1]
    uniform = load_policy_file(tmp_path / 'train3' / 'uniform_policy.json')
    assert uniform.apply_prob == pytest.approx(loaded.apply_prob) and set(uniform.probs) == {1 / 52}
    with pytest.raises(SystemExit, match='schedule'):
        train_cls.policy_transform('randaugment', True, None, tmp_path)


@pytest.mark.parametrize('searcher', ['dada', 'daas'])
def test_search_cls_searcher_flag_writes_a_policy_training_applies(fashion_root, tmp_path, searcher):
    import search_cls
    import train_cls
    data = f'train_dataloader.dataset.data_root={fashion_root}'
    policy = search_cls.main([
        '--device', 'cpu', '--searcher', searcher, '--work-dir', str(tmp_path / 'search'), '--cfg-options', data,
        'train_dataloader.dataset.subset=64', 'train_cfg.max_epochs=1'])
    loaded = load_policy_file(policy)
    assert loaded.searcher == searcher and loaded.meta['iterations'] == 1
    assert bool(loaded.subpolicies) == (searcher == 'dada')
    config = str(ROOT / 'configs' / 'cls' / 'wrn_fashion_mnist_train.py')
    tiny = [data, f'test_dataloader.dataset.data_root={fashion_root}', 'train_dataloader.dataset.subset=20',
            'test_dataloader.dataset.subset=10', 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=20']
    result = train_cls.main([config, '--policy', str(policy), '--device', 'cpu', '--work-dir', str(tmp_path / 'train'),
                             '--cfg-options', *tiny])
    assert 0.0 <= result['metrics']['accuracy/top1'] <= 1.0


def test_insert_policy_position():
    import train_cls
    t = dict(type='DAClsPolicy')
    assert train_cls.insert_policy([dict(type='RandomCropPadCls'), dict(type='PackClsInputs')], t)[0] is t
    assert train_cls.insert_policy([dict(type='RandomResizedCropCls'), dict(type='PackClsInputs')], t)[1] is t
