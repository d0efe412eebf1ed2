"""Fashion-MNIST from its original IDX files (Xiao, Rasul, Vollgraf 2017; MIT licence).

The files are looked for in ``root``, else ``$FASHION_MNIST_DIR``, else
``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package:
``apt-get install dataset-fashion-mnist``). Expected names: ``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``
(uncompressed files without ``.gz`` are accepted too).
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

DEFAULT_ROOT = '/usr/share/datasets/fashion-mnist'
FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
                         'Sneaker', 'Bag', 'Ankle boot')
_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
          'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
_IMAGES_MAGIC = 2051   # 0x00000803: unsigned byte, 3 dimensions
_LABELS_MAGIC = 2049   # 0x00000801: unsigned byte, 1 dimension


def read_idx(path: str | os.PathLike, expected_magic: int) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes.

    Args:
        path: the file.
        expected_magic: 2051 for images (3 dimensions), 2049 for labels (1 dimension).

    Returns:
        uint8 array of the shape stored in the header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == '.gz' else open
    with opener(path, 'rb') as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f'{path} is too short to be an IDX file ({len(data)} bytes)')
    magic = int.from_bytes(data[:4], 'big')
    if magic != expected_magic:
        raise ValueError(f'{path}: IDX magic number {magic} (0x{magic:08x}), expected {expected_magic} '
                         f'(0x{expected_magic:08x}); the file is not a Fashion-MNIST '
                         f'{"image" if expected_magic == _IMAGES_MAGIC else "label"} file or is corrupt')
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    offset = 4 + 4 * ndim
    count = int(np.prod(shape))
    if len(data) - offset != count:
        raise ValueError(f'{path}: header says shape {shape} ({count} bytes) but the file holds '
                         f'{len(data) - offset} bytes of data')
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy()


def _find(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + '.gz', stem):
        if (folder / name).is_file():
            return folder / name
    return None


def load_fashion_mnist(root: str | os.PathLike | None = None, split: str = 'train') -> Tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split.

    Args:
        root: folder with the IDX files; default ``$FASHION_MNIST_DIR``, else
            ``/usr/share/datasets/fashion-mnist``.
        split: ``'train'`` (60,000 images) or ``'test'`` (10,000 images).

    Returns:
        ``(images, labels)``.

    Shape:
        images ``(N, 28, 28)`` uint8; labels ``(N,)`` int64 in 0..9 (names in
        ``FASHION_MNIST_CLASSES``).
    """
    if split not in _FILES:
        raise ValueError(f'unknown Fashion-MNIST split {split!r}: expected one of {tuple(_FILES)}')
    folder = Path(root if root is not None else os.environ.get('FASHION_MNIST_DIR') or DEFAULT_ROOT)
    stems = _FILES[split]
    paths = [_find(folder, stem) for stem in stems]
    if any(p is None for p in paths):
        missing = [s + '.gz' for s, p in zip(stems, paths) if p is None]
        raise FileNotFoundError(
            f'Fashion-MNIST {split} files not found in {folder}: missing {missing}. Expected the '
            f'original IDX files {[s + ".gz" for s in stems]} there. Get them with '
            '`apt-get install dataset-fashion-mnist` (installs /usr/share/datasets/fashion-mnist), or '
            'download them from https://github.com/zalandoresearch/fashion-mnist and pass root= or set '
            'FASHION_MNIST_DIR.')
    images = read_idx(paths[0], _IMAGES_MAGIC)
    labels = read_idx(paths[1], _LABELS_MAGIC).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.shape[0] != labels.shape[0]:
        raise ValueError(f'{paths[0]} / {paths[1]}: expected (N, 28, 28) images and N labels, got '
                         f'{images.shape} and {labels.shape}')
    if labels.size and labels.max() > 9:
        raise ValueError(f'{paths[1]}: labels must be in 0..9, found {int(labels.max())}')
    return images, labels
