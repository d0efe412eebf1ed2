"""Does the search help detection? The arms of the detection comparison and the runs that measure them.

Every arm trains the same detector (default the slim CenterNet ``configs/digits/centernet_slim_digits.py``,
the regime of docs/results.md "Sizing", where augmentation matters) on the same embedded digits
data, at the same image scale, for the same epochs and seeds, and is evaluated with mmdet's
``CocoMetric`` (bbox mAP and mAP_50) on the TEST split (``test.json``). Only the augmentation
inserted after ``Resize`` in the training pipeline differs (:func:`augmentation`; what each arm is, and
its searcher: :mod:`det_autoaug.evaluation.arms`; what it inserts here):

- ``none``: no augmentation.
- ``handpicked``: a sensible augmentation without search, scale and translation jitter
  (mmdet's ``RandomAffine``, 0.75-1.25, 10%) plus colour jitter (``PhotoMetricDistortion``).
- ``randaugment``: mmdet's ``RandAugment`` with its default space (``RANDAUG_SPACE``, 15 ops:
  AutoContrast, Equalize, Invert, Rotate, Posterize, Solarize, SolarizeAdd, Color, Contrast,
  Brightness, Sharpness, ShearX/Y, TranslateX/Y, random magnitude), ``aug_num=2`` and uniform
  ``prob``, followed by ``FilterAnnotations(min_gt_bbox_wh=(1, 1))`` because mmdet's geometric
  transforms clip boxes but never drop the degenerate ones.
- ``trivialaugment``: ``PolicyAugment(policy='trivialaugment')`` (TrivialAugment: one of the 20
  distinct ops of ``det_default`` per image, uniformly, at a magnitude uniform from the identity
  to its AutoAugment level-10 strength; no search).
- ``autoaug_v0``: ``PolicyAugment(policy='autoaug_det_v0')`` (the published detection policy).
- ``uniform``: ``PolicyAugment`` with a policy file over the same space as the search
  (``det_default``, 36 entries) with uniform ``probs`` (:func:`write_uniform_policy`); its
  ``apply_prob`` is the searched policy's final ``s`` of the same seed when the ``ddas`` arm runs
  and entries per policy (so ``uniform`` and ``ddas`` differ only in what the search learned about
  ``p``), else the DDAS initial 0.35 and 2 entries; ``settings['uniform_apply_prob']`` and
  ``settings['uniform_ops_per_policy']`` (``--uniform-apply-prob``, ``--uniform-ops-per-policy``) set
  them instead, e.g. to another searcher's.
- ``ddas``: the policy searched by ``PolicySearchHook`` (:func:`run_search`: a Runner built from
  the search config, default ``configs/digits/centernet_slim_digits_ddas.py``, on the same
  training data and scale) with DDAS's defaults (the look-ahead signal, 6 single-entry policies
  per 25-step round: :data:`SEARCHED_ARMS`; :mod:`det_autoaug.search.lookahead`); trained with
  ``PolicyAugment(policy=<policy.json>)``, which follows the searched trajectory epoch by epoch
  (the DDAS schedule; dataloader workers are not persistent so that they see the current epoch).
- ``ddas_one_step``: DDAS with the paper's one-step reward and settings (K = 3 pairs of entries,
  0.005 / 0.001) and the centred estimator, DDAS's default until 2026-12-04; ``ddas_paper``: the
  same with the published estimator; ``ddas_lookahead``: the look-ahead with 3 proposals per round;
  ``daas_paired``: DAAS with its one-step paired reward (its default until 2026-12-04).
- ``dada``, ``daas``: the same search config, hook and budget with the searcher DADA or DAAS at
  its defaults (DAAS: the look-ahead reward in 25-step rounds; the hook's DDAS arguments go:
  ``set_hook_searcher``), trained with their
  policy files the same way (DADA's holds sub-policies, each op with its own probability and
  magnitude).

Every search's cost is reported: wall time of the search run, the hook's own ``search_seconds``
and ``search_steps``, and model passes (batch forwards through the detector, with or without a
backward, counted by the hook: look-ahead DDAS 1 per step plus ``(K + 1)(L + V)`` per round,
one-step DDAS ``num_policies + 2`` per step, DADA 4, DAAS 3 with its paired reward).

Schedule (all arms and the search, :func:`configure_run`): SGD from the config, linear warm-up
over the first ``min(200, iterations / 4)`` iterations, then cosine annealing per epoch to 1% of
the lr. No validation during training; no checkpoints.

The loop over seeds and arms is :func:`det_autoaug.evaluation.compare_det_run.run_comparison`; the
table, summary and plot :mod:`det_autoaug.evaluation.compare_det_report`; the command line
``tools/compare_det.py``. The detection planted-harm harness (:mod:`det_autoaug.evaluation.planted_harm_det`)
trains and searches with the same functions.
"""
from __future__ import annotations

