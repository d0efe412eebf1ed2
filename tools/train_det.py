#!/usr/bin/env python
"""Train a detector with a published or searched augmentation policy, on top of any mmdet config.

mmdet's tools/train.py with one more option: ``--policy`` puts the policy into the config, so a
stock config trains with it as it is, with no pipeline written out.

- CPU data pipeline (default): ``dict(type='PolicyAugment', policy=...)`` goes right after the
  training pipeline's ``RandomFlip``, or before its ``PackDetInputs`` when it has no flip. Every
  pipeline that ends a sample's path gets it: ``train_dataloader.dataset`` and the datasets it
  wraps (``RepeatDataset``, ``ConcatDataset``, ``ClassBalancedDataset``, ...; for
  ``MultiImageMixDataset`` the wrapper's own pipeline), and the ``switch_pipeline`` of a
  ``PipelineSwitchHook`` (RTMDet's last epochs). A pipeline that already holds a
  ``PolicyAugment`` gets its policy replaced instead.
- ``--batch``: ``dict(type='BatchPolicyAugment', policy=...)`` is appended to
  ``model.data_preprocessor.batch_augments`` (it runs on the training device, after
  normalisation, and reads the preprocessor's own mean/std); an existing one gets its policy
  replaced.

``--policy`` is a published name (``autoaug_det_v0`` .. ``autoaug_det_v3``, ``trivialaugment``)
or a policy file written by tools/search_det.py; the file is read and checked before anything is
built, and goes into the config by its absolute path. ``custom_imports`` gains
``det_autoaug.mmdet_plugins``, so the config dumped into the work dir runs with mmdet's own tools too.

Defaults as in mmdet's tools/train.py: the work dir is ``./work_dirs/<config name>`` in the
current directory, ``--resume`` alone resumes from the latest checkpoint there.

Examples:
    python tools/train_det.py mmdet::retinanet/retinanet_r50_fpn_1x_coco.py \\
        --policy work_dirs/retinanet_r50_fpn_1x_coco/policy.json
    python tools/train_det.py mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py --policy autoaug_det_v0 --batch
    python tools/train_det.py configs/digits/retinanet_slim_digits.py --policy trivialaugment \\
        --data data/det_digits --device cpu
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from mmengine.config import DictAction

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

# E402: the package is imported once the checkout is on sys.path.
from det_autoaug.utils.device import select_device  # noqa: E402
from det_autoaug.utils.run_config import (  # noqa: E402
    CFG_OPTIONS_HELP,
    add_custom_import,
    check_data,
    dataset_cfgs,
    resolve_config,
    set_data_root,
    set_work_dir_and_seed,
)

POLICY_AUGMENT = 'PolicyAugment'
BATCH_AUGMENT = 'BatchPolicyAugment'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='training config file, or PACKAGE::PATH (mmdet::retinanet/...py)')
    parser.add_argument('--policy', required=True,
                        help="published policy name ('autoaug_det_v0'..'autoaug_det_v3', 'trivialaugment') or a "
                             'policy file (policy.json of tools/search_det.py)')
    parser.add_argument('--batch', action='store_true',
                        help='apply the policy to the batch on the training device (BatchPolicyAugment) instead of '
                             'in the CPU data pipeline (PolicyAugment)')
    parser.add_argument('--work-dir', default=None,
                        help="where logs and checkpoints go (default: the config's work_dir, else "
                             './work_dirs/<config name>)')
    parser.add_argument('--data', default=None,
                        help="data_root of the config's datasets (e.g. a folder tools/make_det_data.py wrote)")
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present)")
    parser.add_argument('--seed', type=int, default=0, help='seed of the run (randomness.seed)')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (AmpOptimWrapper)')
    parser.add_argument('--auto-scale-lr', action='store_true', help="scale the lr by the batch size (auto_scale_lr)")
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint; alone, from the latest checkpoint in the work dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None, metavar='KEY=VALUE',
                        help=CFG_OPTIONS_HELP + '; applied before the policy is inserted')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def resolve_policy(value: str) -> str:
    """``value`` checked: a published name as it is, a policy file as its absolute path.

    Raises:
        SystemExit: no such file (the message names the absolute path), an invalid file, or an
            unknown name.
    """
    from det_autoaug.policy import SearchedPolicy, build_policy
    try:
        policy = build_policy(value)
    except FileNotFoundError:
        raise SystemExit(f'--policy {value}: policy file {os.path.abspath(value)} does not exist') from None
    except (ValueError, OSError) as e:
        raise SystemExit(f'--policy {value}: {e}') from None
    return os.path.abspath(value) if isinstance(policy, SearchedPolicy) else value


def _type_name(transform: Any) -> str:
    kind = transform.get('type') if isinstance(transform, dict) else None
    return (kind if isinstance(kind, str) else getattr(kind, '__name__', '')).split('.')[-1]


def place_policy(pipeline: List[dict], policy: str) -> Optional[Tuple[List[dict], str]]:
    """``pipeline`` with ``PolicyAugment(policy)`` after its last ``RandomFlip``, else before its ``PackDetInputs``.

    A pipeline that already holds a ``PolicyAugment`` gets ``policy`` set on it instead.

    Returns:
        ``(new pipeline, what was done)``; ``None`` when the pipeline has neither transform (it does
        not end a sample's path, e.g. the inner dataset of ``MultiImageMixDataset``). ``pipeline``
        itself is not modified.
    """
    types = [_type_name(t) for t in pipeline]
    if POLICY_AUGMENT in types:
        at = types.index(POLICY_AUGMENT)
        replaced = [*pipeline[:at], dict(pipeline[at], policy=policy), *pipeline[at + 1:]]
        return replaced, f'policy of its {POLICY_AUGMENT} replaced'
    if 'RandomFlip' in types:
        at = len(types) - types[::-1].index('RandomFlip')
        done = 'after RandomFlip'
    elif 'PackDetInputs' in types:
        at = types.index('PackDetInputs')
        done = 'before PackDetInputs'
    else:
        return None
    return [*pipeline[:at], dict(type=POLICY_AUGMENT, policy=policy), *pipeline[at:]], done


def insert_policy_augment(cfg, policy: str) -> List[str]:
    """Put ``PolicyAugment(policy)`` into every training pipeline of ``cfg`` (see the module doc).

    Returns:
        One line per pipeline changed, ``'<where>: <what>'``.

    Raises:
        SystemExit: no pipeline of ``train_dataloader.dataset`` has a RandomFlip or PackDetInputs.
    """
    done = []
    for where, dataset in dataset_cfgs((cfg.get('train_dataloader') or {}).get('dataset'),
                                       'train_dataloader.dataset'):
        placed = place_policy(list(dataset.get('pipeline') or []), policy)
        if placed is not None:
            dataset['pipeline'], what = placed
            done.append(f'{where}.pipeline: {what}')
    if not done:
        raise SystemExit(f'no training pipeline under train_dataloader.dataset has a RandomFlip or PackDetInputs to '
                         f'place {POLICY_AUGMENT} by: write it into the pipeline yourself, or use --batch')
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if _type_name(hook) == 'PipelineSwitchHook' and hook.get('switch_pipeline'):
            placed = place_policy(list(hook['switch_pipeline']), policy)
            if placed is not None:
                hook['switch_pipeline'], what = placed
                done.append(f'custom_hooks.{i}.switch_pipeline (PipelineSwitchHook): {what}')
    return done


def add_batch_augment(cfg, policy: str) -> List[str]:
    """Append ``BatchPolicyAugment(policy)`` to ``model.data_preprocessor.batch_augments`` (or set the
    policy of the one there). Returns what was done, as :func:`insert_policy_augment`."""
    preprocessor = (cfg.get('model') or {}).get('data_preprocessor')
    if not isinstance(preprocessor, dict):
        raise SystemExit(f'--batch: the config has no model.data_preprocessor for {BATCH_AUGMENT} to run in')
    augments = list(preprocessor.get('batch_augments') or [])
    where = 'model.data_preprocessor.batch_augments'
    for i, augment in enumerate(augments):
        if _type_name(augment) == BATCH_AUGMENT:
            augments[i] = dict(augment, policy=policy)
            preprocessor['batch_augments'] = augments
            return [f'{where}: policy of its {BATCH_AUGMENT} replaced']
    preprocessor['batch_augments'] = augments + [dict(type=BATCH_AUGMENT, policy=policy)]
    return [f'{where}: appended']


def main(argv: Optional[Sequence[str]] = None):
    """Train; returns the runner after training."""
    args = parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    device = select_device(args.device)
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import det_autoaug.mmdet_plugins  # noqa: F401  (registers PolicyAugment and BatchPolicyAugment)

    config = resolve_config(args.config)
    policy = resolve_policy(args.policy)
    cfg = Config.fromfile(str(config))
    cfg.launcher = args.launcher
    if args.data is not None:
        set_data_root(cfg, args.data)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    done = add_batch_augment(cfg, policy) if args.batch else insert_policy_augment(cfg, policy)
    add_custom_import(cfg)
    set_work_dir_and_seed(cfg, config, args.work_dir, args.seed)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'enable' not in (cfg.get('auto_scale_lr') or {}) or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('--auto-scale-lr: the config has no auto_scale_lr = dict(enable=..., base_batch_size=...)')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    check_data(cfg, config)
    kind = BATCH_AUGMENT if args.batch else POLICY_AUGMENT
    print(f'training {config} with {kind}(policy={policy!r}), device {device}, work dir {cfg.work_dir}', flush=True)
    for line in done:
        print(f'  {line}', flush=True)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    return runner


if __name__ == '__main__':
    main()
