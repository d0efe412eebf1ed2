"""Data-pipeline transforms of the classification path (mmengine ``TRANSFORMS``).

Results dicts carry ``img`` (``(H, W, 3)`` uint8 RGB numpy) and ``gt_label`` (int) until
``PackClsInputs`` turns them into ``dict(inputs=(3, H, W) uint8 tensor, data_samples=
BaseDataElement(gt_label=0-d long tensor))``, which mmengine's ``pseudo_collate`` batches into
lists (the model's ``ImgDataPreprocessor`` stacks and normalises them).

Names matter: ``PolicySearchHook`` builds the validation pipeline by dropping transforms whose
type starts with ``Random`` or ``DA``, so every random transform here is called ``Random...``
and the policy transforms ``DA...``; deterministic ones (``ResizeCls``, ``CenterCropCls``,
``PackClsInputs``) are kept.

Policies are applied per image on the CPU pipeline (not in the data preprocessor): the search
hook calls the data preprocessor on its augmented copies too, so a policy there would augment
them twice, and per-image application keeps the training batch exactly as the pipeline made it.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS
from mmengine.structures import BaseDataElement

from ..policy.adapters import process_seeded_generator, runner_epoch

TORCHVISION_POLICIES = ('randaugment', 'trivialaugment', 'autoaugment-cifar', 'autoaugment-imagenet',
                        'autoaugment-svhn')


def _size2(size: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    """``(h, w)`` from an int or a pair; ValueError naming ``name`` otherwise."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f'{name}={size!r}: expected a positive int or a pair (h, w) of them')
    return int(pair[0]), int(pair[1])


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """Reads ``img``, ``gt_label``; returns ``dict(inputs, data_samples)``.

    ``inputs`` is the ``(3, H, W)`` uint8 tensor, ``data_samples`` a ``BaseDataElement`` with
    ``gt_label`` (0-d long tensor) and metainfo ``sample_idx`` when the results have one.
    """

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        meta = {'sample_idx': results['sample_idx']} if 'sample_idx' in results else {}
        sample = BaseDataElement(metainfo=meta, gt_label=torch.tensor(int(results['gt_label']), dtype=torch.long))
        return dict(inputs=inputs, data_samples=sample)


@TRANSFORMS.register_module()
class RandomCropPadCls(BaseTransform):
    """Pad by ``padding`` pixels on every side, then crop the original size at a random place.

    The CIFAR standard (padding 4). Reads and modifies ``img``.

    Args:
        padding: pixels added on each side (0: identity).
        pad_mode: ``'constant'`` (``fill``) or ``'reflect'``.
        fill: grey level of constant padding.
    """

    def __init__(self, padding: int = 4, pad_mode: str = 'constant', fill: int = 0) -> None:
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f'RandomCropPadCls padding={padding!r}: expected an int >= 0')
        if pad_mode not in ('constant', 'reflect'):
            raise ValueError(f"RandomCropPadCls pad_mode={pad_mode!r}: expected 'constant' or 'reflect'")
        self.padding, self.pad_mode, self.fill = padding, pad_mode, int(fill)

    def transform(self, results: Dict) -> Dict:
        img, p = results['img'], self.padding
        if p == 0:
            return results
        h, w = img.shape[:2]
        pad = ((p, p), (p, p)) + ((0, 0),) * (img.ndim - 2)
        kwargs = dict(constant_values=self.fill) if self.pad_mode == 'constant' else {}
        padded = np.pad(img, pad, mode=self.pad_mode, **kwargs)
        y, x = np.random.randint(0, 2 * p + 1, size=2)
        results['img'] = np.ascontiguousarray(padded[y:y + h, x:x + w])
        return results