import inspect
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .arms import RANDOM, SEARCHED, get_arm, task_arms

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / 'configs' / 'digits' / 'centernet_slim_digits.py'
DEFAULT_SEARCH_CONFIG = ROOT / 'configs' / 'digits' / 'centernet_slim_digits_ddas.py'
#: The detection comparison's arms, in its order (rows of :data:`det_autoaug.evaluation.arms.ARMS`).
ARMS = task_arms('none', 'handpicked', 'randaugment', 'trivialaugment', 'autoaug_v0', 'uniform', 'ddas',
                 'ddas_one_step', 'ddas_paper', 'ddas_lookahead', 'dada', 'daas', 'daas_paired')
# The hand-picked arm: scale and translation jitter plus colour jitter with mmdet's own transforms
# (as configs/digits/centernet_slim_digits_handpicked.py); degenerate boxes are dropped after.
HANDPICKED = [dict(type='RandomAffine', max_rotate_degree=0.0, max_translate_ratio=0.1,
                   scaling_ratio_range=(0.75, 1.25), max_shear_degree=0.0, border=(0, 0),
                   border_val=(114, 114, 114)),
              dict(type='PhotoMetricDistortion'), dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1))]
# What the arms without a policy file insert. RandAugment: mmdet's defaults (RANDAUG_SPACE, aug_num=2,
# uniform prob); its geometric ops leave degenerate boxes behind, which FilterAnnotations drops (an
# image left without boxes is replaced by the dataset with another one).
_PIPELINES = {
    'none': [],
    'handpicked': HANDPICKED,
    'randaugment': [dict(type='RandAugment'), dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1))],
    'trivialaugment': [dict(type='PolicyAugment', policy='trivialaugment')],
    'autoaug_v0': [dict(type='PolicyAugment', policy='autoaug_det_v0')],
}
#: The arms trained with a policy file: the random control (written by :func:`write_uniform_policy`) and
#: the searched arms (written by their search).
POLICY_FILE_KINDS = (RANDOM, SEARCHED)
# One look-ahead round per 25 steps (12 in a 300-step search); the one-step arms at the paper's CIFAR
# learning rates (the search config's until 2026-12-04).
_SEARCH_ARGS = dict({name: dict(lookahead_steps=25, lookahead_val_batches=4)
                     for name in ('ddas', 'ddas_lookahead', 'daas')},
                    **{name: dict(lr_alpha=0.005, lr_beta=0.001) for name in ('ddas_one_step', 'ddas_paper',
                                                                              'daas_paired')})
#: Searched arms: (searcher name, its arguments on top of the search config's).
SEARCHED_ARMS = {name: get_arm(name).searcher_cfg(**_SEARCH_ARGS.get(name, {}))
                 for name in ARMS if get_arm(name).kind == SEARCHED}
SEARCH_SPACE = 'det_default'
INIT_APPLY_PROB = 0.35
QUICK_SIZES = {'train': 24, 'val': 4, 'test': 4}
FULL_SIZES = {'train': 1500, 'val': 100, 'test': 300}
METRICS = ('bbox_mAP', 'bbox_mAP_50')


