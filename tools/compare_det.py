#!/usr/bin/env python
"""Does the search help detection? Train the same detector with each augmentation arm.

Every arm trains the same detector (the CONFIG, default the slim CenterNet
``configs/digits/centernet_slim_digits.py``, the regime of docs/results.md "Sizing", where
augmentation matters; the slim RetinaNet configs still work) on the same embedded digits data, at the same image
scale, for the same epochs and seeds, and is evaluated with mmdet's ``CocoMetric`` (bbox mAP and
mAP_50) on the TEST split (``test.json``). Only the augmentation inserted after ``Resize`` in
the training pipeline differs:

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
  (``det_default``, 36 entries) with uniform ``probs``; its ``apply_prob`` is the searched
  policy's final ``s`` of the same seed when the ``ddas`` arm runs (so ``uniform`` and ``ddas``
  differ only in what the search learned about ``p``), else the DDAS initial 0.35.
- ``ddas``: the policy searched by ``PolicySearchHook`` (a Runner built from the search config,
  default ``configs/digits/centernet_slim_digits_ddas.py``, on the same training data and
  scale, for ``--search-epochs`` epochs), one search per seed unless ``--search-once``; trained
  with ``PolicyAugment(policy=<work_dir>/search_ddas_seed<k>/policy.json)``, which follows the
  searched trajectory epoch by epoch (the DDAS schedule; dataloader workers are not
  persistent so that they see the current epoch).
- ``ddas_paper``: as ``ddas`` with the published estimator (``searcher_cfg=dict(estimator='paper')``).
- ``ddas_lookahead``: as ``ddas`` with the look-ahead signal (25-step rounds, single-entry
  policies, ``lr_alpha`` 0.2: :data:`SEARCHED_ARMS`; :mod:`det_autoaug.search.lookahead`).
- ``dada``, ``daas``: the same search config, hook and budget with the searcher DADA or
  DAAS (the hook's DDAS hyper-parameters that a searcher does not read are ignored),
  trained with their policy files the same way (DADA's holds sub-policies, each op with its
  own probability and magnitude).

Every search's cost is reported: wall time of the search run, the hook's own
``search_seconds`` and ``search_steps``, and model passes (batch forwards through the
detector, with or without a backward, counted by the hook: DDAS ``num_policies + 2`` per step,
DADA 4, DAAS 3 with its default paired reward).

Schedule (all arms and the search): SGD from the config, linear warm-up over the first
``min(200, iterations / 4)`` iterations, then cosine annealing per epoch to 1% of the lr. No
validation during training; no checkpoints.

Outputs in ``--work-dir`` (default ``./work_dirs/compare_det`` in the current directory): ``results.json`` (settings, every
run, per-arm mean/std, search cost; rewritten after each run, so a killed run keeps what it
finished; ``--resume`` skips the runs already in it), ``results.md`` (the table) and
``compare_det.png`` (bar chart of the mean with the sample std as error bars, per-seed dots).

Modes:
    --quick: 24/4/4 images of 48 px in a temporary folder, 1 epoch, seed 0, all nine arms, a
        1-epoch search (3 search steps), one torch thread. Sized for the test suite: 39 s on the
        busy 2-core development machine.
    full (default): 1500/100/300 images (train/val/test; val is unused: the search holds out
        20% of the training images itself) of the embedded builder (96-128 px) in
        ``work_dir/data``, Resize scale 96, 24 epochs (4,500 iterations of batch 8), seeds 0 1 2,
        a 2-epoch search per seed (``--search-once``: seed 0 only). One slim CenterNet training
        run took 260-330 s on one core of the 2-core development machine with ``--threads 1``
        (docs/results.md, "Sizing"): nine arms x 3 seeds is about 2.5 hours on one core. The
        earlier RetinaNet comparison (docs/results.md, "Detection") used
        ``configs/digits/retinanet_slim_digits.py``, 1000 images, scale 80 and 6 epochs.

Examples:
    python tools/compare_det.py --quick
    nohup python tools/compare_det.py --device cpu > compare.log 2>&1 &
    python tools/compare_det.py --arms none ddas --seeds 0 --epochs 2
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / 'configs' / 'digits' / 'centernet_slim_digits.py'
DEFAULT_SEARCH_CONFIG = ROOT / 'configs' / 'digits' / 'centernet_slim_digits_ddas.py'
ARMS = ('none', 'handpicked', 'randaugment', 'trivialaugment', 'autoaug_v0', 'uniform', 'ddas', 'ddas_paper',
        'ddas_lookahead', 'dada', 'daas')
# The hand-picked arm: scale and translation jitter plus colour jitter with mmdet's own transforms
# (as configs/digits/centernet_slim_digits_handpicked.py); degenerate boxes are dropped after.
HANDPICKED = [dict(type='RandomAffine', max_rotate_degree=0.0, max_translate_ratio=0.1,
                   scaling_ratio_range=(0.75, 1.25), max_shear_degree=0.0, border=(0, 0),
                   border_val=(114, 114, 114)),
              dict(type='PhotoMetricDistortion'), dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1))]
# Searched arms: (searcher name, its arguments on top of the search config's)
SEARCHED_ARMS = {
    'ddas': ('ddas', {}),
    'ddas_paper': ('ddas', dict(estimator='paper')),
    # one policy update per 25-step round: a larger Adam step; single-entry policies
    'ddas_lookahead': ('ddas', dict(signal='lookahead', lookahead_steps=25, lookahead_val_batches=4,
                                    ops_per_policy=1, lr_alpha=0.2, lr_beta=0.04)),
    'dada': ('dada', {}),
    'daas': ('daas', {}),
}
SEARCH_SPACE = 'det_default'
INIT_APPLY_PROB = 0.35
QUICK_SIZES = {'train': 24, 'val': 4, 'test': 4}
FULL_SIZES = {'train': 1500, 'val': 100, 'test': 300}
METRICS = ('bbox_mAP', 'bbox_mAP_50')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', default=None,
                        help=f'training config of the detector (default: {DEFAULT_CONFIG.relative_to(ROOT)})')
    parser.add_argument('--search-config', default=None,
                        help=f'config with a search hook (default: {DEFAULT_SEARCH_CONFIG.relative_to(ROOT)})')
    parser.add_argument('--quick', action='store_true', help='tiny run for the test suite (see the module doc)')
    parser.add_argument('--seeds', type=int, nargs='+', default=None, help='training seeds (default 0 1 2; quick: 0)')
    parser.add_argument('--arms', nargs='+', default=list(ARMS), choices=ARMS, help='arms to run, in this order')
    parser.add_argument('--work-dir', default=None, help='output folder (default work_dirs/compare_det)')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto'")
    parser.add_argument('--data', default=None,
                        help='dataset folder (built there by ensure_det_digits when missing; '
                             'default: the cache folder, quick: a temporary folder)')
    parser.add_argument('--epochs', type=int, default=None, help='training epochs per run (default 24; quick: 1)')
    parser.add_argument('--search-epochs', type=int, default=None, help='search epochs (default 2; quick: 1)')
    parser.add_argument('--policy-seed', type=int, default=None,
                        help='train every seed with the policies searched with this seed (searched once; with '
                             '--resume, a search already in results.json is reused: runs of more seeds in parallel '
                             'work dirs share one search)')
    parser.add_argument('--search-once', action='store_true',
                        help='search with the first seed only and train every seed with that policy')
    parser.add_argument('--scale', type=int, default=None, help='Resize scale, px (default 96; quick: 48)')
    parser.add_argument('--num-workers', type=int, default=None, help='dataloader workers (default 1; quick: 0)')
    parser.add_argument('--sizes', type=int, nargs=3, default=None, metavar=('TRAIN', 'VAL', 'TEST'),
                        help='split sizes of the embedded set, built in work_dir/data unless --data '
                             '(default 1000 100 300; quick: 40 8 8 in a temporary folder)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s choice; quick: 1, far faster on a busy machine)')
    parser.add_argument('--score-thr', type=float, default=0.001,
                        help='test score threshold (default 0.001: an undertrained detector from scratch '
                             'scores below the configs\' 0.05 and would get mAP 0 without a box)')
    parser.add_argument('--resume', action='store_true', help='skip the runs already in work_dir/results.json')
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Dict[str, Any]:
    """Fill the defaults of the chosen mode."""
    quick = args.quick
    pick = lambda value, full, small: value if value is not None else (small if quick else full)  # noqa: E731
    settings = dict(
        quick=quick,
        config=str(Path(args.config or DEFAULT_CONFIG)),
        search_config=str(Path(args.search_config or DEFAULT_SEARCH_CONFIG)),
        seeds=list(pick(args.seeds, [0, 1, 2], [0])),
        arms=list(dict.fromkeys(args.arms)),
        epochs=pick(args.epochs, 24, 1),
        search_epochs=pick(args.search_epochs, 2, 1),
        search_once=args.search_once, policy_seed=args.policy_seed,
        scale=pick(args.scale, 96, 48),
        num_workers=pick(args.num_workers, 1, 0),
        sizes=QUICK_SIZES if quick else FULL_SIZES,
        threads=pick(args.threads, None, 1),
        score_thr=args.score_thr,
    )
    if args.sizes is not None:
        if min(args.sizes) < 1:
            raise SystemExit(f'--sizes {args.sizes}: expected three positive integers')
        settings['sizes'] = dict(zip(('train', 'val', 'test'), args.sizes))
    for key in ('epochs', 'search_epochs', 'scale'):
        if settings[key] < 1:
            raise SystemExit(f'--{key.replace("_", "-")} {settings[key]}: expected a positive integer')
    if settings['num_workers'] < 0:
        raise SystemExit(f'--num-workers {settings["num_workers"]}: expected >= 0')
    return settings


def _set_data(cfg, data_root: str) -> None:
    """Point every dataloader and evaluator of ``cfg`` at ``data_root``; test on test.json."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader) is not None:
            cfg[loader]['dataset']['data_root'] = data_root
    cfg.test_evaluator = dict(type='CocoMetric', ann_file=data_root + 'test.json', metric='bbox',
                              format_only=False, backend_args=None)