@TRANSFORMS.register_module()
class RandomFlipCls(BaseTransform):
    """Flip ``img`` left-right (``'horizontal'``) or up-down (``'vertical'``) with probability ``prob``."""

    def __init__(self, prob: float = 0.5, direction: str = 'horizontal') -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'RandomFlipCls prob={prob!r}: expected a probability in [0, 1]')
        if direction not in ('horizontal', 'vertical'):
            raise ValueError(f"RandomFlipCls direction={direction!r}: expected 'horizontal' or 'vertical'")
        self.prob, self.axis = float(prob), 1 if direction == 'horizontal' else 0

    def transform(self, results: Dict) -> Dict:
        if np.random.rand() < self.prob:
            results['img'] = np.ascontiguousarray(np.flip(results['img'], axis=self.axis))
        return results


@TRANSFORMS.register_module()
class ResizeCls(BaseTransform):
    """Resize ``img``: an int resizes the shorter side to it (aspect kept), a pair to ``(h, w)``."""

    def __init__(self, size: Union[int, Sequence[int]]) -> None:
        self.short = size if isinstance(size, int) else None
        _size2(size, 'ResizeCls size')
        self.size = size

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        h, w = img.shape[:2]
        if self.short is not None:
            scale = self.short / min(h, w)
            out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
        else:
            out_h, out_w = self.size
        if (out_h, out_w) != (h, w):
            results['img'] = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        return results


@TRANSFORMS.register_module()
class CenterCropCls(BaseTransform):
    """Crop the central ``size`` (int or ``(h, w)``) of ``img``; zero-pads images that are smaller."""

    def __init__(self, size: Union[int, Sequence[int]]) -> None:
        self.size = _size2(size, 'CenterCropCls size')

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        th, tw = self.size
        h, w = img.shape[:2]
        if h < th or w < tw:
            ph, pw = max(th - h, 0), max(tw - w, 0)
            img = np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)) + ((0, 0),) * (img.ndim - 2))
            h, w = img.shape[:2]
        y, x = (h - th) // 2, (w - tw) // 2
        results['img'] = np.ascontiguousarray(img[y:y + th, x:x + tw])
        return results


@TRANSFORMS.register_module()
class RandomResizedCropCls(BaseTransform):
    """Inception crop: a random area fraction in ``scale`` and aspect ratio in ``ratio``, resized to ``size``."""

    def __init__(self, size: Union[int, Sequence[int]], scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        self.size = _size2(size, 'RandomResizedCropCls size')
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f'RandomResizedCropCls scale={scale!r}: expected 0 < lo <= hi <= 1')
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f'RandomResizedCropCls ratio={ratio!r}: expected 0 < lo <= hi')
        self.scale, self.log_ratio = tuple(scale), (math.log(ratio[0]), math.log(ratio[1]))

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        h, w = img.shape[:2]
        crop = (0, 0, h, w)
        for _ in range(10):  # torchvision's rule: ten tries, then the whole image
            area = h * w * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(*self.log_ratio))
            cw, ch = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                crop = (np.random.randint(0, h - ch + 1), np.random.randint(0, w - cw + 1), ch, cw)
                break
        y, x, ch, cw = crop
        results['img'] = cv2.resize(np.ascontiguousarray(img[y:y + ch, x:x + cw]), self.size[::-1],
                                    interpolation=cv2.INTER_LINEAR)
        return results


class _SeededTransform(BaseTransform):
    """A transform with a torch generator re-seeded whenever torch's process seed changes.

    In a dataloader worker ``torch.initial_seed()`` is the worker's seed (drawn from the
    runner-seeded main generator each epoch), in the main process the runner's seed, so a
    seeded run is reproducible and workers never share a stream
    (:func:`det_autoaug.policy.adapters.process_seeded_generator`).
    """

    _seeded: Optional[Tuple[int, torch.Generator]] = None

    def generator(self) -> torch.Generator:
        self._seeded = process_seeded_generator(self._seeded)
        return self._seeded[1]


