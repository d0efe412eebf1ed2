"""Loaders for the classification datasets in the layouts their owners distribute.

- CIFAR-10 / CIFAR-100, "python version": ``cifar-10-batches-py/{data_batch_1..5, test_batch,
  batches.meta}`` and ``cifar-100-python/{train, test, meta}``.
- SVHN cropped digits: ``{train,test,extra}_32x32.mat`` (``X`` of shape ``(32, 32, 3, N)``, ``y``
  in 1..10 where 10 stands for the digit 0).
- ImageNet-style class folders: ``root/<split>/<class>/*.JPEG|jpg|png``.

Every loader returns ``(images or paths, labels int64, class names)`` and raises
``FileNotFoundError`` naming the path and the expected layout when something is missing.
``stratified_split`` draws the class-balanced search splits (DDAS: 2,000 train + 2,000 val images
split off the training set).

CIFAR files are pickles; they are read with an unpickler that only accepts numpy arrays and
plain containers, so a tampered file cannot run code.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

IMAGE_EXTENSIONS = ('.jpeg', '.jpg', '.png')
_CIFAR = {
    'cifar10': dict(folder='cifar-10-batches-py', train=[f'data_batch_{i}' for i in range(1, 6)],
                    test=['test_batch'], meta='batches.meta', labels=b'labels', names=b'label_names'),
    'cifar100': dict(folder='cifar-100-python', train=['train'], test=['test'], meta='meta',
                     labels=b'fine_labels', names=b'fine_label_names'),
}
_NUMPY_GLOBALS = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
                  ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
                  ('numpy', 'ndarray'), ('numpy', 'dtype'),
                  ('_codecs', 'encode')}  # how protocol-2 pickles written by Python 3 store bytes


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refusing to load {module}.{name}: a CIFAR file only holds numpy '
                                     'arrays, lists and bytes')


def _unpickle(path: Path) -> dict:
    with open(path, 'rb') as f:
        obj = _ArrayUnpickler(f, encoding='bytes').load()
    if not isinstance(obj, dict):
        raise ValueError(f'{path}: expected a pickled dict, got {type(obj).__name__}')
    return obj


def _key(d: dict, key: bytes, path: Path):
    for k in (key, key.decode()):
        if k in d:
            return d[k]
    raise KeyError(f'{path} has no key {key!r}; keys are {sorted(map(str, d))}')


def load_cifar(root: str | os.PathLike, variant: str = 'cifar10',
               split: str = 'train') -> Tuple[np.ndarray, np.ndarray, Tuple[str, ...]]:
    """Load CIFAR-10 or CIFAR-100 (fine labels) from the python pickle layout.

    Args:
        root: the folder holding ``cifar-10-batches-py`` / ``cifar-100-python``, or that folder.
        variant: ``'cifar10'`` or ``'cifar100'``.
        split: ``'train'`` (50,000 images) or ``'test'`` (10,000).

    Returns:
        ``(images, labels, classes)``.

    Shape:
        images ``(N, 32, 32, 3)`` uint8 RGB; labels ``(N,)`` int64.
    """
    if variant not in _CIFAR:
        raise ValueError(f'unknown CIFAR variant {variant!r}: expected one of {tuple(_CIFAR)}')
    if split not in ('train', 'test'):
        raise ValueError(f"unknown CIFAR split {split!r}: expected 'train' or 'test'")
    spec = _CIFAR[variant]
    root = Path(root)
    folder = root if root.name == spec['folder'] else root / spec['folder']
    layout = f"{spec['folder']}/{{{', '.join(spec['train'] + spec['test'] + [spec['meta']])}}}"
    files = [folder / name for name in spec[split]] + [folder / spec['meta']]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f'{variant} {split}: missing {missing}; expected the python-version layout '
                                f'{layout} under {root} (from https://www.cs.toronto.edu/~kriz/cifar.html, '
                                'the "python version" archive, extracted)')
    images, labels = [], []
    for path in files[:-1]:
        batch = _unpickle(path)
        data = np.asarray(_key(batch, b'data', path), dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f'{path}: data must have shape (N, 3072), got {data.shape}')
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(_key(batch, spec['labels'], path), dtype=np.int64))
        if len(labels[-1]) != len(images[-1]):
            raise ValueError(f'{path}: {len(images[-1])} images but {len(labels[-1])} labels')
    meta_path = files[-1]
    names = tuple(n.decode() if isinstance(n, bytes) else str(n)
                  for n in _key(_unpickle(meta_path), spec['names'], meta_path))
    labels_all = np.concatenate(labels)
    if labels_all.size and (labels_all.min() < 0 or labels_all.max() >= len(names)):
        raise ValueError(f'{variant} {split}: labels must be in 0..{len(names) - 1} ({meta_path} names '
                         f'{len(names)} classes), got {labels_all.min()}..{labels_all.max()}')
    return np.ascontiguousarray(np.concatenate(images)), labels_all, names


def load_svhn(root: str | os.PathLike, split: str = 'train') -> Tuple[np.ndarray, np.ndarray, Tuple[str, ...]]:
    """Load SVHN cropped digits (format 2) from ``{split}_32x32.mat``.

    Args:
        root: folder holding ``train_32x32.mat``, ``test_32x32.mat``, ``extra_32x32.mat``.
        split: ``'train'``, ``'test'`` or ``'extra'``.

    Returns:
        ``(images, labels, classes)`` with the label 10 of the files mapped to the digit 0.

    Shape:
        images ``(N, 32, 32, 3)`` uint8 RGB; labels ``(N,)`` int64 in 0..9.
    """
    from scipy.io import loadmat

    if split not in ('train', 'test', 'extra'):
        raise ValueError(f"unknown SVHN split {split!r}: expected 'train', 'test' or 'extra'")
    path = Path(root) / f'{split}_32x32.mat'
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found: expected the SVHN format-2 files {{train,test,extra}}_32x32.mat '
                                f'in {root} (from http://ufldl.stanford.edu/housenumbers/)')
    mat = loadmat(str(path))
    for key in ('X', 'y'):
        if key not in mat:
            raise KeyError(f'{path} has no variable {key!r}: expected X (32, 32, 3, N) and y (N, 1)')
    x, y = np.asarray(mat['X']), np.asarray(mat['y']).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
        raise ValueError(f'{path}: expected X of shape (32, 32, 3, N) and N labels, got {x.shape} and {y.shape}')
    if y.size and (y.min() < 0 or y.max() > 10):
        raise ValueError(f'{path}: labels must be in 1..10 (10 = digit 0), got {y.min()}..{y.max()}')
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2).astype(np.uint8)), y, tuple('0123456789')


class ImageFolderIndex:
    """Index of a class-folder tree ``root/<class>/<image>`` (classes and files in sorted order).

    Attributes:
        root: the folder.
        classes: class folder names, sorted; label ``i`` is ``classes[i]``.
        paths: image paths (``.JPEG``, ``.jpg``, ``.png``, any case), grouped by class.
        labels: ``(N,)`` int64.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        layout = f'{self.root}/<class>/<image>.JPEG|jpg|png'
        if not self.root.is_dir():
            raise FileNotFoundError(f'{self.root} is not a folder: expected class folders {layout}')
        self.classes: Tuple[str, ...] = tuple(sorted(p.name for p in self.root.iterdir() if p.is_dir()))
        if not self.classes:
            raise FileNotFoundError(f'{self.root} has no class folders: expected {layout}')
        paths: List[str] = []
        labels: List[int] = []
        for label, name in enumerate(self.classes):
            files = sorted(p for p in (self.root / name).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            paths.extend(str(p) for p in files)
            labels.extend([label] * len(files))
        if not paths:
            raise FileNotFoundError(f'no images with extensions {IMAGE_EXTENSIONS} under {self.root}: '
                                    f'expected {layout}')
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tuple[str, int]:
        return self.paths[index], int(self.labels[index])


def load_imagenet_folder(root: str | os.PathLike,
                         split: str = 'train') -> Tuple[List[str], np.ndarray, Tuple[str, ...]]:
    """Index an ImageNet-style folder ``root/<split>/<wnid>/*.JPEG``.

    Args:
        root: folder holding ``train/`` and ``val/`` (the val images sorted into class folders,
            as torchvision's ``ImageFolder`` expects).
        split: ``'train'`` or ``'val'``.

    Returns:
        ``(paths, labels, classes)``: image paths, ``(N,)`` int64 labels, sorted class names.
    """
    if split not in ('train', 'val'):
        raise ValueError(f"unknown ImageNet split {split!r}: expected 'train' or 'val'")
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f'{folder} not found: expected {root}/{split}/<wnid>/<image>.JPEG '
                                '(val images sorted into class folders too)')
    index = ImageFolderIndex(folder)
    return index.paths, index.labels, index.classes


