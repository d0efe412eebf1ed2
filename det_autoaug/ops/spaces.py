"""Named search spaces built from the op table.

A search space is an ordered tuple of :class:`SpaceEntry` (an op at a fixed magnitude). DDAS
learns one probability per entry; a policy is an ordered pair of entries.

- ``ddas_cifar`` (52 entries): the DDAS CIFAR/SVHN space, 8 ops without magnitude plus 11 ops at
  levels 0, 2, 10 and 14 (DDAS level convention).
- ``ddas_imagenet`` (32 entries): the same 8 plus the 11 and Cutout at levels 7 and 14.
- ``autoaug_det`` (67 entries): the 25 ops of AutoAugment for detection at levels 2, 6 and 10
  (detection level convention); its 4 magnitude-free ops enter once.
- ``det_default`` (36 entries), the recommended detection space: the whole-image colour ops and
  the box-following geometric ops that the published detection policies use most, plus Cutout,
  BBox_Cutout and three bbox-only ops, at levels 3 and 7; Identity and FlipLR as magnitude-free
  entries. FlipUD and Invert are left out (upside-down or negative scenes are rarely in a
  detector's test distribution), as are Blur/Smooth (near-identities at detection resolutions),
  and level 10 geometric magnitudes (they drop many boxes on small images). Two levels keep N
  small, which the uniform-proposal DDAS estimator needs to see every pair often enough.
- ``det_planted`` (5 entries): the detection planted-harm space of ``tools/planted_harm_det.py``
  (docs/results.md): FlipLR and FlipUD (a mirrored or upside-down digit is another glyph, or
  another digit), Rotate@10 (30 degrees), TranslateX@3 and Brightness@7; which of them hurt is
  measured there, not assumed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Sequence, Tuple

from .table import OPS, get_op

if TYPE_CHECKING:
    from ..policy.step import ChainStep

_NO_MAGNITUDE = tuple(op.name for op in OPS[:8])  # Identity .. Smooth, in table order
_DDAS_MAGNITUDE = ('Rotate', 'Posterize', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Solarize',
                   'Color', 'Contrast', 'Brightness', 'Sharpness')
_AUTOAUG_DET = tuple(op.name for op in OPS if op.name not in _NO_MAGNITUDE or op.name in
                     ('AutoContrast', 'Equalize'))
_DET_DEFAULT_FIXED = ('Identity', 'FlipLR', 'AutoContrast', 'Equalize')
_DET_DEFAULT_LEVELLED = ('Color', 'Contrast', 'Brightness', 'Sharpness', 'Solarize', 'Posterize', 'Rotate',
                         'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Cutout', 'BBox_Cutout',
                         'TranslateY_Only_BBoxes', 'Rotate_Only_BBoxes', 'Cutout_Only_BBoxes')


@dataclass(frozen=True)
class SpaceEntry:
    """One entry of a search space: ``op`` at ``magnitude`` (reached from ``level``, if any)."""

    op: str
    magnitude: float
    level: float | None = None

    @property
    def label(self) -> str:
        return self.op if self.level is None else f'{self.op}@{self.level:g}'

    def step(self, prob: float = 1.0) -> ChainStep:
        """This entry as the step a chain applier takes, run with probability ``prob``."""
        # the step type belongs to the policy layer, which imports this module: import it late
        from ..policy.step import ChainStep
        return ChainStep(self.op, self.magnitude, prob)


def make_space(fixed: Sequence[str], levelled: Sequence[str], levels: Sequence[float],
               convention: str = 'det') -> Tuple[SpaceEntry, ...]:
    """Build a space: ``fixed`` ops at full strength, then each ``levelled`` op at each level.

    Args:
        fixed: ops entered once at magnitude 1 (magnitude-free ops).
        levelled: ops entered once per level.
        levels: levels on the 0..14 scale.
        convention: ``'det'`` or ``'ddas'`` level mapping (see :mod:`det_autoaug.ops.table`).
    """
    entries = [SpaceEntry(get_op(name).name, 1.0) for name in fixed]
    for name in levelled:
        spec = get_op(name)
        # rounded so that 0.36000000000000004 reads 0.36 in policy files and tables
        magnitudes = [round(spec.magnitude_at(level, convention), 6) for level in levels]
        if len(set(magnitudes)) == 1:  # a magnitude-free op: enter it once
            entries.append(SpaceEntry(spec.name, magnitudes[0]))
        else:  # repeated magnitudes stay, as in the DDAS spaces (Posterize@0 == Posterize@2)
            entries += [SpaceEntry(spec.name, m, float(lvl)) for m, lvl in zip(magnitudes, levels)]
    return tuple(entries)


SPACES: Dict[str, Tuple[SpaceEntry, ...]] = {
    'ddas_cifar': make_space(_NO_MAGNITUDE, _DDAS_MAGNITUDE, (0, 2, 10, 14), 'ddas'),
    'ddas_imagenet': make_space(_NO_MAGNITUDE, _DDAS_MAGNITUDE + ('Cutout',), (7, 14), 'ddas'),
    'autoaug_det': make_space((), _AUTOAUG_DET, (2, 6, 10), 'det'),
    'det_default': make_space(_DET_DEFAULT_FIXED, _DET_DEFAULT_LEVELLED, (3, 7), 'det'),
    'det_planted': make_space(('FlipLR', 'FlipUD'), (), ()) + tuple(
        SpaceEntry(op, round(get_op(op).magnitude_at(level, 'det'), 6), float(level))
        for op, level in (('Rotate', 10), ('TranslateX', 3), ('Brightness', 7))),
}
DEFAULT_DET_SPACE = 'det_default'


def get_space(name: str) -> Tuple[SpaceEntry, ...]:
    """A named search space; raises ``KeyError`` naming the known spaces."""
    if name not in SPACES:
        raise KeyError(f'unknown search space {name!r}; expected one of {sorted(SPACES)}')
    return SPACES[name]
