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
    Arm('ddas', SEARCHED, 'DDAS (Liu et al., 2021): one-step rewards, the alignment of augmented and validation '
        'gradients', searcher='ddas'),
    Arm('ddas_paper', SEARCHED, 'DDAS with the published estimator', searcher='ddas',
        searcher_args=dict(estimator='paper')),
    # one policy update per round: a larger Adam step; single-entry policies
    Arm('ddas_lookahead', SEARCHED, 'DDAS with the look-ahead signal: single-entry policies rewarded after a '
        'round of steps', searcher='ddas',
        searcher_args=dict(signal='lookahead', lookahead_steps=PER_TASK, lookahead_val_batches=PER_TASK,
                           ops_per_policy=1, lr_alpha=0.2, lr_beta=0.04)),
    # the same with 6 proposals per round: a less noisy update per round (docs/results.md, planted harm)
    Arm('ddas_lookahead_k6', SEARCHED, 'DDAS with the look-ahead signal and 6 proposals per round',
        searcher='ddas',
        searcher_args=dict(signal='lookahead', lookahead_steps=PER_TASK, lookahead_val_batches=PER_TASK,
                           ops_per_policy=1, lr_alpha=0.2, lr_beta=0.04, num_policies=6)),
    Arm('dada', SEARCHED, 'DADA (Li et al., 2020): sub-policies learned by a differentiable relaxation',
        searcher='dada'),
    Arm('daas', SEARCHED, "DAAS (Wang et al., 2021): REINFORCE on the validation loss's improvement, DDAS's "
        'policy', searcher='daas'),
    # as ddas_lookahead_k6, with DAAS's on-policy REINFORCE update
    Arm('daas_lookahead', SEARCHED, 'DAAS with the look-ahead reward: 6 policies drawn from p per round, '
        'REINFORCE with a leave-one-out baseline', searcher='daas',
        searcher_args=dict(reward='lookahead', lookahead_steps=PER_TASK, lookahead_val_batches=PER_TASK,
                           ops_per_policy=1, lr_alpha=0.2, lr_beta=0.04, lookahead_policies=6)),
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
