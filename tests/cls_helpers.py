"""Tiny Fashion-MNIST files in the real IDX format for the classification tests."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    """Write ``array`` as a gzipped IDX file (big-endian magic and dimensions, then uint8 data)."""
    header = magic.to_bytes(4, 'big') + b''.join(int(d).to_bytes(4, 'big') for d in array.shape)
    with gzip.open(path, 'wb') as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fashion_root(root: Path, n_train: int = 80, n_test: int = 40) -> Path:
    """IDX files whose image intensity encodes the class, so a tiny model can learn them."""
    rng = np.random.default_rng(0)
    for prefix, n in (('train', n_train), ('t10k', n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28)) + labels[:, None, None] * 20
        write_idx(root / f'{prefix}-images-idx3-ubyte.gz', 2051, images)
        write_idx(root / f'{prefix}-labels-idx1-ubyte.gz', 2049, labels)
    return root