def quick_rounds(hook: dict) -> None:
    """Rounds of 2 steps and one validation batch for a searcher that takes ``lookahead_steps``
    (DDAS, DAAS; read with their look-ahead signal only), so that a round completes in the few
    steps of the quick mode."""
    from ..search.searchers import searcher_class  # torch: imported when a search runs

    searcher = hook.get('searcher', 'DDAS')
    searcher = dict(type=searcher) if isinstance(searcher, str) else dict(searcher)
    if 'lookahead_steps' in inspect.signature(searcher_class(searcher.get('type', 'DDAS')).__init__).parameters:
        hook['searcher'] = dict(searcher, lookahead_steps=2, lookahead_val_batches=1)


def set_data(cfg, data_root: str) -> None:
    """Point every dataloader and evaluator of ``cfg`` at ``data_root``; test on test.json."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader) is not None:
            cfg[loader]['dataset']['data_root'] = data_root
    cfg.test_evaluator = dict(type='CocoMetric', ann_file=data_root + 'test.json', metric='bbox',
                              format_only=False, backend_args=None)


def set_scale(pipeline: List[dict], scale: int) -> None:
    """Make every ``Resize`` of ``pipeline`` resize to ``(scale, scale)``.

    Raises:
        ValueError: the pipeline has no ``Resize``.
    """
    resizes = [t for t in pipeline if t['type'] == 'Resize']
    if not resizes:
        raise ValueError(f'the pipeline has no Resize to set the scale on: {[t["type"] for t in pipeline]}')
    for t in resizes:
        t['scale'] = (scale, scale)


def augmentation(arm: str, policy_path: Optional[str]) -> List[dict]:
    """The transforms ``arm`` inserts after Resize in the training pipeline.

    Args:
        arm: one of :data:`ARMS`.
        policy_path: the policy file of ``uniform`` and the searched arms; unused by the others.

    Raises:
        ValueError: an unknown arm, or an arm that needs a policy file without one.
    """
    if arm not in ARMS:
        raise ValueError(f'unknown arm {arm!r}, expected one of {ARMS}')
    if get_arm(arm).kind in POLICY_FILE_KINDS:
        if policy_path is None:
            raise ValueError(f'arm {arm!r} needs a policy file')
        return [dict(type='PolicyAugment', policy=policy_path)]
    return [dict(t) for t in _PIPELINES[arm]]


def configure_run(cfg, *, data_root: str, scale: int, epochs: int, seed: int, work_dir: Path, num_workers: int,
                  name: str, iters_per_epoch: int) -> None:
    """Settings shared by every training run and the search: data, schedule, logging, no val (in place)."""
    cfg.custom_imports = dict(imports=['det_autoaug.mmdet_plugins'], allow_failed_imports=False)
    set_data(cfg, data_root)
    set_scale(cfg.train_dataloader.dataset.pipeline, scale)
    set_scale(cfg.test_dataloader.dataset.pipeline, scale)
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        loader.num_workers = num_workers
        # Not persistent: PolicyAugment reads the current epoch for a searched trajectory.
        loader.persistent_workers = False
    cfg.val_dataloader = None
    cfg.val_cfg = None
    cfg.val_evaluator = None
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs + 1)
    warmup = max(1, min(200, (epochs * iters_per_epoch) // 4))
    base_lr = cfg.optim_wrapper.optimizer.lr
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup),
        dict(type='CosineAnnealingLR', begin=0, end=epochs, by_epoch=True, eta_min=base_lr * 0.01),
    ]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.log_level = 'WARNING'
    cfg.work_dir = str(work_dir)
    # A unique name: mmengine keys its logger and visualizer instances by experiment name.
    cfg.experiment_name = f'{name}_{time.strftime("%Y%m%d_%H%M%S")}_{os.getpid()}'
    if cfg.get('visualizer') is not None:
        # Else every later run logs its scalars into the first run's folder (a global instance).
        cfg.visualizer.name = cfg.experiment_name
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.resume = False
    cfg.load_from = None


def train_and_test(config: str, arm: str, *, policy_path: Optional[str], data_root: str, scale: int,
                   epochs: int, seed: int, work_dir: Path, num_workers: int, iters_per_epoch: int,
                   score_thr: float = 0.001) -> Dict[str, Any]:
    """Train ``config`` with ``arm``'s augmentation and return its COCO metrics on test.json.

    Returns:
        ``{'bbox_mAP', 'bbox_mAP_50', 'no_detections', 'train_seconds', 'test_seconds'}``
        (``no_detections``: the detector found no box on the test set, its mAPs are 0).
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(config)
    configure_run(cfg, data_root=data_root, scale=scale, epochs=epochs, seed=seed, work_dir=work_dir,
                  num_workers=num_workers, name=f'{arm}_seed{seed}', iters_per_epoch=iters_per_epoch)
    cfg.model.test_cfg.score_thr = score_thr
    pipeline = list(cfg.train_dataloader.dataset.pipeline)
    at = max(i for i, t in enumerate(pipeline) if t['type'] == 'Resize') + 1
    pipeline[at:at] = augmentation(arm, policy_path)
    cfg.train_dataloader.dataset.pipeline = pipeline
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    trained = time.perf_counter()
    metrics = runner.test()
    tested = time.perf_counter()
    # CocoMetric returns no keys when the detector output no box at all (an undertrained
    # detector): that is an mAP of 0, recorded as such.
    out: Dict[str, Any] = {m: float(metrics.get(f'coco/{m}', 0.0)) for m in METRICS}
    out['no_detections'] = f'coco/{METRICS[0]}' not in metrics
    out.update(train_seconds=round(trained - start, 1), test_seconds=round(tested - trained, 1))
    return out


