"""Converters from an op's magnitude to the MMDetection 3.x transform doing the same
(``OpSpec.mmdet``); :mod:`det_autoaug.policy.mmdet_export` writes them into pipeline configs.

Plain dicts: no OpenMMLab module is imported. mmdet's conventions: Shear in degrees (``atan`` of
our factor), Translate a fraction of the side, Color/Contrast/Brightness/Sharpness a factor
(``1 + m``), Solarize a threshold, Posterize bits kept. A converter returns ``None`` where the
op is the identity at that magnitude.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

#: magnitude -> the mmdet transform dict (without ``prob``), or ``None`` for the identity.
Converter = Callable[[float], Optional[dict]]


def identity(m: float) -> None:
    return None


def same(m: float) -> float:
    return m


def shear_degrees(m: float) -> float:
    return math.degrees(math.atan(m))


def enhance(name: str) -> Converter:
    def convert(m: float) -> Optional[dict]:
        factor = 1.0 + m
        if not 0.0 <= factor <= 2.0:
            raise ValueError(f'{name} factor {factor:.4g} (magnitude {m:.4g}) is outside mmdet {name}\'s '
                             'range [0, 2]')
        return None if m == 0 else {'type': name, 'min_mag': factor, 'max_mag': factor}
    return convert


def geometric(name: str, to_mmdet: Callable[[float], float]) -> Converter:
    def convert(m: float) -> Optional[dict]:
        value = float(to_mmdet(m))
        return None if m == 0 else {'type': name, 'min_mag': value, 'max_mag': value, 'reversal_prob': 0.5,
                                    'img_border_value': 128}
    return convert


def flag(name: str, **kwargs: Any) -> Converter:
    return lambda m: {'type': name, **kwargs} if m > 0 else None


def solarize_add(m: float) -> Optional[dict]:
    if m > 110.0:
        raise ValueError(f'SolarizeAdd magnitude {m:.4g} is outside mmdet SolarizeAdd\'s range [0, 110]')
    return None if m == 0 else {'type': 'SolarizeAdd', 'min_mag': float(m), 'max_mag': float(m)}


def posterize(m: float) -> Optional[dict]:
    bits = float(max(1, 8 - int(round(m))))
    return None if bits == 8 else {'type': 'Posterize', 'min_mag': bits, 'max_mag': bits}


def solarize(m: float) -> Optional[dict]:
    return None if m == 0 else {'type': 'Solarize', 'min_mag': 256.0 - m, 'max_mag': 256.0 - m}


def cutout(m: float) -> Optional[dict]:
    return None if m == 0 else {'type': 'CutOut', 'n_holes': 1, 'cutout_ratio': (float(m), float(m)),
                                'fill_in': (128, 128, 128)}
