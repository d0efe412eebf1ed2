"""Random parameters of the ops, sampled apart from applying them.

Every random choice an op makes (the sign of a signed magnitude, where a cutout goes, which
boxes a bbox-only op touches) is drawn here through one ``torch.Generator``, so a draw can be
replayed on a second copy of the batch, on one sample (:meth:`OpParams.select`) or by the cv2
kernels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

from .table import OPS, OpSpec, get_op

#: Ops that read ``OpParams.center`` (a centre per image), from ``OpSpec.draws``.
CENTER_OPS = tuple(op.name for op in OPS if 'center' in op.draws)
#: Ops that read ``OpParams.box_center`` (a centre per box), from ``OpSpec.draws``.
BOX_CENTER_OPS = tuple(op.name for op in OPS if 'box_center' in op.draws)


@dataclass
class OpParams:
    """Sampled parameters of one op for a batch of ``B`` images.

    Fields an op does not use are empty (``center`` ``(0, 2)``, ``box_index`` ``(0,)``,
    ``box_mask`` and ``box_center`` ``[]``); ``sign`` always has one entry per image, so it
    gives the batch size.

    Attributes:
        sign: ``(B,)`` float in ``{-1, +1}``; ``+1`` for unsigned ops.
        center: ``(B, 2)`` in ``[0, 1]^2``: the cutout centre ``(x, y)`` as a fraction of the
            image (Cutout) or of the chosen box (BBox_Cutout).
        box_index: ``(B,)`` long: the box BBox_Cutout uses, ``-1`` when the image has none.
        box_mask: ``B`` tensors ``(N_i,)`` bool: the boxes a bbox-only op acts on.
        box_center: ``B`` tensors ``(N_i, 2)`` in ``[0, 1]^2``: the cutout centre in each box
            (Cutout_Only_BBoxes), as a fraction of the box.
    """

    sign: Tensor
    center: Tensor
    box_index: Tensor
    box_mask: List[Tensor] = field(default_factory=list)
    box_center: List[Tensor] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return int(self.sign.shape[0])

    def select(self, i: int) -> 'OpParams':
        """The parameters of sample ``i`` as a batch of one, on the same device."""
        if not -self.batch_size <= i < self.batch_size:
            raise IndexError(f'sample index {i} is out of range for a batch of {self.batch_size}')
        i = i % self.batch_size
        return OpParams(
            sign=self.sign[i:i + 1],
            center=self.center[i:i + 1] if self.center.shape[0] else self.center,
            box_index=self.box_index[i:i + 1] if self.box_index.shape[0] else self.box_index,
            box_mask=self.box_mask[i:i + 1],
            box_center=self.box_center[i:i + 1])

    def to(self, device: Union[str, torch.device]) -> 'OpParams':
        """A copy with every tensor on ``device``."""
        return OpParams(sign=self.sign.to(device), center=self.center.to(device),
                        box_index=self.box_index.to(device),
                        box_mask=[m.to(device) for m in self.box_mask],
                        box_center=[c.to(device) for c in self.box_center])


def sample_params(op: Union[str, OpSpec], batch_size: int, height: int, width: int,
                  boxes: Optional[Sequence[Tensor]] = None, *, generator: Optional[torch.Generator] = None,
                  box_prob: float = 1 / 3, device: Union[str, torch.device, None] = None) -> OpParams:
    """Draw the random parameters of ``op`` for a batch.

    Args:
        op: op name (or TF alias) or its :class:`~det_autoaug.ops.table.OpSpec`.
        batch_size: number of images ``B``.
        height: image height (kept for the signature shared with the kernels; the centres are
            fractions, so they do not depend on it).
        width: image width.
        boxes: ``B`` tensors ``(N_i, 4)``; needed by BBox_Cutout and the bbox-only ops (without
            boxes those ops have nothing to act on).
        generator: CPU ``torch.Generator`` that every draw goes through (replayable); ``None``
            uses torch's global generator.
        box_prob: probability that a bbox-only op acts on each box (TF reference: ``prob / 3``).
        device: where the returned tensors live; defaults to the boxes' device, else CPU.

    Returns:
        The :class:`OpParams` (unused fields empty).

    Raises:
        KeyError: unknown op.
        ValueError: ``batch_size < 1``, ``box_prob`` outside ``[0, 1]``, or ``boxes`` whose
            length is not ``batch_size``.
    """
    spec = op if isinstance(op, OpSpec) else get_op(op)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'batch_size={batch_size!r} is invalid: expected a positive int')
    if not 0.0 <= float(box_prob) <= 1.0:
        raise ValueError(f'box_prob={box_prob!r} is out of range: expected a probability in [0, 1]')
    if boxes is not None and len(boxes) != batch_size:
        raise ValueError(f'boxes has {len(boxes)} entries but batch_size={batch_size}: expected one '
                         '(N_i, 4) tensor per image')
    if device is None:
        device = boxes[0].device if boxes is not None and len(boxes) else torch.device('cpu')
    counts = [int(b.shape[0]) for b in boxes] if boxes is not None else [0] * batch_size
    kw = dict(generator=generator)

    # What the op draws is in its table row; the order of the draws is fixed (replayable).
    if 'sign' in spec.draws:
        sign = torch.where(torch.rand(batch_size, **kw) < 0.5, -1.0, 1.0)
    else:
        sign = torch.ones(batch_size)
    center = torch.rand(batch_size, 2, **kw) if 'center' in spec.draws else torch.zeros(0, 2)
    if 'box_index' in spec.draws:
        u = torch.rand(batch_size, **kw)
        box_index = torch.tensor([min(int(u[i] * n), n - 1) if n else -1 for i, n in enumerate(counts)],
                                 dtype=torch.long)
    else:
        box_index = torch.zeros(0, dtype=torch.long)
    box_mask: List[Tensor] = []
    box_center: List[Tensor] = []
    if 'box_mask' in spec.draws:
        box_mask = [torch.rand(n, **kw) < box_prob for n in counts]
        if 'box_center' in spec.draws:
            box_center = [torch.rand(n, 2, **kw) for n in counts]
    return OpParams(sign=sign, center=center, box_index=box_index, box_mask=box_mask,
                    box_center=box_center).to(device)