def _set_scale(pipeline: List[dict], scale: int) -> None:
    resizes = [t for t in pipeline if t['type'] == 'Resize']
    if not resizes:
        raise ValueError(f'the pipeline has no Resize to set the scale on: {[t["type"] for t in pipeline]}')
    for t in resizes:
        t['scale'] = (scale, scale)


def _augmentation(arm: str, policy_path: Optional[str]) -> List[dict]:
    """The transforms an arm inserts after Resize in the training pipeline."""
    if arm == 'none':
        return []
    if arm == 'randaugment':
        # mmdet's defaults (RANDAUG_SPACE, aug_num=2, uniform prob); its geometric ops leave
        # degenerate boxes behind, which FilterAnnotations drops (an image left without boxes
        # is replaced by the dataset with another one).
        return [dict(type='RandAugment'), dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1))]
    if arm == 'handpicked':
        return [dict(t) for t in HANDPICKED]
    if arm == 'trivialaugment':
        return [dict(type='PolicyAugment', policy='trivialaugment')]
    if arm == 'autoaug_v0':
        return [dict(type='PolicyAugment', policy='autoaug_det_v0')]
    if arm == 'uniform' or arm in SEARCHED_ARMS:
        if policy_path is None:
            raise ValueError(f'arm {arm!r} needs a policy file')
        return [dict(type='PolicyAugment', policy=policy_path)]
    raise ValueError(f'unknown arm {arm!r}, expected one of {ARMS}')