def run_search(config: str, *, searcher: str = 'ddas', data_root: str, scale: int, epochs: int, seed: int,
               work_dir: Path, num_workers: int, iters_per_epoch: int, quick: bool = False) -> Dict[str, Any]:
    """Run the search of arm ``searcher`` (:data:`SEARCHED_ARMS`; a Runner from ``config``) and return the
    policy path and its cost.

    Raises:
        SystemExit: ``config`` has no search hook.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    from ..search.hook_cfg import search_hooks, set_hook_searcher

    cfg = Config.fromfile(config)
    hooks = search_hooks(cfg)
    if not hooks:
        raise SystemExit(f'--search-config {config} has no search hook (PolicySearchHook) in custom_hooks')
    name, searcher_cfg = SEARCHED_ARMS[searcher]
    set_hook_searcher(hooks[0], name, searcher_cfg)
    if quick:
        quick_rounds(hooks[0])
    configure_run(cfg, data_root=data_root, scale=scale, epochs=epochs, seed=seed, work_dir=work_dir,
                  num_workers=num_workers, name=f'search_{searcher}_seed{seed}', iters_per_epoch=iters_per_epoch)
    start = time.perf_counter()
    Runner.from_cfg(cfg).train()
    wall = time.perf_counter() - start
    path = work_dir / hooks[0].get('policy_file', 'policy.json')
    policy = json.loads(path.read_text())
    meta = policy.get('meta', {})
    return dict(searcher=searcher, policy=str(path), seed=seed, epochs=epochs, wall_seconds=round(wall, 1),
                search_seconds=float(meta['search_seconds']), search_steps=int(meta['iterations']),
                num_policies=int(meta['num_policies']), model_passes=int(meta['model_forwards']),
                apply_prob=float(policy['apply_prob']), top_entries=top_entries(policy, 8))


def top_entries(policy: Dict[str, Any], n: int) -> List[Dict[str, Any]]:
    """The ``n`` most probable entries of a policy file (as a dict), with ``p / uniform``."""
    probs = policy['probs']
    order = sorted(range(len(probs)), key=lambda i: -probs[i])[:n]
    out = []
    for i in order:
        e = policy['entries'][i]
        label = e['op'] if e.get('level') is None else f"{e['op']}@{e['level']:g}"
        out.append(dict(entry=label, p=round(probs[i], 4), ratio=round(probs[i] * len(probs), 2)))
    return out


def write_uniform_policy(path: Path, apply_prob: float, ops_per_policy: int = 2) -> str:
    """Write a policy file over :data:`SEARCH_SPACE` with uniform probs (the random-policy control); its path."""
    from ..utils.uniform_policy import write_uniform_policy as write_uniform

    write_uniform(path, SEARCH_SPACE, apply_prob, ops_per_policy=ops_per_policy,
                  meta=dict(note='uniform control for tools/compare_det.py'))
    return str(path)
