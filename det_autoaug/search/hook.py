"""``PolicySearchHook``: augmentation policy search while an MMEngine runner trains a detector.

The hook builds a searcher from its ``searcher`` config (``dict(type='DDAS', ...)``; the types of
:data:`det_autoaug.search.searchers.SEARCHER_TYPES`: ``'DDAS'``, ``'DADA'``, ``'DADAShared'``,
``'DAAS'``, ``'DAASJoint'``) and, in ``before_run``, a search context over the runner
(:class:`~det_autoaug.search.runner_context.RunnerSearchContext`: the model, the optimiser, the
validation data, the generators). The searcher decides what one step does with the context's
primitives (:mod:`det_autoaug.search.context`); the hook drives it through the interface of
:class:`~det_autoaug.search.searchers.base.Searcher`: step, log, snapshot, checkpoint, export.

How the hook takes over the training step: in ``before_run`` it replaces the model's
``train_step`` by :meth:`PolicySearchHook.search_step` (a step wrapper) and restores it in
``after_run``. A wrapper rather than a custom loop keeps the user's loop (epoch- or
iteration-based), schedulers, logging, checkpointing and evaluation exactly as configured; the
hook is the only line a user adds to a stock config.

DDAS's step with ``signal='one_step'`` (the published one, REFERENCE section 1,
:class:`~det_autoaug.search.searchers.DDASSearcher`; DDAS's default look-ahead signal trains the
model one plain step and, every ``lookahead_steps`` steps, runs its branches:
:mod:`det_autoaug.search.lookahead`), with ``K = num_policies``:

1. draw K policies (ordered pairs of space entries) with the policy generator;
2. gradient of the loss on the clean batch -> flat buffer 0; on copy k augmented with
   policy k -> buffer k (one copy at a time: never the activations of two copies alive);
3. write ``(1 - s) g_0 + s sum_k w_k g_k`` into the parameters' grads and step the optimiser;
4. gradient of the loss on a held-out validation batch at the new weights -> buffer K+1;
5. inner products <g_k, g_V>, rewards, policy update (:class:`det_autoaug.search.core.DDASPolicy`).

Validation batches come from a held-out split of the training set (``val_fraction``; the train
dataloader is rebuilt on the rest), or from ``val_dataloader``. They are drawn by the context's
own generator so that a resumed search sees the same batches as an uninterrupted one.

Distributed: under DDP every backward all-reduces the gradients, so every rank holds the same
g_k and g_V; all ranks draw the policies from identically seeded generators (the augmentation
parameters use a rank-specific one), so the policy stays identical on every rank.

``DDASSearchHook`` is the former name, kept as a deprecated alias with its former arguments.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import MessageHub, print_log
from mmengine.registry import HOOKS

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..ops.spaces import get_space
from ..utils.checkpoint import enable_safe_resume
from .batch_augment import COPY_BACKENDS
from .runner_context import RANDOM_TRANSFORM_PREFIXES, RunnerSearchContext, default_val_pipeline, validation_dataset
from .searchers import SEARCHERS, Searcher, build_searcher

__all__ = ['PolicySearchHook', 'DDASSearchHook', 'default_val_pipeline', 'RANDOM_TRANSFORM_PREFIXES']


#: Rounds per search with which the look-ahead's default learning rates were measured
#: (docs/results.md: 12 in detection, 16 on Fashion-MNIST, 18 in ``make search``).
ROUNDS_MEASURED = (12, 18)


@HOOKS.register_module()
class PolicySearchHook(Hook):
    """Search an augmentation policy while the runner trains.

    Args:
        searcher: the searcher's config, ``dict(type='DDAS', lookahead_steps=50)``: its
            type (:data:`~det_autoaug.search.searchers.SEARCHER_TYPES`) and its keyword arguments
            (e.g. ``signal='one_step', estimator='paper'`` for the published DDAS, ``lr=3e-3, top_k=10``
            for DADA, ``baseline_decay=0.95`` for DAAS, ``lr_arch=3e-3, tau=5.0`` for DAASJoint,
            which needs a model with choice blocks and writes ``arch.json`` beside the policy); or
            just a type (``'DAAS'``), or a :class:`~det_autoaug.search.searchers.Searcher` built over
            the entries of ``space``. Default: DDAS with its defaults (the look-ahead signal;
            :class:`~det_autoaug.search.searchers.DDASSearcher`).
        space: name of the search space (:data:`det_autoaug.ops.spaces.SPACES`).
        val_fraction: fraction of the training set held out for validation batches
            (ignored when ``val_dataloader`` is given).
        val_dataloader: optional dataloader config whose batches are the validation batches.
        val_pipeline: pipeline of the held-out split; default: the training pipeline without
            its random transforms.
        val_batch_size: validation batch size; default: the training batch size.
        policy_file: file name (in the work dir) of the policy written at the end.
        plot_file: file name (in the work dir) of the plot of the probabilities over time.
        snapshot_interval: ``'epoch'``, or a number of iterations between trajectory snapshots.
        seed: seed of the policy, augmentation and validation generators (and of the held-out
            split). ``None`` (default): the run's seed, ``randomness.seed`` of the config (what
            ``tools/search_det.py --seed`` sets), or 0 when the config sets none; an integer
            here wins over the run's seed.
        bgr_inputs: the images reach the model as BGR (mmdet's default loader).
        log_top: number of most probable entries logged.
        min_size: box drop rule for the augmented copies (px).
        min_visible: box drop rule for the augmented copies (visible fraction).
        copy_backend: route of the hard augmented copies (:mod:`det_autoaug.search.batch_augment`):
            ``'auto'`` (cv2 for uint8 images on the CPU, else torch), ``'torch'`` (what searches
            ran before the cv2 route: reproduces their seeded numbers) or ``'cv2'``.
    """

    priority = 'NORMAL'

    def __init__(self, searcher: Union[str, Mapping, Searcher] = 'DDAS', space: str = 'det_default',
                 val_fraction: float = 0.2, val_dataloader: Optional[dict] = None,
                 val_pipeline: Optional[List[dict]] = None, val_batch_size: Optional[int] = None,
                 policy_file: str = 'policy.json', plot_file: str = 'policy_probs.png',
                 snapshot_interval: Union[str, int] = 'epoch', seed: Optional[int] = None, bgr_inputs: bool = True,
                 log_top: int = 5, min_size: float = MIN_SIZE, min_visible: float = MIN_VISIBLE,
                 copy_backend: str = 'auto') -> None:
        self.entries = get_space(space)
        if copy_backend not in COPY_BACKENDS:
            raise ValueError(f'copy_backend={copy_backend!r}: expected one of {COPY_BACKENDS}')
        self.copy_backend = copy_backend
        if val_dataloader is None and not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f'val_fraction={val_fraction!r}: expected a number in (0, 1), or a val_dataloader')
        if val_dataloader is not None and not isinstance(val_dataloader, dict):
            raise ValueError(f'val_dataloader must be a dataloader config dict, got {type(val_dataloader).__name__}')
        if val_batch_size is not None and int(val_batch_size) < 1:
            raise ValueError(f'val_batch_size={val_batch_size!r}: expected a positive integer')
        if snapshot_interval != 'epoch' and not (isinstance(snapshot_interval, int) and snapshot_interval > 0):
            raise ValueError(f"snapshot_interval={snapshot_interval!r}: expected 'epoch' or a positive integer")
        for name, value in (('policy_file', policy_file), ('plot_file', plot_file)):
            if not isinstance(value, str) or not value:
                raise ValueError(f'{name}={value!r}: expected a non-empty file name')
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f'seed={seed!r}: expected an integer, or None for the run\'s seed')
        if int(log_top) < 1:
            raise ValueError(f'log_top={log_top!r}: expected a positive integer')
        self.searcher = self._searcher(searcher)
        # ``policy``: the learned state (DDAS: a DDASPolicy, DAAS: a CategoricalPolicy; DADA: the searcher itself)
        self.policy = getattr(self.searcher, 'policy', self.searcher)
        self.num_policies = int(self.searcher.num_policies)
        self.space = space
        self.val_fraction = float(val_fraction)
        self.val_dataloader_cfg = val_dataloader
        self.val_pipeline = val_pipeline
        self.val_batch_size = val_batch_size
        self.policy_file = policy_file
        self.plot_file = plot_file
        self.snapshot_interval = snapshot_interval
        self.seed = seed  # resolved in before_run when None
        self.bgr_inputs = bool(bgr_inputs)
        self.log_top = int(log_top)
        self.filter_kwargs = dict(min_size=float(min_size), min_visible=float(min_visible))
        self.search_seconds = 0.0
        self.search_steps = 0
        self.phase_seconds: Dict[str, float] = {}
        self.context: Optional[RunnerSearchContext] = None  # built in before_run
        # A search is resumed from the runner's checkpoints, also when the hook is built without
        # importing det_autoaug.mmdet_plugins: make them loadable and crash-safe (idempotent).
        enable_safe_resume()

    def _searcher(self, searcher: Union[str, Mapping, Searcher]) -> Searcher:
        """The searcher of the ``searcher`` argument, built over :attr:`entries`."""
        if isinstance(searcher, Searcher):
            if tuple(getattr(searcher, 'entries', self.entries)) != tuple(self.entries):
                raise ValueError(f'{type(self).__name__}: the searcher {type(searcher).__name__} was built over other '
                                 'entries than those of the space')
            return searcher
        if isinstance(searcher, str):
            searcher = dict(type=searcher)
        if not isinstance(searcher, Mapping):
            raise ValueError(f"{type(self).__name__}: searcher={searcher!r}, expected a config dict(type='DDAS', ...), "
                             'a type or a Searcher')
        try:
            return build_searcher(searcher, self.entries)
        except ValueError as e:
            raise ValueError(f'{type(self).__name__}(searcher={dict(searcher)!r}): {e}') from None

    @property
    def model_forwards(self) -> int:
        """Batch forwards through the model so far (with or without a backward): the search's cost in
        model passes, comparable across searchers (DDAS K + 2, DADA 4, DAAS 3 per step)."""
        return 0 if self.context is None else self.context.model_forwards

    @property
    def module(self) -> torch.nn.Module:
        """The runner's model without its DDP wrapper (after ``before_run``)."""
        return self.context.module

    # ------------------------------------------------------------------ set-up
    def before_run(self, runner) -> None:
        optim_wrapper = runner.optim_wrapper
        if getattr(optim_wrapper, '_accumulative_counts', 1) != 1:
            raise ValueError(f'{type(self).__name__} needs optim_wrapper.accumulative_counts == 1, got '
                             f'{optim_wrapper._accumulative_counts}')
        if self.seed is None:
            # The config's seed, not runner.seed: an unseeded run would draw a new one on resume,
            # and the held-out split must not change then.
            self.seed = int((runner.cfg.get('randomness') or {}).get('seed') or 0)
        self.val_batch_size = int(self.val_batch_size or runner.train_loop.dataloader.batch_size or 1)
        val_dataset = validation_dataset(runner, self.seed, self.val_fraction, self.val_dataloader_cfg,
                                         self.val_pipeline, hook_name=type(self).__name__)
        self.context = RunnerSearchContext(
            runner.model, optim_wrapper, val_dataset, self.val_batch_size, self.seed, self.searcher.num_grad_slots,
            bgr_inputs=self.bgr_inputs, filter_kwargs=self.filter_kwargs, phase_seconds=self.phase_seconds)
        self.context.copy_backend = self.copy_backend
        self.searcher.setup(self.context)
        self._original_train_step = runner.model.train_step
        runner.model.train_step = self.search_step

    def after_run(self, runner) -> None:
        if hasattr(self, '_original_train_step'):
            runner.model.train_step = self._original_train_step

    # ------------------------------------------------------------------ the step
    def search_step(self, data: dict, optim_wrapper) -> Dict[str, torch.Tensor]:
        """One search step of the searcher; replaces ``model.train_step`` (same signature and return value)."""
        start = time.perf_counter()
        self.context.optim_wrapper = optim_wrapper
        log_vars = self.searcher.step(self.context, data)
        with self.context.phase('policy update'):
            self._log()
        self.search_seconds += time.perf_counter() - start
        self.search_steps += 1
        return log_vars

    def _log(self) -> None:
        """After each step: the searcher's scalars and top entries into the MessageHub, a progress line.

        Scalars go to the logger and the visualizer backends, the top entries by rank
        (``train/ddas_top1_prob``); the infos name them (``ddas_top1: Rotate@3=0.2140``). Every
        tenth of the run a progress line with an ETA names the top entries
        (:class:`~det_autoaug.search.plot.SearchProgress`). A one-epoch search with
        ``snapshot_interval='epoch'`` has a single trajectory snapshot, so the policy is also
        recorded every ``max(1, max_iters // 20)`` iterations for the plot alone: the trajectory,
        whose snapshots the final training's schedule reads per epoch, stays as it is.
        """
        from .plot import SearchProgress
        hub = MessageHub.get_current_instance()
        scalars, infos = self.searcher.log_items(self.log_top)
        for key, value in scalars.items():
            hub.update_scalar(key, value)
        for key, value in infos.items():
            hub.update_info(key, value)
        max_iters = hub.get_info('max_iters')
        if not max_iters:  # no runner's RuntimeInfoHook: no run length to report progress against
            return
        done = int(hub.get_info('iter', 0)) + 1  # RuntimeInfoHook sets 'iter' before the step
        progress = getattr(self, '_progress', None)
        if progress is None or progress.max_iters != int(max_iters):
            one_epoch = self.snapshot_interval == 'epoch' and hub.get_info('max_epochs') == 1
            progress = self._progress = SearchProgress(
                int(max_iters), plot_every=max(1, int(max_iters) // 20) if one_epoch else 0)
        line = progress.update(done, infos, top=min(3, self.log_top))
        if line is not None:
            print_log(line, logger='current')
        if progress.wants_point(done):
            exported = self.searcher.export()
            progress.add_point(done, exported['probs'], exported['apply_prob'])

    # ------------------------------------------------------------------ snapshots, checkpoints, output
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.snapshot_interval != 'epoch' and self.every_n_train_iters(runner, self.snapshot_interval):
            self.searcher.snapshot(runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        if self.snapshot_interval == 'epoch':
            self.searcher.snapshot(runner.epoch + 1)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['ddas_search'] = dict(
            searcher=self.searcher.name, policy=self.searcher.state_dict(), **self.context.state_dict(),
            search_seconds=self.search_seconds, search_steps=self.search_steps, model_forwards=self.model_forwards)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('ddas_search')
        if state is None:
            print_log(f'{type(self).__name__}: the checkpoint holds no search state; the search starts afresh',
                      logger='current', level=30)
            return
        if state.get('searcher', 'ddas') != self.searcher.name:
            raise ValueError(f"the checkpoint holds a {state.get('searcher', 'ddas')!r} search state but this hook "
                             f'runs searcher={self.searcher.name!r}')
        self.searcher.load_state_dict(state['policy'])
        self._pending_gen_states = state

    def before_train(self, runner) -> None:
        state = getattr(self, '_pending_gen_states', None)
        if state is not None:  # the context exists only after before_run, which precedes resume
            self.context.load_state_dict(state)
            self.search_seconds = float(state['search_seconds'])
            self.search_steps = int(state['search_steps'])
            self.context.model_forwards = int(state.get('model_forwards', 0))
            self._pending_gen_states = None
        self._check_rounds(int(getattr(runner, 'max_iters', 0) or 0))

    def _check_rounds(self, max_iters: int) -> None:
        """Warn when a look-ahead search makes far more or fewer rounds than the 12-18 its default
        learning rates were measured with (one policy update per round: with hundreds, an
        information-free reward walks ``p`` far; with a handful, it barely moves)."""
        steps = self.searcher.round_steps
        if not steps or max_iters <= 0:
            return
        rounds = max_iters // steps
        if ROUNDS_MEASURED[0] // 2 <= rounds <= 3 * ROUNDS_MEASURED[1]:
            return
        message = (f'{type(self).__name__}: the look-ahead makes {rounds} rounds of {steps} steps in this '
                   f'{max_iters}-iteration run; its default learning rates were measured with '
                   f'{ROUNDS_MEASURED[0]}-{ROUNDS_MEASURED[1]} rounds: set lookahead_steps to about '
                   f'{max(1, max_iters // 15)} in the searcher config (or scale lr_alpha)')
        warnings.warn(message, UserWarning, stacklevel=2)
        print_log(message, logger='current', level=30)

    def after_train(self, runner) -> None:
        last = runner.epoch if self.snapshot_interval == 'epoch' else runner.iter
        if not self.searcher.trajectory or self.searcher.trajectory[-1]['epoch'] != last:
            self.searcher.snapshot(last)  # the final update is always recorded (REFERENCE note d)
        if not is_main_process():
            return
        work_dir = Path(runner.work_dir)
        meta = dict(iterations=self.search_steps, search_seconds=round(self.search_seconds, 2),
                    model_forwards=self.model_forwards, num_policies=self.num_policies, seed=self.seed,
                    config=str(getattr(runner.cfg, 'filename', '') or ''))
        self.write_policy(work_dir / self.policy_file, meta=dict(meta, **self.searcher.export_meta()))
        self.plot(work_dir / self.plot_file)
        name = type(self).__name__
        print_log(f'{name}: policy written to {work_dir / self.policy_file}', logger='current')
        for path in self.searcher.write_outputs(work_dir, meta):
            print_log(f'{name}: {self.searcher.name} wrote {path}', logger='current')

    def write_policy(self, path: Path, meta: Optional[dict] = None) -> None:
        """Write the current policy and its trajectory in the policy-file schema."""
        from ..policy.policy_file import save_policy_file
        save_policy_file(path, space=self.space, meta=meta, **self.searcher.export())

    def plot(self, path: Optional[Path]):
        """Plot every entry's (DADA: op's) probability and the apply probability over the search.

        The points are the searcher's snapshots, or, when there are more of them, the points
        :meth:`_log` recorded within a one-epoch search (x in iterations). Drawn by
        :func:`det_autoaug.search.plot.plot_policy`.

        Args:
            path: the PNG to write; ``None``: not saved.

        Returns:
            The ``matplotlib.figure.Figure``.
        """
        from .plot import plot_policy
        steps, labels, probs, apply_probs = self.searcher.plot_series()
        unit = 'epoch' if self.snapshot_interval == 'epoch' else 'iteration'
        progress = getattr(self, '_progress', None)
        if progress is not None and len(progress.points) > len(steps):
            (steps, probs, apply_probs), unit = progress.series(), 'iteration'
        return plot_policy(steps, labels, probs, apply_probs, searcher=self.searcher.name,
                           num_steps=self.search_steps, unit=unit, path=path)


_DEPRECATION_SHOWN = False

# The arguments of DDASSearchHook that are DDAS's, and those of them the other searchers take.
_DDAS_ARGS = ('num_policies', 'ops_per_policy', 'init_apply_prob', 'lr_alpha', 'lr_beta', 'explore_ratio')
_SHARED_ARGS = {'ddas': _DDAS_ARGS, 'daas': _DDAS_ARGS[1:5], 'daas_joint': _DDAS_ARGS[1:5]}


@HOOKS.register_module()
class DDASSearchHook(PolicySearchHook):
    """Deprecated: :class:`PolicySearchHook` under its former name and arguments.

    ``DDASSearchHook(searcher='daas', lr_alpha=0.01, searcher_cfg=dict(baseline_decay=0.95), ...)``
    is ``PolicySearchHook(searcher=dict(type='DAAS', lr_alpha=0.01, baseline_decay=0.95), ...)``.

    Args:
        searcher: the searcher's name: ``'ddas'`` (default), ``'dada'``, ``'dada_shared'``,
            ``'daas'`` or ``'daas_joint'``.
        searcher_cfg: the searcher's keyword arguments, overriding the fields below.
        num_policies, ops_per_policy, init_apply_prob, lr_alpha, lr_beta, explore_ratio: the
            searcher's arguments of that name, defaults of ``searcher_cfg``: DDAS reads all of them,
            DAAS and DAAS-joint ``ops_per_policy`` .. ``lr_beta``, DADA none.
        space, val_fraction, ...: as :class:`PolicySearchHook`.
    """

    def __init__(self, space: str = 'det_default', num_policies: int = 3, ops_per_policy: int = 2,
                 init_apply_prob: float = 0.35, lr_alpha: float = 0.005, lr_beta: float = 0.001,
                 explore_ratio: float = 1.0, val_fraction: float = 0.2, val_dataloader: Optional[dict] = None,
                 val_pipeline: Optional[List[dict]] = None, val_batch_size: Optional[int] = None,
                 policy_file: str = 'policy.json', plot_file: str = 'policy_probs.png',
                 snapshot_interval: Union[str, int] = 'epoch', seed: Optional[int] = None, bgr_inputs: bool = True,
                 log_top: int = 5, min_size: float = MIN_SIZE, min_visible: float = MIN_VISIBLE,
                 searcher: str = 'ddas', searcher_cfg: Optional[dict] = None) -> None:
        _warn_deprecated()
        if not isinstance(searcher, str) or searcher not in SEARCHERS:
            raise ValueError(f'searcher={searcher!r} is unknown: expected one of {sorted(SEARCHERS)}')
        if searcher_cfg is not None and not isinstance(searcher_cfg, dict):
            raise ValueError(f'searcher_cfg must be a dict of searcher keyword arguments, got {searcher_cfg!r}')
        given = dict(num_policies=num_policies, ops_per_policy=ops_per_policy, init_apply_prob=init_apply_prob,
                     lr_alpha=lr_alpha, lr_beta=lr_beta, explore_ratio=explore_ratio)
        self.searcher_name = searcher
        # the alias keeps the searchers' former defaults: DDAS's one-step signal, DAAS's paired reward
        former = {'ddas': dict(signal='one_step'), 'daas': dict(reward='paired')}.get(searcher, {})
        self.searcher_cfg = dict(former, **{k: given[k] for k in _SHARED_ARGS.get(searcher, ())},
                                 **(searcher_cfg or {}))
        try:
            built = build_searcher(searcher, get_space(space), self.searcher_cfg)
        except ValueError as e:
            if searcher == 'ddas':  # DDASPolicy's own message names init_tp, num_policies, ...
                raise
            raise ValueError(f'DDASSearchHook(searcher={searcher!r}): {e}') from None
        super().__init__(built, space=space, val_fraction=val_fraction, val_dataloader=val_dataloader,
                         val_pipeline=val_pipeline, val_batch_size=val_batch_size, policy_file=policy_file,
                         plot_file=plot_file, snapshot_interval=snapshot_interval, seed=seed, bgr_inputs=bgr_inputs,
                         log_top=log_top, min_size=min_size, min_visible=min_visible)


def _warn_deprecated() -> None:
    """Say once per process that DDASSearchHook is PolicySearchHook's former name."""
    global _DEPRECATION_SHOWN
    message = ("DDASSearchHook is deprecated: use dict(type='PolicySearchHook', searcher=dict(type='DDAS', ...)) "
               '(the DDAS arguments and searcher_cfg go into the searcher dict)')
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    if not _DEPRECATION_SHOWN:
        _DEPRECATION_SHOWN = True
        print_log(message, logger='current', level=30)
