"""Classification loaders on tiny files written in the exact real formats, and real Fashion-MNIST."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cls_helpers import write_idx

from det_autoaug.data import (FASHION_MNIST_CLASSES, ImageFolderIndex, load_cifar, load_fashion_mnist,
                              load_imagenet_folder, load_svhn, stratified_split)
from det_autoaug.data.fashion_mnist import DEFAULT_ROOT, read_idx


def _cifar_rows(n: int, seed: int) -> np.ndarray:
    """(n, 3072) uint8 rows in CIFAR's layout: 1024 red, then 1024 green, then 1024 blue, row-major."""
    return np.random.Generator(np.random.PCG64(seed)).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(obj, path: Path) -> None:
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=2)


def _make_cifar10(root: Path) -> dict:
    folder = root / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    rows = {}
    for i in range(1, 6):
        rows[f'data_batch_{i}'] = (_cifar_rows(2, i), [i % 10, (i + 3) % 10])
    rows['test_batch'] = (_cifar_rows(3, 9), [9, 0, 1])
    for name, (data, labels) in rows.items():
        _dump({b'batch_label': name.encode(), b'labels': labels, b'data': data,
               b'filenames': [b'x.png'] * len(labels)}, folder / name)
    names = [b'airplane', b'automobile', b'bird', b'cat', b'deer', b'dog', b'frog', b'horse', b'ship', b'truck']
    _dump({b'num_cases_per_batch': 10000, b'label_names': names, b'num_vis': 3072}, folder / 'batches.meta')
    return rows


def test_cifar10_pickle_layout(tmp_path):
    rows = _make_cifar10(tmp_path)
    images, labels, classes = load_cifar(tmp_path, 'cifar10', 'train')
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [1, 4, 2, 5, 3, 6, 4, 7, 5, 8]
    assert classes[0] == 'airplane' and classes[9] == 'truck' and len(classes) == 10
    first = rows['data_batch_1'][0][0]
    # pixel (row 1, col 2): red at 32 + 2, green 1024 later, blue 2048 later
    assert images[0, 1, 2].tolist() == [first[34], first[1024 + 34], first[2048 + 34]]
    test_images, test_labels, _ = load_cifar(tmp_path / 'cifar-10-batches-py', 'cifar10', 'test')
    assert test_images.shape == (3, 32, 32, 3) and test_labels.tolist() == [9, 0, 1]


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / 'cifar-100-python'
    folder.mkdir()
    _dump({b'filenames': [b'a', b'b'], b'fine_labels': [99, 3], b'coarse_labels': [19, 1],
           b'data': _cifar_rows(2, 0)}, folder / 'train')
    _dump({b'fine_labels': [7], b'coarse_labels': [2], b'data': _cifar_rows(1, 1)}, folder / 'test')
    fine = [f'class{i}'.encode() for i in range(100)]
    _dump({b'fine_label_names': fine, b'coarse_label_names': [b'c'] * 20}, folder / 'meta')
    images, labels, classes = load_cifar(tmp_path, 'cifar100', 'train')
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [99, 3]
    assert len(classes) == 100 and classes[99] == 'class99'
    assert load_cifar(tmp_path, 'cifar100', 'test')[1].tolist() == [7]


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='cifar-10-batches-py'):
        load_cifar(tmp_path, 'cifar10')
    with pytest.raises(ValueError, match='cifar1000'):
        load_cifar(tmp_path, 'cifar1000')
    with pytest.raises(ValueError, match='valid'):
        load_cifar(tmp_path, 'cifar10', 'valid')
    _make_cifar10(tmp_path)
    (tmp_path / 'cifar-10-batches-py' / 'data_batch_3').unlink()
    with pytest.raises(FileNotFoundError, match='data_batch_3'):
        load_cifar(tmp_path, 'cifar10')


class _Evil:
    def __reduce__(self):
        return (print, ('pwned',))


def test_cifar_refuses_code_in_pickles(tmp_path):
    _make_cifar10(tmp_path)
    _dump({b'label_names': _Evil()}, tmp_path / 'cifar-10-batches-py' / 'batches.meta')
    with pytest.raises(pickle.UnpicklingError, match='print'):
        load_cifar(tmp_path, 'cifar10', 'test')


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    x = np.random.Generator(np.random.PCG64(0)).integers(0, 256, size=(32, 32, 3, 4), dtype=np.uint8)
    y = np.array([[10], [1], [9], [10]], dtype=np.uint8)
    savemat(tmp_path / 'train_32x32.mat', {'X': x, 'y': y})
    images, labels, classes = load_svhn(tmp_path, 'train')
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[2], x[:, :, :, 2])
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 9, 0]
    assert classes == tuple('0123456789')
    with pytest.raises(FileNotFoundError, match='extra_32x32.mat'):
        load_svhn(tmp_path, 'extra')
    with pytest.raises(ValueError, match='val'):
        load_svhn(tmp_path, 'val')