def _common(cfg, *, data_root: str, scale: int, epochs: int, seed: int, work_dir: Path, num_workers: int,
            name: str, iters_per_epoch: int) -> None:
    """Settings shared by every training run and the search: data, schedule, logging, no val."""
    cfg.custom_imports = dict(imports=['det_autoaug.mmdet_plugins'], allow_failed_imports=False)
    _set_data(cfg, data_root)
    _set_scale(cfg.train_dataloader.dataset.pipeline, scale)
    _set_scale(cfg.test_dataloader.dataset.pipeline, scale)
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
                   score_thr: float = 0.001) -> Dict[str, float]:
    """Train ``config`` with ``arm``'s augmentation and return its COCO metrics on test.json.

    Returns:
        ``{'bbox_mAP', 'bbox_mAP_50', 'no_detections', 'train_seconds', 'test_seconds'}``
        (``no_detections``: the detector found no box on the test set, its mAPs are 0).
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(config)
    _common(cfg, data_root=data_root, scale=scale, epochs=epochs, seed=seed, work_dir=work_dir,
            num_workers=num_workers, name=f'{arm}_seed{seed}', iters_per_epoch=iters_per_epoch)
    cfg.model.test_cfg.score_thr = score_thr
    pipeline = list(cfg.train_dataloader.dataset.pipeline)
    at = max(i for i, t in enumerate(pipeline) if t['type'] == 'Resize') + 1
    pipeline[at:at] = _augmentation(arm, policy_path)
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
    policy path and its cost."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from det_autoaug.search.hook_cfg import search_hooks, set_hook_searcher

    cfg = Config.fromfile(config)
    hooks = search_hooks(cfg)
    if not hooks:
        raise SystemExit(f'--search-config {config} has no search hook (PolicySearchHook) in custom_hooks')
    name, searcher_cfg = SEARCHED_ARMS[searcher]
    searcher_cfg = dict(searcher_cfg)
    if quick and searcher_cfg.get('signal') == 'lookahead':  # a few steps: rounds of 2 so that one completes
        searcher_cfg.update(lookahead_steps=2, lookahead_val_batches=1)
    set_hook_searcher(hooks[0], name, searcher_cfg)
    _common(cfg, data_root=data_root, scale=scale, epochs=epochs, seed=seed, work_dir=work_dir,
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
    """The ``n`` most probable entries of a policy file, with ``p / uniform``."""
    probs = policy['probs']
    order = sorted(range(len(probs)), key=lambda i: -probs[i])[:n]
    out = []
    for i in order:
        e = policy['entries'][i]
        label = e['op'] if e.get('level') is None else f"{e['op']}@{e['level']:g}"
        out.append(dict(entry=label, p=round(probs[i], 4), ratio=round(probs[i] * len(probs), 2)))
    return out


def write_uniform_policy(path: Path, apply_prob: float) -> str:
    """A policy file over SEARCH_SPACE with uniform probs (the random-policy control)."""
    from det_autoaug.ops.spaces import get_space
    from det_autoaug.policy.policy_file import save_policy_file

    entries = get_space(SEARCH_SPACE)
    save_policy_file(path, searcher='uniform', space=SEARCH_SPACE, entries=entries,
                     probs=[1.0 / len(entries)] * len(entries), apply_prob=apply_prob, ops_per_policy=2,
                     meta=dict(note='uniform control for tools/compare_det.py'))
    return str(path)


def summarise(runs: List[Dict[str, Any]], arms: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Per arm: n, mean and sample std (ddof=1; 0 for one seed) of each metric, per-seed values."""
    summary = {}
    for arm in arms:
        rows = sorted((r for r in runs if r['arm'] == arm), key=lambda r: r['seed'])
        if not rows:
            continue
        entry: Dict[str, Any] = dict(n=len(rows), seeds=[r['seed'] for r in rows])
        for m in METRICS:
            values = [r[m] for r in rows]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            entry[m] = dict(mean=mean, std=std, values=values)
        entry['train_seconds_mean'] = sum(r['train_seconds'] for r in rows) / len(rows)
        summary[arm] = entry
    return summary