def stratified_split(labels: Sequence[int] | np.ndarray,
                     sizes: Mapping[str, Union[int, float]],
                     seed: int = 0) -> Dict[str, np.ndarray]:
    """Disjoint, class-balanced subsets of ``range(len(labels))``.

    Args:
        labels: ``(N,)`` class of each sample.
        sizes: split name -> number of samples (all ints: each split gets ``n // C`` samples
            of every class, the remainder spread over randomly chosen classes), or -> fraction
            (all floats in ``(0, 1]``, sum <= 1: each split gets that fraction of every class).
            DDAS search split: ``{'train': 2000, 'val': 2000}``.
        seed: seed of the ``numpy.random.Generator(PCG64(seed))`` that shuffles each class.

    Returns:
        split name -> sorted int64 indices; splits are disjoint.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}')
    if not sizes:
        raise ValueError('sizes must name at least one split')
    values = list(sizes.values())
    counts_mode = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    if counts_mode:
        if any(v < 0 for v in values):
            raise ValueError(f'split sizes must be >= 0, got {dict(sizes)}')
    elif all(isinstance(v, float) for v in values):
        if any(not 0 < v <= 1 for v in values) or sum(values) > 1 + 1e-9:
            raise ValueError(f'split fractions must be in (0, 1] and sum to <= 1, got {dict(sizes)}')
    else:
        raise ValueError(f'sizes must be all ints (counts) or all floats (fractions), got {dict(sizes)}')
    rng = np.random.Generator(np.random.PCG64(seed))
    classes = np.unique(labels)
    per_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quotas: Dict[str, Dict[int, int]] = {}
    cumulative = 0.0
    for name, size in sizes.items():
        if counts_mode:
            base, extra = divmod(int(size), len(classes))
            bonus = set(rng.choice(classes, size=extra, replace=False).tolist()) if extra else set()
            quotas[name] = {c: base + (c in bonus) for c in classes.tolist()}
        else:
            # cumulative boundaries, so rounding never makes the splits overlap or overflow
            lo, cumulative = cumulative, min(1.0, cumulative + size)
            quotas[name] = {c: int(round(cumulative * len(per_class[c]))) - int(round(lo * len(per_class[c])))
                            for c in classes.tolist()}
    out: Dict[str, List[np.ndarray]] = {name: [] for name in sizes}
    for c in classes.tolist():
        need = sum(q[c] for q in quotas.values())
        if need > len(per_class[c]):
            raise ValueError(f'class {c} has {len(per_class[c])} samples but the splits {dict(sizes)} need '
                             f'{need} of it')
        start = 0
        for name in sizes:
            out[name].append(per_class[c][start:start + quotas[name][c]])
            start += quotas[name][c]
    return {name: np.sort(np.concatenate(parts)).astype(np.int64) for name, parts in out.items()}
