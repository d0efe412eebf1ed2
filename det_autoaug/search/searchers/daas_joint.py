"""DAAS's joint search: the network architecture and the augmentation policy together.

The searcher is composed of two parts: a DAAS searcher
(:class:`~det_autoaug.search.searchers.daas.DAASSearcher`: the policy, its sampling, reward and
REINFORCE update) and an architecture component
(:class:`~det_autoaug.search.architecture.ChoiceArchitecture`: one logit vector per choice block
of the model's supernet, a module with a ``choice_blocks()`` method such as ``DAChoiceNet`` of
:mod:`det_autoaug.cls.nas`, with their own Adam: the model optimiser never touches them). This
module only interleaves the two within a step and joins their outputs.

One step:

1. draw a policy and the per-image augmentation decisions, as DAAS; then, per block, Gumbel
   noise ``g`` (both from the policy generator, so every DDP rank draws the same path) and
   ``soft = softmax((a_b + g) / tau)``, ``k = argmax soft``, ``h = onehot(k) - soft.detach() + soft``;
2. the weights train one step on the (partly augmented) training batch along the path ``k``
   (no graph to the logits);
3. the validation loss along the same path, each block's output multiplied by ``h_k`` (value 1),
   is differentiated into the logits only; the gradients are averaged over DDP ranks; Adam step;
4. the same validation loss makes DAAS's REINFORCE reward for the policy: with the default
   ``reward='paired'``, ``L_before - L_after`` on that batch, ``L_before`` its loss along the
   same path before step 2 (one more forward, no graph); with ``reward='val_loss'``, ``-L_after``.

``tau`` is ``max(tau_min, tau * tau_decay ** t)`` at arch update ``t`` (GDAS anneals it).

Output: besides the policy file, ``arch_file`` (default ``arch.json``, schema of
:mod:`det_autoaug.search.arch_file`) in the work dir: per block the most probable candidate, the
probabilities, their per-epoch trajectory and the supernet's config; the policy file's ``meta``
gets ``arch`` (the names) and ``arch_file``.

Differences to GDAS and DAAS: the path is one per step for the whole batch (GDAS: the same); the
weights step and the architecture step use the same sampled path; under DDP the model must be
wrapped with ``find_unused_parameters=True`` (the candidates off the path get no gradient); the
context's model step gives them a zero gradient, not none, so weight decay shrinks them and
momentum lets them coast (the search configs use no weight decay). Classification only:
detection has no supernet here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor

from ...ops.spaces import SpaceEntry
from ..architecture import ChoiceArchitecture
from .base import LogItems, PlotSeries, Searcher
from .daas import DAASSearcher, ValidationBatch


class DAASJointSearcher(Searcher):
    """DAAS with the architecture searched jointly (single-path Gumbel-softmax choice blocks).

    Args:
        entries: the search-space entries.
        ops_per_policy: entries per policy.
        init_apply_prob: initial s.
        lr_alpha: Adam learning rate of alpha.
        lr_beta: Adam learning rate of beta.
        baseline_decay: moving-average factor of the REINFORCE baseline, in [0, 1).
        reward: DAAS's reward, ``'paired'`` (default) or ``'val_loss'``.
        lr_arch: Adam learning rate of the architecture logits.
        tau: Gumbel-softmax temperature at the start, > 0.
        tau_min: floor of the annealed temperature (default: ``tau``, no annealing), in (0, tau].
        tau_decay: factor per architecture update, in (0, 1].
        arch_file: file name (in the work dir) of the found architecture.

    Attributes:
        daas: the DAAS searcher (the augmentation policy).
        architecture: the :class:`~det_autoaug.search.architecture.ChoiceArchitecture`.
    """

    name = 'daas_joint'
    num_grad_slots = 1
    num_policies = 1

    def __init__(self, entries: Sequence[SpaceEntry], ops_per_policy: int = 2, init_apply_prob: float = 0.35,
                 lr_alpha: float = 0.005, lr_beta: float = 0.001, baseline_decay: float = 0.9,
                 reward: str = 'paired', lr_arch: float = 0.003, tau: float = 1.0, tau_min: Optional[float] = None,
                 tau_decay: float = 1.0, arch_file: str = 'arch.json') -> None:
        self.daas = DAASSearcher(entries, ops_per_policy=ops_per_policy, init_apply_prob=init_apply_prob,
                                 lr_alpha=lr_alpha, lr_beta=lr_beta, baseline_decay=baseline_decay, reward=reward)
        self.architecture = ChoiceArchitecture(lr_arch=lr_arch, tau=tau, tau_min=tau_min, tau_decay=tau_decay)
        if not isinstance(arch_file, str) or not arch_file:
            raise ValueError(f'arch_file={arch_file!r}: expected a non-empty file name')
        self.arch_file = arch_file
        self.entries = self.daas.entries

    # ------------------------------------------------------------------ the parts' state, as before the split
    @property
    def policy(self):
        """The augmentation policy (DAAS's :class:`~det_autoaug.search.categorical.CategoricalPolicy`)."""
        return self.daas.policy

    @property
    def last_stats(self) -> Dict[str, float]:
        return self.daas.last_stats

    @property
    def baseline(self) -> Optional[float]:
        return self.daas.baseline

    @property
    def logits(self) -> List[Any]:
        return self.architecture.logits

    @property
    def candidates(self) -> Tuple[Tuple[str, ...], ...]:
        return self.architecture.candidates

    @property
    def arch_updates(self) -> int:
        return self.architecture.updates

    @arch_updates.setter
    def arch_updates(self, value: int) -> None:
        self.architecture.updates = value

    @property
    def arch_trajectory(self) -> List[Dict[str, Any]]:
        return self.architecture.trajectory

    def tau_now(self) -> float:
        return self.architecture.tau_now()

    def probs(self) -> List[Tensor]:
        """Per block, the softmax of its architecture logits (detached)."""
        return self.architecture.probs()

    def sample_path(self, generator):
        return self.architecture.sample_path(generator)

    def _select(self, indices: Sequence[int], gates: Optional[Sequence[Tensor]] = None) -> None:
        self.architecture.select(indices, gates)

    def arch(self) -> List[str]:
        """Per block, the most probable candidate."""
        return self.architecture.arch()

    def arch_entropy(self) -> float:
        """Mean entropy (nats) of the blocks' distributions."""
        return self.architecture.entropy()

    # ------------------------------------------------------------------ set-up and the step
    def setup(self, ctx) -> None:
        """Find the supernet in ``ctx.model`` and build the architecture logits (zeros) and their Adam.

        Raises:
            ValueError: the model has no choice blocks, or a loaded state was searched on other blocks.
        """
        self.architecture.setup(ctx, self.name)

    def step(self, ctx, data: dict) -> Dict[str, Tensor]:
        daas, arch = self.daas, self.architecture
        if arch.blocks is None:
            self.setup(ctx)
        entries, applied, batch = daas.sample_batch(ctx, data)
        indices, hards = arch.sample_path(ctx.policy_gen)
        arch.select(indices)
        val, val_loss_before = daas.validation_before_step(ctx)
        log_vars = ctx.loss_grad(batch, 0)
        ctx.model_step([1.0], [0])
        val = val or ValidationBatch(ctx)
        arch.select(indices, hards)
        try:
            val_loss = val.loss()
            arch.update(ctx, val_loss)
        finally:
            arch.select_argmax()
        arch.last_stats = {'val_loss': float(val_loss.detach()), 'tau': arch.tau_now()}
        daas.update_policy(ctx, val_loss.detach(), entries, applied, val_loss_before)
        return log_vars

    # ------------------------------------------------------------------ logging, trajectory, export
    def log_items(self, top: int = 5) -> LogItems:
        scalars, infos = self.daas.log_items(top, name=self.name)
        scalars[f'train/{self.name}_arch_entropy'] = self.architecture.entropy()
        scalars[f'train/{self.name}_tau'] = self.architecture.tau_now()
        if self.architecture.logits:
            infos[f'{self.name}_arch'] = ','.join(self.architecture.arch())
        return scalars, infos

    @property
    def trajectory(self) -> List[Dict[str, Any]]:
        return self.daas.trajectory

    def snapshot(self, epoch: int) -> None:
        self.daas.snapshot(epoch)
        self.architecture.snapshot(epoch)

    def export(self) -> Dict[str, Any]:
        return dict(self.daas.export(), searcher=self.name)

    def plot_series(self) -> PlotSeries:
        return self.daas.plot_series()

    def op_probs(self) -> Dict[str, float]:
        return self.daas.op_probs()

    def export_meta(self) -> Dict[str, Any]:
        return {'arch': self.architecture.arch(), 'arch_file': self.arch_file}

    def write_outputs(self, work_dir: Path, meta: Mapping[str, Any]) -> List[Path]:
        path = Path(work_dir) / self.arch_file
        self.architecture.write(path, self.name, {k: v for k, v in meta.items() if k not in ('arch', 'arch_file')})
        return [path]

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> Dict[str, Any]:
        """DAAS's state (``daas_version``, ``reward``, ``policy``, ``baseline``) and ``arch``."""
        state = self.daas.state_dict()
        state['arch'] = self.architecture.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a ``daas_joint`` state; before :meth:`setup` the architecture part waits for the model."""
        if 'arch' not in state:
            raise ValueError("state is not a daas_joint searcher state (no 'arch' entry; a plain DAAS state?)")
        self.daas.load_state_dict(state)
        self.architecture.load_state_dict(state['arch'])
