"""A single-path architecture search space for classification: choice blocks in a small CIFAR net.

DAAS (Wang et al. 2021) searches the network together with the augmentation policy. This module
is the network half: :data:`CANDIDATES`, the table of candidate ops a block may choose from;
:class:`ChoiceBlock`, a block holding several candidates of which exactly one runs per forward;
and ``DAChoiceNet`` (:class:`ChoiceNet`), a stem, stages of blocks and a linear head, built either
as the *supernet* (every block a :class:`ChoiceBlock`, searched by the ``'daas_joint'`` searcher of
:mod:`det_autoaug.search.searchers`) or *fixed* (``arch=[...]``: only the chosen op of each block is
instantiated; for training the found architecture).

The searcher owns the architecture logits (one vector per block): they are not parameters of
the model, so the model optimiser never sees them. It reaches the blocks through the model's
``choice_blocks()`` and sets the path with :meth:`ChoiceBlock.select`. A searched architecture
is read back from the arch file the search writes (:func:`fixed_backbone_cfg`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from mmengine.registry import MODELS
from torch import Tensor, nn

from ..search.arch_file import ArchFile


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, dilation: int = 1) -> nn.Module:
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=False))


def _sep_conv(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                         nn.ReLU(inplace=False), *_conv_bn_relu(cin, cout, 1, 1))


def _pool_conv(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.MaxPool2d(3, stride, 1), *_conv_bn_relu(cin, cout, 1, 1))


@dataclass(frozen=True)
class CandidateOp:
    """One candidate of a choice block.

    Attributes:
        name: the name an architecture uses for it.
        build: ``(in_channels, out_channels, stride) -> module``.
        same_shape_only: only offered where the block keeps the shape (stride 1, equal channels).
    """

    name: str
    build: Callable[[int, int, int], nn.Module]
    same_shape_only: bool = False


#: The candidate ops, in the default order of a block's candidates.
CANDIDATES: Tuple[CandidateOp, ...] = (
    CandidateOp('conv3x3', lambda cin, cout, s: _conv_bn_relu(cin, cout, 3, s)),
    CandidateOp('conv5x5', lambda cin, cout, s: _conv_bn_relu(cin, cout, 5, s)),
    CandidateOp('sepconv3x3', _sep_conv),
    CandidateOp('dilconv3x3', lambda cin, cout, s: _conv_bn_relu(cin, cout, 3, s, dilation=2)),
    CandidateOp('maxpool3x3', _pool_conv),
    CandidateOp('skip', lambda cin, cout, s: nn.Identity(), same_shape_only=True),
)
CANDIDATE_NAMES: Tuple[str, ...] = tuple(op.name for op in CANDIDATES)
_BY_NAME: Dict[str, CandidateOp] = {op.name: op for op in CANDIDATES}


class Residual(nn.Module):
    """``x + op(x)``: a candidate of a block that keeps the shape, in a residual ``ChoiceNet``."""

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: Tensor) -> Tensor:
        return x + self.op(x)


def _build(name: str, cin: int, cout: int, stride: int, residual: bool) -> nn.Module:
    op = _BY_NAME[name].build(cin, cout, stride)
    keeps_shape = stride == 1 and cin == cout
    return Residual(op) if residual and keeps_shape and name != 'skip' else op


class ChoiceBlock(nn.Module):
    """A block of named candidate ops of which only the selected one runs.

    Args:
        ops: candidate name -> module; every module maps the block's input to the same output shape.

    The selection (:meth:`select`) starts at candidate 0. With a ``gate`` (the chosen entry of a
    straight-through one-hot sample ``h = onehot - soft.detach() + soft``, value 1) the output is
    ``gate * op(x)``: the same value, and a gradient ``<op(x), dL/d out>`` that reaches the
    architecture logits through the softmax.

    Shape:
        as the candidates: ``(B, C_in, H, W) -> (B, C_out, H', W')``.
    """

    def __init__(self, ops: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not ops:
            raise ValueError('ChoiceBlock needs at least one candidate op, got none')
        self.candidates: Tuple[str, ...] = tuple(ops)
        self.ops = nn.ModuleList(ops.values())
        self.index = 0
        self.gate: Optional[Tensor] = None

    def select(self, index: int, gate: Optional[Tensor] = None) -> None:
        """Run candidate ``index`` from now on, its output multiplied by ``gate`` (``None``: by nothing)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.ops):
            raise ValueError(f'ChoiceBlock.select index={index!r}: expected an int in [0, {len(self.ops)})')
        self.index, self.gate = index, gate

    def forward(self, x: Tensor) -> Tensor:
        out = self.ops[self.index](x)
        return out if self.gate is None else out * self.gate