def markdown_table(summary: Dict[str, Dict[str, Any]], searches: Sequence[Dict[str, Any]]) -> str:
    lines = ['| arm | n | test mAP (mean +- std) | test mAP_50 (mean +- std) | mAP per seed | mAP_50 per seed | '
             'train s / run |', '|---|---|---|---|---|---|---|']
    for arm, s in summary.items():
        a, b = s['bbox_mAP'], s['bbox_mAP_50']
        lines.append(f"| {arm} | {s['n']} | {a['mean']:.4f} +- {a['std']:.4f} | {b['mean']:.4f} +- {b['std']:.4f} | "
                     f"{', '.join(f'{v:.3f}' for v in a['values'])} | {', '.join(f'{v:.3f}' for v in b['values'])} | "
                     f"{s['train_seconds_mean']:.0f} |")
    for s in searches:
        top = ', '.join(f"{e['entry']} {e['ratio']:.2f}x" for e in s['top_entries'][:5])
        lines.append('')
        lines.append(f"{s.get('searcher', 'ddas').upper()} search seed {s['seed']}: {s['epochs']} epochs, "
                     f"{s['search_steps']} steps, {s['model_passes']} model passes (batch forwards), "
                     f"{s['wall_seconds']:.0f} s wall "
                     f"({s['search_seconds']:.0f} s in the hook's steps), final s = {s['apply_prob']:.3f}; "
                     f"top entries (p / uniform): {top}")
    return '\n'.join(lines) + '\n'