@TRANSFORMS.register_module()
class DAClsPolicy(_SeededTransform):
    """Augment ``img`` with a det_autoaug policy (a searched policy file), per image.

    Per image a chain is drawn with ``policy.sample_chain`` (for a DDAS file: with probability
    ``apply_prob``, ``ops_per_policy`` entries drawn from ``probs``) and applied with the batched
    torch kernels on a ``(1, 3, H, W)`` uint8 tensor. Reads and modifies ``img``.

    Args:
        policy: a policy-file path or a published policy name
            (:func:`det_autoaug.policy.sampling.build_policy`).
        schedule: use the file's trajectory as a per-epoch schedule (the DDAS schedule): the
            current epoch and ``max_epochs`` are the runner's
            (:func:`det_autoaug.policy.adapters.runner_epoch`). Needs
            ``num_workers=0`` or non-persistent workers (forked after each epoch starts).
            Default: the final distribution for every epoch.
    """

    def __init__(self, policy: str, schedule: bool = False) -> None:
        from ..policy.sampling import build_policy
        self.policy_spec = policy
        self.policy = build_policy(policy)
        self.schedule = bool(schedule)
        if self.schedule and not self.policy.uses_epoch:
            raise ValueError(f'DAClsPolicy(policy={policy!r}, schedule=True): the policy has no trajectory '
                             'to schedule; use schedule=False')

    def transform(self, results: Dict) -> Dict:
        from ..policy.apply import apply_chains_torch
        epoch, max_epochs = runner_epoch() if self.schedule else (None, None)
        generator = self.generator()
        chain = self.policy.sample_chain(generator, epoch=epoch, train_epochs=max_epochs)
        if not chain:
            return results
        img = results['img']
        grey = img.ndim == 2
        tensor = torch.from_numpy(np.ascontiguousarray(img[..., None] if grey else img)).permute(2, 0, 1)[None]
        images, _, _ = apply_chains_torch(tensor, None, [chain], generator)
        out = images[0].permute(1, 2, 0).numpy()
        results['img'] = np.ascontiguousarray(out[..., 0] if grey else out)
        return results

    def __repr__(self) -> str:
        return f'DAClsPolicy(policy={self.policy!r}, schedule={self.schedule})'


@TRANSFORMS.register_module()
class DAClsTorchvisionAug(BaseTransform):
    """A torchvision v2 baseline augmentation on ``img`` (per image, torch's global RNG).

    Args:
        policy: ``'randaugment'`` (RandAugment, N=2, M=9), ``'trivialaugment'``
            (TrivialAugmentWide), ``'autoaugment-cifar'`` / ``'autoaugment-imagenet'`` /
            ``'autoaugment-svhn'`` (AutoAugment with that published policy).
        fill: fill value of geometric ops (0 = black, torchvision's default).
    """

    def __init__(self, policy: str, fill: int = 0) -> None:
        from torchvision.transforms import v2
        if policy not in TORCHVISION_POLICIES:
            raise ValueError(f'DAClsTorchvisionAug policy={policy!r}: expected one of {TORCHVISION_POLICIES}')
        self.policy_name = policy
        if policy == 'randaugment':
            self.op = v2.RandAugment(fill=fill)
        elif policy == 'trivialaugment':
            self.op = v2.TrivialAugmentWide(fill=fill)
        else:
            which = {'autoaugment-cifar': v2.AutoAugmentPolicy.CIFAR10,
                     'autoaugment-imagenet': v2.AutoAugmentPolicy.IMAGENET,
                     'autoaugment-svhn': v2.AutoAugmentPolicy.SVHN}[policy]
            self.op = v2.AutoAugment(which, fill=fill)

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        grey = img.ndim == 2
        tensor = torch.from_numpy(np.ascontiguousarray(img[..., None] if grey else img)).permute(2, 0, 1)
        out = self.op(tensor).permute(1, 2, 0).numpy()
        results['img'] = np.ascontiguousarray(out[..., 0] if grey else out)
        return results

    def __repr__(self) -> str:
        return f'DAClsTorchvisionAug({self.policy_name!r})'