def test_imagenet_folder(tmp_path):
    tiny = np.zeros((4, 5, 3), dtype=np.uint8)
    layout = {'n02': ['b.JPEG', 'a.jpg'], 'n01': ['z.png', 'notes.txt']}
    for split in ('train', 'val'):
        for wnid, files in layout.items():
            (tmp_path / split / wnid).mkdir(parents=True)
            for name in files:
                path = tmp_path / split / wnid / name
                if name.endswith('.txt'):
                    path.write_text('not an image')
                else:
                    Image.fromarray(tiny).save(path, format='PNG' if name.endswith('png') else 'JPEG')
    paths, labels, classes = load_imagenet_folder(tmp_path, 'train')
    assert classes == ('n01', 'n02')
    assert [Path(p).name for p in paths] == ['z.png', 'a.jpg', 'b.JPEG']
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 1]
    index = ImageFolderIndex(tmp_path / 'val')
    assert len(index) == 3 and index[2] == (paths[2].replace('/train/', '/val/'), 1)
    with pytest.raises(FileNotFoundError, match='test'):
        load_imagenet_folder(tmp_path / 'missing', 'val')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no class folders'):
        ImageFolderIndex(tmp_path / 'empty')


def test_real_fashion_mnist():
    root = Path(DEFAULT_ROOT)
    if not root.is_dir():
        pytest.fail(f'{root} is missing: install it with `apt-get install dataset-fashion-mnist`')
    train_x, train_y = load_fashion_mnist(split='train')
    test_x, test_y = load_fashion_mnist(str(root), split='test')
    assert train_x.shape == (60000, 28, 28) and train_x.dtype == np.uint8
    assert test_x.shape == (10000, 28, 28) and test_y.dtype == np.int64
    assert np.bincount(train_y).tolist() == [6000] * 10
    assert np.bincount(test_y).tolist() == [1000] * 10
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[9] == 'Ankle boot'
    assert train_x.mean() > 50  # real clothes, not an empty file


def test_fashion_mnist_env_root_bad_magic_and_missing(tmp_path, monkeypatch):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / 't10k-images-idx3-ubyte.gz', 2051, images)
    write_idx(tmp_path / 't10k-labels-idx1-ubyte.gz', 2049, np.array([3, 7]))
    monkeypatch.setenv('FASHION_MNIST_DIR', str(tmp_path))
    x, y = load_fashion_mnist(split='test')
    np.testing.assert_array_equal(x, images)
    assert y.tolist() == [3, 7]

    write_idx(tmp_path / 't10k-labels-idx1-ubyte.gz', 2051, np.array([3, 7]))
    with pytest.raises(ValueError, match='t10k-labels-idx1-ubyte.gz.*magic'):
        load_fashion_mnist(split='test')
    with pytest.raises(ValueError, match='magic'):
        read_idx(tmp_path / 't10k-images-idx3-ubyte.gz', 2049)

    missing = '(?s)train-images-idx3-ubyte.gz.*apt-get install dataset-fashion-mnist'
    with pytest.raises(FileNotFoundError, match=missing):
        load_fashion_mnist(split='train')
    with pytest.raises(ValueError, match='validation'):
        load_fashion_mnist(split='validation')


def test_stratified_split_counts_balanced_disjoint_deterministic():
    labels = np.repeat(np.arange(10), 50)[np.random.Generator(np.random.PCG64(5)).permutation(500)]
    split = stratified_split(labels, {'train': 200, 'val': 200}, seed=0)
    assert set(split) == {'train', 'val'}
    for name in ('train', 'val'):
        assert split[name].dtype == np.int64 and len(split[name]) == 200
        assert np.bincount(labels[split[name]], minlength=10).tolist() == [20] * 10
    assert not set(split['train']) & set(split['val'])
    again = stratified_split(labels, {'train': 200, 'val': 200}, seed=0)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = stratified_split(labels, {'train': 200, 'val': 200}, seed=1)
    assert not np.array_equal(split['train'], other['train'])

    uneven = stratified_split(labels, {'train': 25}, seed=0)['train']
    assert sorted(np.bincount(labels[uneven], minlength=10).tolist()) == [2] * 5 + [3] * 5

    halves = stratified_split(labels, {'a': 0.7, 'b': 0.3}, seed=0)
    assert len(halves['a']) == 350 and len(halves['b']) == 150
    assert not set(halves['a']) & set(halves['b'])


def test_stratified_split_errors():
    labels = np.repeat(np.arange(4), 5)
    with pytest.raises(ValueError, match='class 0 has 5 samples'):
        stratified_split(labels, {'train': 12, 'val': 12}, seed=0)
    with pytest.raises(ValueError, match='all ints'):
        stratified_split(labels, {'train': 4, 'val': 0.5}, seed=0)
    with pytest.raises(ValueError, match='fractions'):
        stratified_split(labels, {'train': 0.8, 'val': 0.5}, seed=0)
    with pytest.raises(ValueError, match='1-D integer'):
        stratified_split(labels.astype(float), {'train': 4}, seed=0)
