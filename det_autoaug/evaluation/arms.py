"""The arms of the comparisons: one row per arm, shared by detection and classification.

A row says what an arm is: its name, its kind (:data:`KINDS`), a one-line description, and for a
searched arm the searcher (a name of :data:`det_autoaug.search.searchers.SEARCHERS`) and the arguments
that make the arm what it is. How an arm augments is each task's own, looked up by the arm's name or
kind: :func:`det_autoaug.evaluation.compare_det.augmentation` (mmdet transforms inserted in the training
pipeline), :func:`det_autoaug.evaluation.compare_cls.baseline_policy` and
:func:`det_autoaug.evaluation.compare_cls.search` (torch chains). Each task lists the arms it runs, in
its order. Adding an arm is one row here plus, per task that runs it, its builder.

A searcher argument that depends on a task's budget (the look-ahead's round length) is
:data:`PER_TASK` here, and each task sets it: :meth:`Arm.searcher_cfg`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

#: No augmentation.
NONE = 'none'
#: An augmentation a person picks for the task, without search.
HANDPICKED = 'handpicked'
#: A published augmentation or policy, used as published: no search here.
PUBLISHED = 'published'
#: A random control: the search space with uniform probabilities, what a search starts from.
RANDOM = 'random'
#: The policy a searcher finds on the task's training data.
SEARCHED = 'searched'
KINDS = (NONE, HANDPICKED, PUBLISHED, RANDOM, SEARCHED)


class _PerTask:
    """The value of a searcher argument that each task sets (:meth:`Arm.searcher_cfg` refuses it unset)."""

    def __repr__(self) -> str:
        return 'PER_TASK'


PER_TASK = _PerTask()


@dataclass(frozen=True)
class Arm:
    """One arm of the comparisons.

    Args:
        name: the arm's name (the tools' ``--arms`` choice, the key of its runs in results.json).
        kind: one of :data:`KINDS`.
        description: one line: what the arm trains with.
        searcher: a searched arm's searcher; None for the other kinds.
        searcher_args: a searched arm's searcher arguments (on top of the searcher's defaults, or of
            the task's search config); :data:`PER_TASK` for one each task sets.

    Raises:
        ValueError: an unknown kind, or a searcher given to an arm that is not searched (or missing
            from one that is).
    """

    name: str
    kind: str
    description: str
    searcher: Optional[str] = None
    searcher_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f'arm {self.name!r}: kind {self.kind!r}, expected one of {KINDS}')
        if (self.kind == SEARCHED) != (self.searcher is not None):
            raise ValueError(f'arm {self.name!r} of kind {self.kind!r}: searcher={self.searcher!r}, expected a '
                             f'searcher exactly when the kind is {SEARCHED!r}')
        object.__setattr__(self, 'searcher_args', MappingProxyType(dict(self.searcher_args)))

    def searcher_cfg(self, **task_args: Any) -> Tuple[str, Dict[str, Any]]:
        """The searcher and its arguments, with the task's ``task_args`` set on top.

        An argument of the row keeps its place when a task sets it; a new one comes last.

        Returns:
            ``(searcher, arguments)``, the arguments a new dict.

        Raises:
            ValueError: the arm is not searched, or an argument that each task sets was not given.
        """
        if self.searcher is None:
            raise ValueError(f'arm {self.name!r} of kind {self.kind!r} has no searcher')
        cfg = dict(self.searcher_args)
        cfg.update(task_args)
        unset = [k for k, v in cfg.items() if v is PER_TASK]
        if unset:
            raise ValueError(f'arm {self.name!r}: searcher arguments {unset} are set by each task, none given')
        return self.searcher, cfg


_ROWS = (
    Arm('none', NONE, 'no augmentation'),
    Arm('handpicked', HANDPICKED, "a sensible augmentation picked by hand for the task's images, no search"),
    Arm('randaugment', PUBLISHED, 'RandAugment (Cubuk et al., 2020): a few ops drawn uniformly per image at a '
        'fixed magnitude, no search'),
    Arm('trivialaugment', PUBLISHED, "TrivialAugment (Mueller and Hutter, 2021): one of the search space's ops "
        'per image at a uniform magnitude, no search'),
    Arm('autoaug_v0', PUBLISHED, 'the published AutoAugment detection policy v0 (Zoph et al., 2019)'),
    Arm('uniform', RANDOM, 'the search space with uniform p (a random policy): what a search starts from'),
    # DDAS's defaults (DDASSearcher, configs/_base_/ddas_search.py); each task sets the round length
    Arm('ddas', SEARCHED, "DDAS (Liu et al., 2021) with its defaults: the look-ahead signal, 6 single-entry "
        'policies per round rewarded by the validation loss a round of training with each reaches',
        searcher='ddas', searcher_args=dict(signal='lookahead', lookahead_steps=PER_TASK,
                                            lookahead_val_batches=PER_TASK)),
    # the default until 2026-12-04: the paper's reward and settings, the centred estimator
    Arm('ddas_one_step', SEARCHED, "DDAS with the paper's one-step reward (the alignment of augmented and "
        'validation gradients), K = 3 pairs of entries, the centred estimator', searcher='ddas',
        searcher_args=dict(signal='one_step', num_policies=3, ops_per_policy=2, lr_alpha=PER_TASK,
                           lr_beta=PER_TASK)),
    Arm('ddas_paper', SEARCHED, 'DDAS as published: the one-step reward and the published estimator',
        searcher='ddas', searcher_args=dict(signal='one_step', estimator='paper', num_policies=3, ops_per_policy=2,
                                            lr_alpha=PER_TASK, lr_beta=PER_TASK)),
    # the look-ahead with 3 proposals per round (its first measured form)
    Arm('ddas_lookahead', SEARCHED, 'DDAS with the look-ahead signal and 3 proposals per round', searcher='ddas',
        searcher_args=dict(signal='lookahead', lookahead_steps=PER_TASK, lookahead_val_batches=PER_TASK,
                           num_policies=3, ops_per_policy=1, lr_alpha=0.2, lr_beta=0.04)),
    Arm('dada', SEARCHED, 'DADA (Li et al., 2020): sub-policies learned by a differentiable relaxation',
        searcher='dada'),
    # DAAS's defaults (DAASSearcher); each task sets the round length
    Arm('daas', SEARCHED, "DAAS (Wang et al., 2021) with its defaults: REINFORCE on the validation loss that "
        'a round of training with each of 6 policies drawn from p saves (the look-ahead reward), '
        "DDAS's policy", searcher='daas', searcher_args=dict(reward='lookahead', lookahead_steps=PER_TASK,
                                                             lookahead_val_batches=PER_TASK)),
    # the default until 2026-12-04
    Arm('daas_paired', SEARCHED, "DAAS with the one-step paired reward: the validation-loss change one step "
        'makes on the same batch', searcher='daas', searcher_args=dict(reward='paired', lr_alpha=PER_TASK,
                                                                       lr_beta=PER_TASK)),
)
#: name -> :class:`Arm`, in the order the detection comparison runs them.
ARMS: Mapping[str, Arm] = MappingProxyType({arm.name: arm for arm in _ROWS})


def get_arm(name: str) -> Arm:
    """The row of arm ``name``.

    Raises:
        ValueError: no such arm.
    """
    if name not in ARMS:
        raise ValueError(f'unknown arm {name!r}, expected one of {tuple(ARMS)}')
    return ARMS[name]


def task_arms(*names: str) -> Tuple[str, ...]:
    """A task's arms, in its order, each checked against the table.

    Raises:
        ValueError: an unknown or repeated name.
    """
    for name in names:
        get_arm(name)
    if len(set(names)) != len(names):
        raise ValueError(f'arms {names}: expected each once')
    return tuple(names)


def describe(names: Sequence[str]) -> str:
    """A markdown table of the arms ``names``: name, kind and (searcher) description."""
    lines = ['| arm | kind | what |', '|---|---|---|']
    for name in names:
        arm = get_arm(name)
        kind = arm.kind if arm.searcher is None else f'{arm.kind} ({arm.searcher})'
        lines.append(f'| {arm.name} | {kind} | {arm.description} |')
    return '\n'.join(lines) + '\n'
