"""The search-space table: every augmentation op det_autoaug knows, with its metadata.

This module is the single place where ops are listed. The torch kernels, the cv2 kernels, the
MMDetection transforms, the search spaces, the docs and the tests all read :data:`OPS`.

Magnitude convention (all ops): a real number ``m`` in ``OpSpec.magnitude_range`` whose
identity value is ``0`` (the op then leaves the image and the boxes unchanged). Geometric ops
take ``m >= 0`` plus a separate sign in ``{-1, +1}``. Pixel-sized magnitudes are fractions of
the image side (or of the box side), so that a level means the same on a 96 px and a 640 px
image; the TensorFlow AutoAugment-for-detection constants assume 640 px images and are
converted with that reference size.

Levels: the 0..10 AutoAugment scale (extended to 14, which the DDAS spaces use). ``level_fn``
is the AutoAugment-for-detection mapping (the one pipeline transforms and the published
detection policies use); ``ddas_level_fn`` is the DDAS classification mapping and differs only
for Posterize and Solarize, whose two published conventions run in opposite directions.

Float images are on the 0..255 scale (as in mmcv and mmdet), so thresholds and the fill value
(128) mean the same for uint8 and float inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from . import mmdet_convert as mc

MAX_LEVEL = 14.0
FILL_VALUE = 128.0
TF_REFERENCE_SIZE = 640.0


@dataclass(frozen=True)
class OpSpec:
    """Metadata of one augmentation op.

    Attributes:
        name: unique op name (the DDAS/AutoAugment name; TF detection names are ``aliases``).
        kind: ``'colour'`` (pixels only), ``'geometric'`` (one 3x3 matrix per sample moves
            pixels and boxes), ``'cutout'`` (pixels inside a sampled rectangle) or
            ``'bbox_only'`` (acts inside each selected box; boxes never move).
        magnitude_range: closed interval of valid magnitudes; ``0`` is the identity.
        unit: what the magnitude measures.
        level_fn: level (0..14) -> magnitude, AutoAugment-for-detection convention.
        ddas_level_fn: level -> magnitude, DDAS classification convention.
        signed: whether a random sign in ``{-1, +1}`` multiplies the magnitude.
        moves_boxes: whether boxes change (geometric ops only).
        bbox_only: whether the op acts only inside the boxes (each box independently with
            probability ``prob / 3``, as in the TensorFlow reference).
        grad: how the magnitude is differentiated: ``'autograd'`` (smooth op),
            ``'straight_through'`` (forward is the hard op, backward the secant slope of the op
            over a bracket around the magnitude, see :func:`det_autoaug.ops.torch_ops.secant_bracket`) or
            ``'none'`` (Identity).
        aliases: other published names of the same op (TensorFlow AutoAugment-for-detection).
        doc: one line on what the op does.
        draws: what :func:`~det_autoaug.ops.params.sample_params` draws for it, a subset of
            ``'sign'`` (signed ops), ``'center'`` (a centre per image), ``'box_index'`` (one box
            per image), ``'box_mask'`` (bbox-only ops: which boxes) and ``'box_center'`` (a
            centre per box).
        bracket: half width of the straight-through secant bracket: ``'range'`` (a fraction of
            the range), ``'unit'`` (1, one level of a rounded magnitude) or ``'pixel'`` (at least
            one pixel of edge movement).
        mmdet: magnitude -> the MMDetection transform doing the same (``None`` at the identity),
            :mod:`.mmdet_convert`; ``None`` if mmdet has no equivalent.
    """

    name: str
    kind: str
    magnitude_range: Tuple[float, float]
    unit: str
    level_fn: Callable[[float], float]
    ddas_level_fn: Callable[[float], float]
    signed: bool
    moves_boxes: bool
    bbox_only: bool
    grad: str
    aliases: Tuple[str, ...] = field(default=())
    doc: str = ''
    draws: Tuple[str, ...] = field(default=())
    bracket: str = 'range'
    mmdet: Optional[mc.Converter] = None

    def magnitude_at(self, level: float, convention: str = 'det') -> float:
        """Magnitude of this op at ``level``.

        Args:
            level: level on the 0..14 scale.
            convention: ``'det'`` (AutoAugment for detection) or ``'ddas'``.

        Returns:
            The magnitude, inside ``magnitude_range``.
        """
        check_level(level, self.name)
        if convention == 'det':
            return float(self.level_fn(level))
        if convention == 'ddas':
            return float(self.ddas_level_fn(level))
        raise ValueError(f"convention={convention!r} is not one of 'det', 'ddas'")


def check_level(level: float, op_name: str = '') -> None:
    """Raise ``ValueError`` unless ``0 <= level <= MAX_LEVEL``."""
    if not isinstance(level, (int, float)) or not 0.0 <= float(level) <= MAX_LEVEL:
        where = f' for op {op_name!r}' if op_name else ''
        raise ValueError(f'level={level!r}{where} is out of range: expected a number in [0, {MAX_LEVEL:g}]')


def _linear(scale: float) -> Callable[[float], float]:
    return lambda level: level / 10.0 * scale


def _full(level: float) -> float:
    return 1.0


def _posterize_det(level: float) -> float:
    # TF keeps int(level * 0.4) bits; keeping 0 bits blackens the image, so keep at least 1.
    return 8.0 - max(1, int(level * 0.4))


def _posterize_ddas(level: float) -> float:
    return 8.0 - max(1, 4 - int(level * 0.4))


def _solarize_det(level: float) -> float:
    # TF threshold is level * 25.6; our magnitude is 256 - threshold (0 = identity).
    return max(0.0, 256.0 - level * 25.6)


def _solarize_ddas(level: float) -> float:
    return min(256.0, level * 25.6)


def _enhance(level: float) -> float:
    # Factor level * 0.18 + 0.1 (identity factor 1), stored as factor - 1.
    return level * 0.18 + 0.1 - 1.0


def _op(name: str, kind: str, rng: Tuple[float, float], unit: str, level_fn: Callable[[float], float],
        *, ddas_level_fn: Callable[[float], float] | None = None, signed: bool = False,
        grad: str = 'autograd', aliases: Tuple[str, ...] = (), doc: str = '', draws: Tuple[str, ...] = (),
        bracket: str = 'range', mmdet: Optional[mc.Converter] = None) -> OpSpec:
    draws = ('sign',) * signed + draws + ('box_mask',) * (kind == 'bbox_only')
    return OpSpec(name=name, kind=kind, magnitude_range=rng, unit=unit, level_fn=level_fn,
                  ddas_level_fn=ddas_level_fn or level_fn, signed=signed,
                  moves_boxes=kind == 'geometric', bbox_only=kind == 'bbox_only', grad=grad,
                  aliases=aliases, doc=doc, draws=draws, bracket=bracket, mmdet=mmdet)


_STRENGTH = (0.0, 1.0)
_ROTATE = (0.0, 3.0 * MAX_LEVEL)
_SHEAR = (0.0, 0.03 * MAX_LEVEL)
_TRANSLATE_SCALE = 250.0 / TF_REFERENCE_SIZE
_TRANSLATE_BOX_SCALE = 120.0 / TF_REFERENCE_SIZE
_CUTOUT_SCALE = 200.0 / TF_REFERENCE_SIZE       # side of the square: 2 * level * 10 px at 640 px
_CUTOUT_BOX_SCALE = 100.0 / TF_REFERENCE_SIZE   # side of the square: 2 * level * 5 px at 640 px
_BBOX_CUTOUT_SCALE = 0.75                       # pad fraction of the chosen box

OPS: Tuple[OpSpec, ...] = (
    _op('Identity', 'colour', _STRENGTH, 'none', _full, grad='none', doc='returns the input',
        mmdet=mc.identity),
    _op('FlipLR', 'geometric', _STRENGTH, 'strength (any m > 0 flips)', _full, grad='straight_through',
        doc='mirror left-right; boxes follow', mmdet=mc.flag('RandomFlip', direction='horizontal')),
    _op('FlipUD', 'geometric', _STRENGTH, 'strength (any m > 0 flips)', _full, grad='straight_through',
        doc='mirror top-bottom; boxes follow', mmdet=mc.flag('RandomFlip', direction='vertical')),
    _op('AutoContrast', 'colour', _STRENGTH, 'strength (any m > 0 applies)', _full, grad='straight_through',
        doc='per-channel stretch of [min, max] to [0, 255]', mmdet=mc.flag('AutoContrast')),
    _op('Equalize', 'colour', _STRENGTH, 'strength (any m > 0 applies)', _full, grad='straight_through',
        doc='per-channel histogram equalisation', mmdet=mc.flag('Equalize')),
    _op('Invert', 'colour', _STRENGTH, 'strength (any m > 0 applies)', _full, grad='straight_through',
        doc='255 - pixel', mmdet=mc.flag('Invert')),
    _op('Blur', 'colour', _STRENGTH, 'blend weight towards the blurred image', _full,
        doc="PIL's ImageFilter.BLUR (5x5 ring kernel), blended by m"),
    _op('Smooth', 'colour', _STRENGTH, 'blend weight towards the smoothed image', _full,
        doc="PIL's ImageFilter.SMOOTH (3x3, centre 5, others 1), blended by m"),
    _op('Rotate', 'geometric', _ROTATE, 'degrees', _linear(30.0), signed=True, aliases=('Rotate_BBox',),
        doc='rotation about the image centre; boxes become the enclosing box of their rotated corners',
        mmdet=mc.geometric('Rotate', mc.same)),
    _op('ShearX', 'geometric', _SHEAR, 'shear factor', _linear(0.3), signed=True, aliases=('ShearX_BBox',),
        doc='x += m * y about the top-left corner; boxes follow',
        mmdet=mc.geometric('ShearX', mc.shear_degrees)),
    _op('ShearY', 'geometric', _SHEAR, 'shear factor', _linear(0.3), signed=True, aliases=('ShearY_BBox',),
        doc='y += m * x about the top-left corner; boxes follow',
        mmdet=mc.geometric('ShearY', mc.shear_degrees)),
    _op('TranslateX', 'geometric', (0.0, _TRANSLATE_SCALE * MAX_LEVEL / 10), 'fraction of image width',
        _linear(_TRANSLATE_SCALE), signed=True, aliases=('TranslateX_BBox',),
        doc='shift by m * width (TF: 250 px at 640 px); boxes follow',
        mmdet=mc.geometric('TranslateX', mc.same)),
    _op('TranslateY', 'geometric', (0.0, _TRANSLATE_SCALE * MAX_LEVEL / 10), 'fraction of image height',
        _linear(_TRANSLATE_SCALE), signed=True, aliases=('TranslateY_BBox',),
        doc='shift by m * height (TF: 250 px at 640 px); boxes follow',
        mmdet=mc.geometric('TranslateY', mc.same)),
    _op('Posterize', 'colour', (0.0, 7.0), 'bits removed', _posterize_det, ddas_level_fn=_posterize_ddas,
        grad='straight_through', doc='keep the 8 - round(m) high bits of each channel (at least 1)',
        bracket='unit', mmdet=mc.posterize),
    _op('Solarize', 'colour', (0.0, 256.0), '256 - threshold', _solarize_det, ddas_level_fn=_solarize_ddas,
        grad='straight_through', doc='invert pixels >= 256 - m', mmdet=mc.solarize),
    _op('SolarizeAdd', 'colour', (0.0, 11.0 * MAX_LEVEL), 'added intensity', _linear(110.0),
        doc='add m to pixels < 128, clip to 255', mmdet=mc.solarize_add),
    _op('Color', 'colour', (-0.9, 0.18 * MAX_LEVEL - 0.9), 'saturation factor - 1', _enhance,
        doc='blend with the greyscale image by factor 1 + m', mmdet=mc.enhance('Color')),
    _op('Contrast', 'colour', (-0.9, 0.18 * MAX_LEVEL - 0.9), 'contrast factor - 1', _enhance,
        doc='blend with the mean grey level by factor 1 + m', mmdet=mc.enhance('Contrast')),
    _op('Brightness', 'colour', (-0.9, 0.18 * MAX_LEVEL - 0.9), 'brightness factor - 1', _enhance,
        doc='blend with black by factor 1 + m', mmdet=mc.enhance('Brightness')),
    _op('Sharpness', 'colour', (-0.9, 0.18 * MAX_LEVEL - 0.9), 'sharpness factor - 1', _enhance,
        doc="blend with PIL's SMOOTH-filtered image (border kept) by factor 1 + m",
        mmdet=mc.enhance('Sharpness')),
    _op('Cutout', 'cutout', (0.0, _CUTOUT_SCALE * MAX_LEVEL / 10), 'square side / shorter image side',
        _linear(_CUTOUT_SCALE), grad='straight_through',
        doc='fill a square (random centre in the image) with 128 (TF: side 2 * level * 10 px at 640 px)',
        draws=('center',), bracket='pixel', mmdet=mc.cutout),
    _op('BBox_Cutout', 'cutout', (0.0, _BBOX_CUTOUT_SCALE * MAX_LEVEL / 10), 'half size / half box size',
        _linear(_BBOX_CUTOUT_SCALE), grad='straight_through',
        doc='fill a rectangle centred at a random point of one random box, half sizes m * box size / 2',
        draws=('center', 'box_index')),
    _op('Rotate_Only_BBoxes', 'bbox_only', _ROTATE, 'degrees', _linear(30.0), signed=True,
        doc='rotate the content of each selected box about its centre'),
    _op('ShearX_Only_BBoxes', 'bbox_only', _SHEAR, 'shear factor', _linear(0.3), signed=True,
        doc='shear the content of each selected box about its top-left corner'),
    _op('ShearY_Only_BBoxes', 'bbox_only', _SHEAR, 'shear factor', _linear(0.3), signed=True,
        doc='shear the content of each selected box about its top-left corner'),
    _op('TranslateX_Only_BBoxes', 'bbox_only', (0.0, _TRANSLATE_BOX_SCALE * MAX_LEVEL / 10),
        'fraction of image width', _linear(_TRANSLATE_BOX_SCALE), signed=True,
        doc='shift the content of each selected box inside it (TF: 120 px at 640 px), fill 128'),
    _op('TranslateY_Only_BBoxes', 'bbox_only', (0.0, _TRANSLATE_BOX_SCALE * MAX_LEVEL / 10),
        'fraction of image height', _linear(_TRANSLATE_BOX_SCALE), signed=True,
        doc='shift the content of each selected box inside it (TF: 120 px at 640 px), fill 128'),
    _op('Flip_Only_BBoxes', 'bbox_only', _STRENGTH, 'strength (any m > 0 flips)', _full,
        grad='straight_through', doc='mirror the content of each selected box left-right'),
    _op('Solarize_Only_BBoxes', 'bbox_only', (0.0, 256.0), '256 - threshold', _solarize_det,
        ddas_level_fn=_solarize_ddas, grad='straight_through', doc='solarize inside each selected box'),
    _op('Equalize_Only_BBoxes', 'bbox_only', _STRENGTH, 'strength (any m > 0 applies)', _full,
        grad='straight_through', doc='equalise each selected box with its own histogram'),
    _op('Cutout_Only_BBoxes', 'bbox_only', (0.0, _CUTOUT_BOX_SCALE * MAX_LEVEL / 10),
        'square side / shorter image side', _linear(_CUTOUT_BOX_SCALE), grad='straight_through',
        doc='fill a square at a random point of each selected box with 128, clipped to the box',
        draws=('box_center',), bracket='pixel'),
)

OPS_BY_NAME: Dict[str, OpSpec] = {op.name: op for op in OPS}
_ALIASES: Dict[str, str] = {alias: op.name for op in OPS for alias in op.aliases}


def get_op(name: str) -> OpSpec:
    """Look up an op by its name or a TensorFlow alias (``'Rotate_BBox'`` -> ``Rotate``).

    Raises:
        KeyError: if the name is unknown; the message lists the known names.
    """
    spec = OPS_BY_NAME.get(_ALIASES.get(name, name))
    if spec is None:
        raise KeyError(f'unknown op {name!r}; expected one of {sorted(OPS_BY_NAME)} '
                       f'or a TF alias in {sorted(_ALIASES)}')
    return spec


def check_magnitude(spec: OpSpec, magnitude: float) -> None:
    """Raise ``ValueError`` unless ``magnitude`` lies in ``spec.magnitude_range``."""
    lo, hi = spec.magnitude_range
    if not lo - 1e-9 <= float(magnitude) <= hi + 1e-9:
        raise ValueError(f'magnitude={magnitude!r} for op {spec.name!r} is out of range: '
                         f'expected a value in [{lo:g}, {hi:g}] ({spec.unit})')


def available_ops() -> List[dict]:
    """Every op with its metadata, in table order.

    Returns:
        One dict per op: ``name``, ``kind``, ``magnitude_range``, ``unit``, ``signed``,
        ``moves_boxes``, ``bbox_only``, ``grad`` (how the magnitude is differentiated),
        ``aliases``, ``doc`` and ``magnitude_at_level_10`` (detection convention).
    """
    return [dict(name=op.name, kind=op.kind, magnitude_range=op.magnitude_range, unit=op.unit,
                 signed=op.signed, moves_boxes=op.moves_boxes, bbox_only=op.bbox_only, grad=op.grad,
                 aliases=op.aliases, doc=op.doc, magnitude_at_level_10=op.magnitude_at(10))
            for op in OPS]