def _stage_blocks(blocks_per_stage: Union[int, Sequence[int]], num_stages: int) -> List[int]:
    counts = [blocks_per_stage] * num_stages if isinstance(blocks_per_stage, int) else list(blocks_per_stage)
    if len(counts) != num_stages or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
        raise ValueError(f'ChoiceNet blocks_per_stage={blocks_per_stage!r}: expected a positive int or '
                         f'{num_stages} positive ints (one per width)')
    return counts


@MODELS.register_module(name='DAChoiceNet')
class ChoiceNet(nn.Module):
    """Stem, stages of choice blocks, global pooling and a linear head (the DAAS search network).

    Stage ``s`` has ``blocks_per_stage[s]`` blocks of width ``widths[s]``; the first block of every
    stage but the first has stride 2. Each block offers the ``candidates`` its shape allows
    (``'skip'`` only where stride is 1 and the width unchanged). With ``residual``, a candidate of
    a block that keeps the shape computes ``x + op(x)`` (``'skip'``: ``x``), so every path is a
    residual network and the shared weights train in far fewer steps than a plain chain.

    Args:
        widths: channels per stage (the stem has ``widths[0]``).
        blocks_per_stage: blocks per stage (an int: the same for every stage).
        candidates: names from :data:`CANDIDATE_NAMES`, in the order the architecture indexes them.
        num_classes: number of output logits.
        in_channels: input channels.
        dropout: dropout before the head (0: none).
        residual: shape-keeping candidates add their input (see above).
        arch: ``None`` for the supernet; else one entry per block, a candidate name or an index into
            that block's candidates (:attr:`block_candidates`): only those ops are built.

    Shape:
        ``(B, in_channels, H, W)`` float -> ``(B, num_classes)`` logits.

    Raises:
        ValueError: an unknown or repeated candidate, a block left without candidates, bad sizes, or
            an ``arch`` of the wrong length or naming an op its block does not offer.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64), blocks_per_stage: Union[int, Sequence[int]] = 2,
                 candidates: Sequence[str] = CANDIDATE_NAMES, num_classes: int = 10, in_channels: int = 3,
                 dropout: float = 0.0, residual: bool = True,
                 arch: Optional[Sequence[Union[str, int]]] = None) -> None:
        super().__init__()
        widths = list(widths)
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f'ChoiceNet widths={widths!r}: expected one or more positive ints')
        counts = _stage_blocks(blocks_per_stage, len(widths))
        candidates = list(candidates)
        unknown = [c for c in candidates if c not in _BY_NAME]
        if unknown or not candidates or len(set(candidates)) != len(candidates):
            raise ValueError(f'ChoiceNet candidates={candidates!r}: expected distinct names from {CANDIDATE_NAMES}'
                             + (f' ({unknown[0]!r} is unknown)' if unknown else ''))
        for name, value in (('num_classes', num_classes), ('in_channels', in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'ChoiceNet {name}={value!r}: expected a positive integer')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'ChoiceNet dropout={dropout!r}: expected a probability in [0, 1)')
        self.widths, self.counts, self.candidate_names = widths, counts, candidates
        self.num_classes, self.in_channels, self.dropout_p = num_classes, in_channels, float(dropout)
        self.residual = bool(residual)

        shapes = []  # (in, out, stride) per block
        cin = widths[0]
        for stage, (width, n) in enumerate(zip(widths, counts)):
            for block in range(n):
                shapes.append((cin, width, 2 if stage > 0 and block == 0 else 1))
                cin = width
        self.block_candidates: Tuple[Tuple[str, ...], ...] = tuple(
            tuple(c for c in candidates if not _BY_NAME[c].same_shape_only or (s == 1 and i == o))
            for i, o, s in shapes)
        for b, offered in enumerate(self.block_candidates):
            if not offered:
                raise ValueError(f'ChoiceNet candidates={candidates!r} leave block {b} (stride {shapes[b][2]}, '
                                 f'{shapes[b][0]} -> {shapes[b][1]} channels) without a candidate')
        self.arch: Optional[Tuple[str, ...]] = None if arch is None else self._check_arch(arch)

        self.stem = _conv_bn_relu(in_channels, widths[0], 3, 1)
        blocks: List[nn.Module] = []
        for b, (i, o, s) in enumerate(shapes):
            if self.arch is None:
                blocks.append(ChoiceBlock({c: _build(c, i, o, s, self.residual) for c in self.block_candidates[b]}))
            else:
                blocks.append(_build(self.arch[b], i, o, s, self.residual))
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def _check_arch(self, arch: Sequence[Union[str, int]]) -> Tuple[str, ...]:
        if isinstance(arch, (str, bytes)) or len(arch) != len(self.block_candidates):
            raise ValueError(f'ChoiceNet arch={arch!r}: expected {len(self.block_candidates)} entries, one per block')
        names = []
        for b, (choice, offered) in enumerate(zip(arch, self.block_candidates)):
            if isinstance(choice, int) and not isinstance(choice, bool) and 0 <= choice < len(offered):
                names.append(offered[choice])
            elif isinstance(choice, str) and choice in offered:
                names.append(choice)
            else:
                raise ValueError(f'ChoiceNet arch[{b}]={choice!r} is not a candidate of block {b}: expected one '
                                 f'of {offered} or an index below {len(offered)}')
        return tuple(names)

    def choice_blocks(self) -> List[ChoiceBlock]:
        """The blocks a searcher selects paths in (none when the architecture is fixed)."""
        return [b for b in self.blocks if isinstance(b, ChoiceBlock)]

    def arch_config(self) -> Dict[str, Any]:
        """The config that rebuilds this network (``arch`` left out): recorded in the arch file."""
        return dict(type='DAChoiceNet', widths=list(self.widths), blocks_per_stage=list(self.counts),
                    candidates=list(self.candidate_names), num_classes=self.num_classes,
                    in_channels=self.in_channels, dropout=self.dropout_p, residual=self.residual)

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(self.stem(x))
        return self.fc(self.dropout(out.mean((2, 3))))


#: Keys of a DAChoiceNet config that fix its list of blocks and what their candidates compute: a
#: training config may not change them when it takes an architecture from an arch file.
STRUCTURAL_KEYS = ('blocks_per_stage', 'candidates', 'residual')


def fixed_backbone_cfg(arch: ArchFile, base: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The backbone config of the fixed found architecture of an arch file.

    Args:
        arch: a loaded arch file (:func:`det_autoaug.search.arch_file.load_arch_file`).
        base: the training config's backbone. A ``DAChoiceNet`` one overrides the searched network's
            non-structural settings (e.g. wider ``widths``, ``num_classes``, ``dropout``); of any other
            backbone only ``num_classes`` is kept.

    Returns:
        ``dict(type='DAChoiceNet', ..., arch=[names])``.

    Raises:
        ValueError: the file records no ``DAChoiceNet``, or ``base`` changes the blocks or candidates.
    """
    network = dict(arch.network or {})
    if network.get('type') != 'DAChoiceNet':
        raise ValueError(f'the arch file records network {arch.network!r}: expected a DAChoiceNet config '
                         '(a search on another supernet cannot be rebuilt here)')
    base = dict(base or {})
    if base.get('type') == 'DAChoiceNet':
        for key in STRUCTURAL_KEYS:
            if key not in base:
                continue
            value, searched = base[key], network.get(key)
            if key == 'blocks_per_stage':
                value = _stage_blocks(value, len(network['widths']))
            if key != 'residual':
                value, searched = list(value), list(searched or ())
            if value != searched:
                raise ValueError(f'the training backbone sets {key}={base[key]!r} but the architecture was '
                                 f'searched with {key}={network[key]!r}')
        network.update({k: v for k, v in base.items() if k not in ('arch', *STRUCTURAL_KEYS)})
    elif 'num_classes' in base:
        network['num_classes'] = base['num_classes']
    network['arch'] = list(arch.arch)
    return network
