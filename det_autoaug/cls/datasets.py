"""Classification datasets as mmengine ``BaseDataset`` subclasses (registered in ``DATASETS``).

Each yields results dicts ``{'img': (H, W, 3) uint8 RGB, 'gt_label': int, 'sample_idx': int}``
for a ``PackClsInputs``-terminated pipeline. File formats are read by
:mod:`det_autoaug.data.cls_formats` and :mod:`det_autoaug.data.fashion_mnist`.

``subset`` takes a stratified subset of the split (``n // C`` images per class, remainder over
random classes; :func:`det_autoaug.data.cls_formats.stratified_split`, seeded by ``subset_seed``).
That is the DDAS search set: the official runs use 2,000 training + 2,000 validation images
split off the training set, and ``PolicySearchHook`` holds out its ``val_fraction`` of whatever the
training dataset is, so the search dataset is a subset of size 4,000 with ``val_fraction=0.5``.

Arrays stay on the dataset object (not in mmengine's serialised data list, which holds only
indices and labels), so a 60,000-image split costs its pixels once, and ``get_subset`` (used
by the hook) works as for any BaseDataset.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple, Union

import cv2
import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS

PathLike = Union[str, 'os.PathLike[str]']


class _ClsDataset(BaseDataset):
    """Shared logic: load (images or paths, labels, classes), take the stratified subset."""

    def __init__(self, split: str = 'train', subset: Optional[int] = None, subset_seed: int = 0,
                 data_root: Optional[PathLike] = None, **kwargs: Any) -> None:
        if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
            raise ValueError(f'{type(self).__name__} subset={subset!r}: expected None or a positive int '
                             '(number of images, stratified over the classes)')
        self.split = split
        self.subset = subset
        self.subset_seed = int(subset_seed)
        self._source_root = None if data_root is None else os.fspath(data_root)
        super().__init__(data_root='' if data_root is None else os.fspath(data_root), **kwargs)

    def _load(self) -> Tuple[Any, np.ndarray, Tuple[str, ...]]:
        """``(images array or list of paths, labels (N,) int64, class names)``."""
        raise NotImplementedError

    def load_data_list(self) -> List[dict]:
        from ..data.cls_formats import stratified_split
        items, labels, classes = self._load()
        labels = np.asarray(labels, dtype=np.int64)
        if self.subset is not None:
            if self.subset > len(labels):
                raise ValueError(f'{type(self).__name__} subset={self.subset} exceeds the {len(labels)} images '
                                 f'of split {self.split!r}')
            keep = stratified_split(labels, {'subset': int(self.subset)}, seed=self.subset_seed)['subset']
            items = items[keep] if isinstance(items, np.ndarray) else [items[i] for i in keep]
            labels = labels[keep]
        self._items = items
        self._metainfo['classes'] = tuple(classes)
        return [{'item_index': i, 'gt_label': int(label)} for i, label in enumerate(labels.tolist())]

    def _image(self, item: Any) -> np.ndarray:
        return item

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        info['img'] = self._image(self._items[info['item_index']])
        return info

    def get_labels(self) -> np.ndarray:
        """``(N,)`` int64 labels in dataset order (no image is decoded)."""
        return np.asarray([BaseDataset.get_data_info(self, i)['gt_label'] for i in range(len(self))],
                          dtype=np.int64)


@DATASETS.register_module()
class DAFashionMNIST(_ClsDataset):
    """Fashion-MNIST (grey 28x28, 10 classes) as 3-channel images.

    Args:
        split: ``'train'`` (60,000) or ``'test'`` (10,000).
        data_root: folder of the IDX files; default ``$FASHION_MNIST_DIR`` or
            ``/usr/share/datasets/fashion-mnist``.
        subset: stratified subset size, or ``None`` for the whole split.
        subset_seed: seed of the subset.
        pad_to: zero-pad the 28x28 images to this square size (e.g. 32, the CIFAR size); ``None``: 28.
        **kwargs: ``BaseDataset`` arguments (``pipeline``, ``lazy_init``, ``test_mode``, ...).
    """

    def __init__(self, split: str = 'train', data_root: Optional[PathLike] = None, subset: Optional[int] = None,
                 subset_seed: int = 0, pad_to: Optional[int] = None, **kwargs: Any) -> None:
        if pad_to is not None and (not isinstance(pad_to, int) or pad_to < 28):
            raise ValueError(f'DAFashionMNIST pad_to={pad_to!r}: expected None or an int >= 28')
        self.pad_to = pad_to
        super().__init__(split=split, subset=subset, subset_seed=subset_seed, data_root=data_root, **kwargs)

    def _load(self):
        from ..data.fashion_mnist import load_fashion_mnist
        try:
            from ..data.fashion_mnist import FASHION_MNIST_CLASSES as classes
        except ImportError:
            classes = tuple(str(i) for i in range(10))
        images, labels = load_fashion_mnist(self._source_root, self.split)
        return images, labels, tuple(classes)

    def _image(self, item: np.ndarray) -> np.ndarray:
        if self.pad_to is not None and self.pad_to > item.shape[0]:
            total = self.pad_to - item.shape[0]
            item = np.pad(item, ((total // 2, total - total // 2),) * 2)
        return np.repeat(item[..., None], 3, axis=2)


@DATASETS.register_module()
class DACIFAR(_ClsDataset):
    """CIFAR-10 / CIFAR-100 (python pickle layout), 32x32 RGB.

    Args:
        data_root: folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` (or that folder).
        variant: ``'cifar10'`` or ``'cifar100'``.
        split: ``'train'`` or ``'test'``.
        subset: stratified subset size, or ``None``.
        subset_seed: seed of the subset.
        **kwargs: ``BaseDataset`` arguments.
    """

    def __init__(self, data_root: PathLike, variant: str = 'cifar10', split: str = 'train',
                 subset: Optional[int] = None, subset_seed: int = 0, **kwargs: Any) -> None:
        self.variant = variant
        super().__init__(split=split, subset=subset, subset_seed=subset_seed, data_root=data_root, **kwargs)

    def _load(self):
        from ..data.cls_formats import load_cifar
        return load_cifar(self._source_root, self.variant, self.split)


@DATASETS.register_module()
class DASVHN(_ClsDataset):
    """SVHN cropped digits (format 2, ``{split}_32x32.mat``), 32x32 RGB, digit 0 labelled 0.

    Args:
        data_root: folder holding the ``.mat`` files.
        split: ``'train'``, ``'test'`` or ``'extra'``.
        subset: stratified subset size, or ``None``.
        subset_seed: seed of the subset.
        **kwargs: ``BaseDataset`` arguments.
    """

    def __init__(self, data_root: PathLike, split: str = 'train', subset: Optional[int] = None,
                 subset_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(split=split, subset=subset, subset_seed=subset_seed, data_root=data_root, **kwargs)

    def _load(self):
        from ..data.cls_formats import load_svhn
        return load_svhn(self._source_root, self.split)


@DATASETS.register_module()
class DAImageFolder(_ClsDataset):
    """ImageNet-style class folders ``data_root/<split>/<class>/<image>``, decoded to RGB on access.

    Args:
        data_root: folder holding ``train/`` and ``val/``.
        split: ``'train'`` or ``'val'``.
        num_classes: keep only this many classes, drawn with ``class_seed`` (the same draw for
            every split, so labels agree) and relabelled ``0..num_classes-1`` in sorted order;
            ``None`` keeps all. The DDAS ImageNet proxy: 120 classes.
        class_seed: seed of the class draw.
        subset: stratified subset size (after the class selection), or ``None``. The DDAS proxy
            search set: ``120 * (50 + 20) = 8400``.
        subset_seed: seed of the subset.
        **kwargs: ``BaseDataset`` arguments.
    """

    def __init__(self, data_root: PathLike, split: str = 'train', num_classes: Optional[int] = None,
                 class_seed: int = 0, subset: Optional[int] = None, subset_seed: int = 0, **kwargs: Any) -> None:
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f'DAImageFolder num_classes={num_classes!r}: expected None or a positive int')
        self.num_classes, self.class_seed = num_classes, int(class_seed)
        super().__init__(split=split, subset=subset, subset_seed=subset_seed, data_root=data_root, **kwargs)

    def _load(self):
        from ..data.cls_formats import load_imagenet_folder
        paths, labels, classes = load_imagenet_folder(self._source_root, self.split)
        if self.num_classes is not None:
            if self.num_classes > len(classes):
                raise ValueError(f'DAImageFolder num_classes={self.num_classes} exceeds the {len(classes)} '
                                 f'classes under {self._source_root}/{self.split}')
            rng = np.random.Generator(np.random.PCG64(self.class_seed))
            chosen = np.sort(rng.choice(len(classes), size=self.num_classes, replace=False))
            relabel = {int(c): i for i, c in enumerate(chosen)}
            keep = [i for i, label in enumerate(labels.tolist()) if label in relabel]
            paths = [paths[i] for i in keep]
            labels = np.asarray([relabel[int(labels[i])] for i in keep], dtype=np.int64)
            classes = tuple(classes[c] for c in chosen)
        return list(paths), labels, classes

    def _image(self, item: str) -> np.ndarray:
        img = cv2.imread(item, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f'DAImageFolder: cannot decode image {item}')
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
