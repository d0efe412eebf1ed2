"""The searcher interface: what ``PolicySearchHook`` calls on a searcher, and the helpers the
searchers share.

A *searcher* (DDAS, DADA, DAAS) owns its learned state and optimisers and decides what one search
step does, built from the primitives of a search context (:mod:`det_autoaug.search.context`:
the model, the optimiser, the data and the random generators). :class:`Searcher` declares
exactly what the hook (and any other driver of a search) uses; the searchers are built by name or
type from the registry of :mod:`det_autoaug.search.searchers`.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...ops.spaces import SpaceEntry
from ...policy.step import ChainStep

# The search context used to live here; its names stay importable from this module.
from ..context import SearchContext, SearchContextMixin, TorchSearchContext  # noqa: F401

#: ``(scalars, infos)`` of :meth:`Searcher.log_items`.
LogItems = Tuple[Dict[str, float], Dict[str, str]]
#: ``(steps, labels, probs per snapshot, apply_prob per snapshot)`` of :meth:`Searcher.plot_series`.
PlotSeries = Tuple[List[int], List[str], List[List[float]], List[float]]


class Searcher(abc.ABC):
    """A searcher as the search hook drives it: learned state, one step, snapshots, export, checkpoint.

    Class attributes: ``name`` (the searcher's name in policy files, checkpoints and log keys:
    ``'ddas'``), ``num_grad_slots`` (rows of the context's gradient buffers a step needs),
    ``num_policies`` (augmented copies per step, recorded in the policy file's ``meta``) and
    ``round_steps`` (steps per look-ahead round, None for a searcher that updates every step).
    Attributes: ``entries``, the search-space entries it searches over, and ``trajectory``, the
    snapshots so far (dicts with an int ``'epoch'``, oldest first).

    Life of a searcher in the hook: built from the hook's ``searcher`` config; :meth:`setup` once
    the context exists; per training iteration :meth:`step` then :meth:`log_items`; :meth:`snapshot`
    per epoch (or every ``snapshot_interval`` iterations) and at the end; :meth:`state_dict` into
    each checkpoint, :meth:`load_state_dict` on resume; at the end :meth:`export` (the policy
    file), :meth:`export_meta`, :meth:`write_outputs` and :meth:`plot_series` (the plot).
    """

    name: str = ''
    num_grad_slots: int = 1
    num_policies: int = 1
    #: Training steps per look-ahead round when the searcher updates in rounds, else None (the hook
    #: warns when a run makes far more or fewer rounds than the defaults were measured with).
    round_steps: Optional[int] = None
    entries: Tuple[SpaceEntry, ...]
    trajectory: List[Dict[str, Any]]

    def chain(self, entries: Sequence[int]) -> List[ChainStep]:
        """The augmentation steps of the entries at indices ``entries`` of :attr:`entries`, in order."""
        return [self.entries[e].step() for e in entries]

    def setup(self, ctx: SearchContext) -> None:  # noqa: B027  (optional hook: by default nothing to check)
        """Called once the context has its model (the hook: at the end of ``before_run``), before any
        step and after ``__init__``; a searcher that needs the model (e.g. its choice blocks) checks
        it here and raises ``ValueError`` if it does not fit."""

    @abc.abstractmethod
    def step(self, ctx: SearchContext, data: dict) -> Dict[str, Tensor]:
        """One search step on the training batch ``data``: the model trains one step and the searcher
        updates its state; returns the model's log variables (as ``model.train_step`` does)."""

    @abc.abstractmethod
    def log_items(self, top: int = 5) -> LogItems:
        """After a step: ``(scalars, infos)`` for the logger, scalars keyed ``train/<name>_<key>``, infos
        naming the ``top`` most probable entries (``<name>_top1``: ``'Rotate@3=0.2140'``)."""

    @abc.abstractmethod
    def snapshot(self, epoch: int) -> None:
        """Record the current policy in :attr:`trajectory` under ``epoch`` (replacing a snapshot of the
        same epoch; epochs must not decrease)."""

    @abc.abstractmethod
    def export(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`det_autoaug.policy.policy_file.save_policy_file` (less path,
        space and meta): ``searcher``, ``entries``, ``probs``, ``apply_prob``, ``ops_per_policy``,
        ``trajectory`` and, for sub-policy searchers, ``subpolicies``."""

    @abc.abstractmethod
    def state_dict(self) -> Dict[str, Any]:
        """The learned state and its optimisers (a checkpoint's ``ddas_search.policy``)."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; ``ValueError`` for another searcher's state."""

    @abc.abstractmethod
    def plot_series(self) -> PlotSeries:
        """``(steps, labels, probs per snapshot, apply_prob per snapshot)`` for the policy plot."""

    def export_meta(self) -> Dict[str, Any]:
        """Extra ``meta`` items of the policy file (JSON-serialisable)."""
        return {}

    def write_outputs(self, work_dir: Path, meta: Mapping[str, Any]) -> List[Path]:
        """Write the searcher's own output files besides the policy file; returns their paths."""
        return []


class SubPolicyOutputs:
    """``snapshot``, ``export`` and ``plot_series`` of a searcher over sub-policies of op pairs (both DADAs).

    The searcher provides ``name``, ``op_names``, ``trajectory`` (snapshots of its per-op
    marginal probabilities) and ``export_entries()``, ``marginal_op_probs()``, ``apply_prob()``,
    ``export_subpolicies()``.
    """

    def snapshot(self, epoch: int) -> None:
        check_int('epoch', epoch, 0)
        record_snapshot(self.trajectory, {'epoch': int(epoch), 'probs': self.marginal_op_probs().tolist(),
                                          'apply_prob': self.apply_prob()})

    def export(self) -> Dict[str, Any]:
        return dict(searcher=self.name, entries=self.export_entries(), probs=self.marginal_op_probs().tolist(),
                    apply_prob=self.apply_prob(), ops_per_policy=2, trajectory=self.trajectory,
                    subpolicies=self.export_subpolicies())

    def plot_series(self) -> PlotSeries:
        traj = self.trajectory
        return ([t['epoch'] for t in traj], list(self.op_names), [t['probs'] for t in traj],
                [t['apply_prob'] for t in traj])


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')
    return int(value)


def record_snapshot(trajectory: List[Dict[str, Any]], item: Dict[str, Any]) -> None:
    """Append a trajectory ``item`` (with an int ``'epoch'`` >= 0), or replace the last one when it
    has the same epoch; epochs must not decrease."""
    epoch = check_int('epoch', item['epoch'], 0)
    if trajectory and epoch < trajectory[-1]['epoch']:
        raise ValueError(f'epoch must be >= the last snapshot epoch {trajectory[-1]["epoch"]}, got {epoch!r}')
    if trajectory and trajectory[-1]['epoch'] == epoch:
        trajectory[-1] = item
    else:
        trajectory.append(item)


def check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f'{name} must be a number > 0, got {value!r}')
    return float(value)


def select_images(clean: dict, augmented: dict, mask: Sequence[bool]) -> dict:
    """Per image, the augmented copy where ``mask`` is True and the clean one elsewhere.

    Both batches come from the same batch (``augmented = augment(clean, ...)``); inputs are
    lists of ``(C, H, W)`` tensors or a stacked ``(B, C, H, W)`` tensor.
    """
    mask = [bool(m) for m in mask]
    stacked = isinstance(clean['inputs'], Tensor)
    inputs = [a if m else c.to(a.device, a.dtype) for c, a, m in zip(clean['inputs'], augmented['inputs'], mask)]
    out = dict(clean)
    out['inputs'] = torch.stack(inputs) if stacked else inputs
    samples_a, samples_c = augmented.get('data_samples'), clean.get('data_samples')
    if samples_a is not None and samples_c is not None:
        out['data_samples'] = [a if m else c for c, a, m in zip(samples_c, samples_a, mask)]
    return out


def distinct_ops(entries: Sequence[SpaceEntry]) -> List[Tuple[str, float]]:
    """The distinct ops of a space, in first-appearance order, each with its mean magnitude."""
    magnitudes: Dict[str, List[float]] = {}
    for e in entries:
        magnitudes.setdefault(e.op, []).append(float(e.magnitude))
    return [(op, sum(ms) / len(ms)) for op, ms in magnitudes.items()]
