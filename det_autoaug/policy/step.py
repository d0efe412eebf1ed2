"""The one step type: an op at a magnitude, with its probability and, for DADA, a gate.

Every chain applier (:mod:`det_autoaug.policy.apply`) takes chains of :class:`ChainStep`: the
policies sample them, the search builds them (``entry.step()`` of a search-space entry,
``ChainStep(op, magnitude_tensor)`` for a differentiable magnitude) and a policy file's
sub-policy ops convert with ``op.step()``. Two records say "an op at a magnitude" and stay
apart because they are not steps: :class:`~det_autoaug.ops.spaces.SpaceEntry` (a search-space
entry: a level and a label) and :class:`~det_autoaug.policy.file_schema.SubPolicyOp` (the
policy file's record).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Union

from torch import Tensor


@dataclass(frozen=True)
class ChainStep:
    """One step of a chain: ``op`` at ``magnitude``, run with probability ``prob``.

    Attributes:
        op: table name (or TF alias) of the op.
        magnitude: a number, or a 0-d float tensor that may require grad (the search's
            differentiable magnitudes; the applier keeps it in the graph). Identity at 0.
        prob: the probability that the step runs, drawn by the applier. For bbox-only ops it is
            the TensorFlow one: the op always runs and each box is selected with probability
            ``prob / 3``.
        gate: ``None``, or a tensor whose forward value is 0 or 1 per image (0-d: every image;
            ``(B,)``: one per image of the batch the applier gets), e.g. DADA's straight-through
            relaxed decision: the images become ``x + gate * (op(x) - x)`` and boxes follow the op
            where the gate is above 0.5. Not part of equality.
    """

    op: str
    magnitude: Union[float, Tensor]
    prob: float = 1.0
    gate: Optional[Tensor] = field(default=None, compare=False)


def as_step(step: Any) -> ChainStep:
    """``step`` as a :class:`ChainStep`; also takes the search's former ``(op, magnitude)`` and
    ``(op, magnitude, gate)`` tuples (probability 1), which older callers still pass.

    Raises:
        ValueError: neither a step nor such a tuple.
    """
    if isinstance(step, ChainStep):
        return step
    if isinstance(step, tuple) and len(step) in (2, 3) and isinstance(step[0], str):
        return ChainStep(step[0], step[1], 1.0, step[2] if len(step) == 3 else None)
    raise ValueError(f'chain step {step!r} is invalid: expected a ChainStep (or an (op, magnitude[, gate]) tuple)')


def as_chain(chain: Sequence[Any]) -> List[ChainStep]:
    """:func:`as_step` of every step of ``chain``."""
    return [as_step(s) for s in chain]
