"""The uniform policy: a policy file with equal entry probabilities, the control that tells what a
search learned about ``p`` from what its space, ``apply_prob`` and ``ops_per_policy`` alone do
(``det_autoaug.evaluation.compare_det``'s ``uniform`` arm, ``tools/train_cls.py --policy uniform``)."""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Union

from ..ops.spaces import SpaceEntry, get_space
from ..policy.policy_file import PolicyFile, save_policy_file


def write_uniform_policy(path: Union[str, os.PathLike], space: str, apply_prob: float, *,
                         entries: Optional[Sequence[Union[SpaceEntry, Mapping[str, Any]]]] = None,
                         ops_per_policy: int = 2, meta: Optional[Mapping[str, Any]] = None) -> PolicyFile:
    """Write a policy file (searcher ``'uniform'``) whose entries all have the probability ``1 / N``.

    Args:
        path: the file to write (parent folders are created).
        space: the name of the search space the file records.
        apply_prob: probability that an image is augmented, in ``[0, 1]``.
        entries: the N entries; default: those of ``space`` (:func:`det_autoaug.ops.spaces.get_space`).
            A searched file's entries, to copy its space as it was searched.
        ops_per_policy: entries drawn per augmented image.
        meta: the file's metadata (``created`` is added).

    Returns:
        The written :class:`~det_autoaug.policy.policy_file.PolicyFile`.

    Raises:
        ValueError: an invalid policy (as :func:`~det_autoaug.policy.policy_file.save_policy_file`).
    """
    entries = get_space(space) if entries is None else entries
    n = len(entries)
    return save_policy_file(path, searcher='uniform', space=space, entries=entries, probs=[1.0 / n] * n,
                            apply_prob=apply_prob, ops_per_policy=ops_per_policy, meta=meta)
