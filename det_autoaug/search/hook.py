"""``DDASSearchHook``: augmentation policy search while an MMEngine runner trains a detector.

The hook is the search context of :mod:`det_autoaug.search.searchers`: it offers the primitives
(loss and gradient into a buffer slot, hard and differentiable augmentation, a model step with
given gradient coefficients, perturbed weights, validation batches) and the searcher selected by
``searcher='ddas'|'dada'|'daas'|'daas_joint'`` decides what one step does (``'daas_joint'``:
the architecture of a supernet backbone is searched too, classification only). DDAS is the
default; its step is the one below, unchanged.

How the hook takes over the training step: in ``before_run`` it replaces the model's
``train_step`` by :meth:`DDASSearchHook.search_step` (a step wrapper) and restores it in
``after_run``. A wrapper rather than a custom loop keeps the user's loop (epoch- or
iteration-based), schedulers, logging, checkpointing and evaluation exactly as configured; the
hook is the only line a user adds to a stock config.

One search step (REFERENCE section 1), with ``K = num_policies``:

1. draw K policies (ordered pairs of space entries) with the policy generator;
2. gradient of the loss on the clean batch -> flat buffer 0; on copy k augmented with
   policy k -> buffer k (one copy at a time: never the activations of two copies alive);
3. write ``(1 - s) g_0 + s sum_k w_k g_k`` into the parameters' grads and step the optimiser;
4. gradient of the loss on a held-out validation batch at the new weights -> buffer K+1;
5. inner products <g_k, g_V>, rewards, policy update (:class:`det_autoaug.search.core.DDASPolicy`).

Validation batches come from a held-out split of the training set (``val_fraction``; the train
dataloader is rebuilt on the rest), or from ``val_dataloader``. They are drawn by the hook's own
generator so that a resumed search sees the same batches as an uninterrupted one.

Distributed: under DDP every backward all-reduces the gradients, so every rank holds the same
g_k and g_V; all ranks draw the policies from identically seeded generators (the augmentation
parameters use a rank-specific one), so the policy stays identical on every rank.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.dist import get_rank, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import MessageHub, print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..ops.boxes import MIN_SIZE, MIN_VISIBLE
from ..ops.spaces import get_space
from ..utils.checkpoint import enable_safe_resume
from .searchers import SEARCHERS, build_searcher
from .searchers.base import SearchContextMixin
from .grad_buffers import FlatGradBuffers

# Pipeline transforms dropped from the training pipeline to make the default validation
# pipeline: validation batches must be un-augmented (REFERENCE section 1, step 5).
RANDOM_TRANSFORM_PREFIXES = ('Random', 'DA', 'PolicyAugment', 'AutoAugment', 'RandAugment',
                             'PhotoMetricDistortion', 'Expand', 'MinIoURandomCrop', 'CutOut',
                             'Mosaic', 'MixUp', 'YOLOXHSVRandomAug', 'CachedMosaic', 'CachedMixUp')


def default_val_pipeline(train_pipeline: Sequence[dict]) -> List[dict]:
    """The training pipeline without its random augmentations (types in RANDOM_TRANSFORM_PREFIXES)."""
    return [copy.deepcopy(t) for t in train_pipeline
            if not str(t.get('type', '')).startswith(RANDOM_TRANSFORM_PREFIXES)]


@HOOKS.register_module()
class DDASSearchHook(SearchContextMixin, Hook):
    """Search an augmentation policy with DDAS while the runner trains.

    Args:
        space: name of the search space (:data:`det_autoaug.ops.spaces.SPACES`).
        num_policies: K, augmented copies per step (official: 3).
        ops_per_policy: entries per policy (official: 2).
        init_apply_prob: initial s = sigmoid(beta) (official: 0.35).
        lr_alpha: Adam learning rate of alpha (official CIFAR: 0.005).
        lr_beta: Adam learning rate of beta (official: 0.001).
        explore_ratio: probability of a uniform proposal (official: 1.0); below 1 the
            proposals are a mixture and the weights are importance-corrected.
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
        searcher: ``'ddas'`` (default), ``'dada'``, ``'daas'`` or ``'daas_joint'``
            (:mod:`det_autoaug.search.searchers`). DDAS reads ``num_policies`` .. ``explore_ratio``;
            DAAS and DAAS-joint read ``ops_per_policy``, ``init_apply_prob``, ``lr_alpha`` and
            ``lr_beta``; DADA none of them. ``'daas_joint'`` needs a model with choice blocks
            (``DAChoiceNet`` backbone without ``arch``; checked in ``before_run``) and writes
            ``arch.json`` beside the policy.
        searcher_cfg: keyword arguments of the searcher, overriding the fields above (e.g.
            ``dict(estimator='paper')`` for the published DDAS update, ``dict(lr=3e-3, top_k=10)`` for DADA, ``dict(baseline_decay=0.95)`` for DAAS,
            ``dict(lr_arch=3e-3, tau=5.0, tau_min=0.5, tau_decay=0.999)`` for DAAS-joint).
    """

    priority = 'NORMAL'

    def __init__(self, space: str = 'det_default', num_policies: int = 3, ops_per_policy: int = 2,
                 init_apply_prob: float = 0.35, lr_alpha: float = 0.005, lr_beta: float = 0.001,
                 explore_ratio: float = 1.0, val_fraction: float = 0.2, val_dataloader: Optional[dict] = None,
                 val_pipeline: Optional[List[dict]] = None, val_batch_size: Optional[int] = None,
                 policy_file: str = 'policy.json', plot_file: str = 'policy_probs.png',
                 snapshot_interval: Union[str, int] = 'epoch', seed: Optional[int] = None, bgr_inputs: bool = True,
                 log_top: int = 5, min_size: float = MIN_SIZE, min_visible: float = MIN_VISIBLE,
                 searcher: str = 'ddas', searcher_cfg: Optional[dict] = None) -> None:
        self.entries = get_space(space)
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
        if not isinstance(searcher, str) or searcher not in SEARCHERS:
            raise ValueError(f'searcher={searcher!r} is unknown: expected one of {sorted(SEARCHERS)}')
        if searcher_cfg is not None and not isinstance(searcher_cfg, dict):
            raise ValueError(f'searcher_cfg must be a dict of searcher keyword arguments, got {searcher_cfg!r}')
        # The hook's DDAS fields are the defaults of the searchers that share them; searcher_cfg
        # overrides them. The searchers validate their hyper-parameters (ValueError naming them).
        shared = dict(ddas=dict(num_policies=num_policies, ops_per_policy=ops_per_policy,
                                init_apply_prob=init_apply_prob, lr_alpha=lr_alpha, lr_beta=lr_beta,
                                explore_ratio=explore_ratio),
                      daas=dict(ops_per_policy=ops_per_policy, init_apply_prob=init_apply_prob, lr_alpha=lr_alpha,
                                lr_beta=lr_beta),
                      dada=dict())
        shared['daas_joint'] = shared['daas']
        shared = shared.get(searcher, {})  # DADA (published or shared) reads none of them
        self.searcher_name = searcher
        self.searcher_cfg = dict(shared, **(searcher_cfg or {}))
        try:
            self.searcher = build_searcher(searcher, self.entries, self.searcher_cfg)
        except ValueError as e:
            if searcher == 'ddas':  # DDASPolicy's own message names init_tp, num_policies, ...
                raise
            raise ValueError(f'DDASSearchHook(searcher={searcher!r}): {e}') from None
        # ``policy``: the learned state (DDASPolicy for DDAS and DAAS, the searcher itself for DADA)
        self.policy = getattr(self.searcher, 'policy', self.searcher)
        self.num_policies = int(getattr(self.searcher, 'num_policies', 1))
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
        # batch forwards through the model (with or without a backward): the search's cost in
        # model passes, comparable across searchers (DDAS K + 2, DADA 4, DAAS 3 per step; 2 with reward="val_loss")
        self.model_forwards = 0
        self.phase_seconds: Dict[str, float] = {}
        # A search is resumed from the runner's checkpoints, also when the hook is built without
        # importing det_autoaug.mmdet_plugins: make them loadable and crash-safe (idempotent).
        enable_safe_resume()

    # ------------------------------------------------------------------ set-up
    def before_run(self, runner) -> None:
        optim_wrapper = runner.optim_wrapper
        if getattr(optim_wrapper, '_accumulative_counts', 1) != 1:
            raise ValueError('DDASSearchHook needs optim_wrapper.accumulative_counts == 1, got '
                             f'{optim_wrapper._accumulative_counts}')
        if self.seed is None:
            # The config's seed, not runner.seed: an unseeded run would draw a new one on resume,
            # and the held-out split must not change then.
            self.seed = int((runner.cfg.get('randomness') or {}).get('seed') or 0)
        self.policy_gen = torch.Generator().manual_seed(self.seed)
        self.aug_gen = torch.Generator().manual_seed(self.seed + 1000 * (get_rank() + 1))
        self.val_gen = torch.Generator().manual_seed(self.seed + 1)
        self._val_order: List[int] = []
        self._setup_val_data(runner)
        model = runner.model
        self.module = model.module if is_model_wrapper(model) else model
        self.model = self.module
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.buffers = FlatGradBuffers(self.params, self.searcher.num_grad_slots)
        self.device = self.params[0].device
        self.searcher.setup(self)
        self._runner_model = model
        self._original_train_step = model.train_step
        model.train_step = self.search_step

    def _setup_val_data(self, runner) -> None:
        loop = runner.train_loop
        batch_size = loop.dataloader.batch_size
        self.val_batch_size = int(self.val_batch_size or batch_size or 1)
        if self.val_dataloader_cfg is not None:
            self.val_dataset = runner.build_dataloader(self.val_dataloader_cfg, seed=self.seed).dataset
            return
        full = loop.dataloader.dataset
        if not hasattr(full, 'get_subset'):
            raise ValueError(f'DDASSearchHook cannot hold out a split of a {type(full).__name__}; '
                             'give the hook a val_dataloader instead of val_fraction')
        n = len(full)
        n_val = int(round(n * self.val_fraction))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f'val_fraction={self.val_fraction} of {n} training images leaves an empty split')
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])
        train_cfg = runner.cfg.get('train_dataloader') or runner._train_dataloader
        train_cfg = copy.deepcopy(dict(train_cfg))
        pipeline = self.val_pipeline or default_val_pipeline(train_cfg['dataset'].get('pipeline', []))
        self.val_dataset = full.get_subset(val_idx)
        self.val_dataset.pipeline = Compose(pipeline)
        train_cfg['dataset'] = full.get_subset(train_idx)
        loop.dataloader = runner.build_dataloader(train_cfg, seed=runner.seed)
        if isinstance(loop, EpochBasedTrainLoop):
            loop._max_iters = loop._max_epochs * len(loop.dataloader)
        elif isinstance(loop, IterBasedTrainLoop):
            from mmengine.runner.loops import _InfiniteDataloaderIterator
            loop.dataloader_iterator = _InfiniteDataloaderIterator(loop.dataloader)
        print_log(f'DDASSearchHook: {len(train_idx)} training and {n_val} held-out validation images',
                  logger='current')

    def after_run(self, runner) -> None:
        if hasattr(self, '_original_train_step'):
            runner.model.train_step = self._original_train_step

    # ------------------------------------------------------------------ search-context primitives
    @contextmanager
    def phase(self, name: str):
        """Accumulate wall time per phase of the step (read by benchmarks/bench_search.py)."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + time.perf_counter() - start

    def train_loss_grad(self, batch: dict) -> Dict[str, torch.Tensor]:
        """Forward and backward through the runner's (possibly DDP-wrapped) model."""
        model, optim_wrapper = self._runner_model, self._optim_wrapper
        self.model_forwards += 1
        with optim_wrapper.optim_context(model):
            data = self.module.data_preprocessor(batch, training=True)
            losses = model._run_forward(data, mode='loss')
        loss, log_vars = self.module.parse_losses(losses)
        optim_wrapper.backward(loss)
        return log_vars

    def forward_loss(self, batch: dict):
        self.model_forwards += 1
        with self._optim_wrapper.optim_context(self.module):
            data = self.module.data_preprocessor(batch, training=True)
            losses = self.module._run_forward(data, mode='loss')
        return self.module.parse_losses(losses)

    def backward(self, loss: torch.Tensor) -> None:
        self._optim_wrapper.backward(loss)

    def optimizer_step(self) -> None:
        self._optim_wrapper.step()

    def zero_grad(self) -> None:
        self._optim_wrapper.zero_grad()

    def lr(self) -> float:
        return float(self._optim_wrapper.get_lr()['lr'][0])

    def loss_scale(self) -> float:
        scaler = getattr(self._optim_wrapper, 'loss_scaler', None)
        return float(scaler.get_scale()) if scaler is not None and hasattr(scaler, 'get_scale') else 1.0

    def optimizer_state(self) -> dict:
        return self._optim_wrapper.state_dict()

    def load_optimizer_state(self, state) -> None:
        self._optim_wrapper.load_state_dict(state)

    def next_val_batch(self) -> dict:
        if len(self._val_order) < self.val_batch_size:
            self._val_order += torch.randperm(len(self.val_dataset), generator=self.val_gen).tolist()
        idx, self._val_order = self._val_order[:self.val_batch_size], self._val_order[self.val_batch_size:]
        return pseudo_collate([self.val_dataset[i] for i in idx])

    # ------------------------------------------------------------------ the step
    def search_step(self, data: dict, optim_wrapper) -> Dict[str, torch.Tensor]:
        """One search step of the searcher; replaces ``model.train_step`` (same signature and return value)."""
        start = time.perf_counter()
        self._optim_wrapper = optim_wrapper
        log_vars = self.searcher.step(self, data, optim_wrapper)
        with self.phase('policy update'):
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
            searcher=self.searcher.name, policy=self.searcher.state_dict(), policy_gen=self.policy_gen.get_state(),
            aug_gen=self.aug_gen.get_state(), val_gen=self.val_gen.get_state(),
            val_order=list(self._val_order), search_seconds=self.search_seconds,
            search_steps=self.search_steps, model_forwards=self.model_forwards)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('ddas_search')
        if state is None:
            print_log('DDASSearchHook: the checkpoint holds no search state; the search starts afresh',
                      logger='current', level=30)
            return
        if state.get('searcher', 'ddas') != self.searcher.name:
            raise ValueError(f"the checkpoint holds a {state.get('searcher', 'ddas')!r} search state but this hook "
                             f'runs searcher={self.searcher.name!r}')
        self.searcher.load_state_dict(state['policy'])
        self._pending_gen_states = state

    def before_train(self, runner) -> None:
        state = getattr(self, '_pending_gen_states', None)
        if state is not None:  # generators exist only after before_run, which precedes resume
            self.policy_gen.set_state(state['policy_gen'])
            self.aug_gen.set_state(state['aug_gen'])
            self.val_gen.set_state(state['val_gen'])
            self._val_order = list(state['val_order'])
            self.search_seconds = float(state['search_seconds'])
            self.search_steps = int(state['search_steps'])
            self.model_forwards = int(state.get('model_forwards', 0))
            self._pending_gen_states = None

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
        print_log(f'DDASSearchHook: policy written to {work_dir / self.policy_file}', logger='current')
        for path in self.searcher.write_outputs(work_dir, meta):
            print_log(f'DDASSearchHook: {self.searcher.name} wrote {path}', logger='current')

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