def plot(summary: Dict[str, Dict[str, Any]], path: Path) -> None:
    """Bar chart: mean per arm with the sample std as error bars, each seed as a dot."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    arms = list(summary)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 3.6))
    for ax, m in zip(axes, METRICS):
        means = [summary[a][m]['mean'] for a in arms]
        stds = [summary[a][m]['std'] for a in arms]
        ax.bar(range(len(arms)), means, yerr=stds, capsize=4, color='#9ecae1', edgecolor='#3182bd')
        for i, a in enumerate(arms):
            values = summary[a][m]['values']
            ax.plot([i] * len(values), values, 'k.', alpha=0.7)
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=20)
        ax.set_ylabel(f'test {m}')
        ax.set_title(f'{m} (mean +- std over seeds)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write(work_dir: Path, doc: Dict[str, Any]) -> None:
    doc['summary'] = summarise(doc['runs'], doc['settings']['arms'])
    tmp = work_dir / 'results.json.tmp'
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, work_dir / 'results.json')
    (work_dir / 'results.md').write_text(markdown_table(doc['summary'], doc['searches']))
    if doc['summary']:
        plot(doc['summary'], work_dir / 'compare_det.png')


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    settings = _settings(args)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from search_det import select_device  # sets CUDA_VISIBLE_DEVICES='' for cpu before torch loads

    device = select_device(args.device)
    if settings['threads'] is not None:
        import torch
        torch.set_num_threads(settings['threads'])
    import det_autoaug.mmdet_plugins  # noqa: F401  (registers PolicyAugment and the search hook)
    from det_autoaug.data.det_digits import ensure_det_digits

    work_dir = Path(args.work_dir or Path('work_dirs') / 'compare_det').resolve()  # relative to the current directory
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp_data = None
    data = args.data
    if data is None and settings['quick']:
        tmp_data = tempfile.TemporaryDirectory(prefix='compare_det_data_')
        data = str(Path(tmp_data.name) / 'digits')
    elif data is None:
        data = str(work_dir / 'data')
    data_root = str(ensure_det_digits(data, seed=0, sizes=settings['sizes'])) + '/'
    n_train = len(json.loads(Path(data_root, 'train.json').read_text())['images'])
    batch = 8  # the digits configs' batch size, for the warm-up length only
    iters_per_epoch = max(1, math.ceil(n_train / batch))
    settings.update(device=device, data_root=data_root, n_train=n_train)

    doc: Dict[str, Any] = dict(settings=settings, runs=[], searches=[], command=' '.join(sys.argv))
    if args.resume and (work_dir / 'results.json').is_file():
        old = json.loads((work_dir / 'results.json').read_text())
        doc['runs'], doc['searches'] = old.get('runs', []), old.get('searches', [])
    done = {(r['arm'], r['seed']) for r in doc['runs']}
    print(f'compare_det: arms {settings["arms"]}, seeds {settings["seeds"]}, {settings["epochs"]} epochs at '
          f'{settings["scale"]} px, {n_train} training images, device {device}, work dir {work_dir}', flush=True)
    t0 = time.perf_counter()
    searchers = [a for a in settings['arms'] if a in SEARCHED_ARMS]
    # results.json of earlier versions held DDAS searches without a 'searcher' field
    searches = {(s.get('searcher', 'ddas'), s['seed']): s for s in doc['searches']}
    for seed in settings['seeds']:
        if settings.get('policy_seed') is not None:
            policy_seed = settings['policy_seed']
        else:
            policy_seed = settings['seeds'][0] if settings['search_once'] else seed
        policies = {}
        for searcher in searchers:
            search = searches.get((searcher, policy_seed))
            if search is None:
                print(f'[{time.perf_counter() - t0:7.0f} s] {searcher} search seed {policy_seed} ...', flush=True)
                search = run_search(settings['search_config'], searcher=searcher, data_root=data_root,
                                    scale=settings['scale'], epochs=settings['search_epochs'], seed=policy_seed,
                                    work_dir=work_dir / f'search_{searcher}_seed{policy_seed}',
                                    num_workers=settings['num_workers'], iters_per_epoch=iters_per_epoch,
                                    quick=settings['quick'])
                doc['searches'].append(search)
                searches[searcher, policy_seed] = search
                _write(work_dir, doc)
                print(f"[{time.perf_counter() - t0:7.0f} s] {searcher} search seed {policy_seed}: "
                      f"{search['search_steps']} steps, {search['model_passes']} model passes, "
                      f"{search['wall_seconds']:.0f} s, s = {search['apply_prob']:.3f}, "
                      f"top {[e['entry'] for e in search['top_entries'][:3]]}", flush=True)
            policies[searcher] = search['policy']
        ddas = searches.get(('ddas', policy_seed))
        if 'uniform' in settings['arms']:
            apply_prob = ddas['apply_prob'] if ddas is not None else INIT_APPLY_PROB
            policies['uniform'] = write_uniform_policy(work_dir / f'uniform_seed{seed}.json', apply_prob)
        for arm in settings['arms']:
            if (arm, seed) in done:
                continue
            policy_path = policies.get(arm)
            result = train_and_test(settings['config'], arm, policy_path=policy_path, data_root=data_root,
                                    scale=settings['scale'], epochs=settings['epochs'], seed=seed,
                                    work_dir=work_dir / f'{arm}_seed{seed}', num_workers=settings['num_workers'],
                                    iters_per_epoch=iters_per_epoch, score_thr=settings['score_thr'])
            doc['runs'].append(dict(arm=arm, seed=seed, policy=policy_path, **result))
            _write(work_dir, doc)
            print(f"[{time.perf_counter() - t0:7.0f} s] {arm:<12} seed {seed}: mAP {result['bbox_mAP']:.4f} "
                  f"mAP_50 {result['bbox_mAP_50']:.4f} (train {result['train_seconds']:.0f} s)", flush=True)
    doc['total_seconds'] = round(time.perf_counter() - t0, 1)
    _write(work_dir, doc)
    print('\n' + markdown_table(doc['summary'], doc['searches']), flush=True)
    print(f'written: {work_dir / "results.md"}, {work_dir / "results.json"}, {work_dir / "compare_det.png"} '
          f'({doc["total_seconds"]:.0f} s)', flush=True)
    if tmp_data is not None:
        tmp_data.cleanup()
    return doc


if __name__ == '__main__':
    main()
