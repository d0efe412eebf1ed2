#!/usr/bin/env python
"""Train a classifier with an augmentation policy (and a searched architecture) and report its test accuracy.

``--policy`` picks the augmentation, applied per image in the CPU data pipeline (inserted at the
start of the training pipeline, before any random crop/flip, as the DDAS / Fast AutoAugment
code does; after a leading resize or random-resized crop for ImageNet-style pipelines):

- ``none``: the config's pipeline as is;
- ``randaugment``, ``trivialaugment``, ``autoaugment-cifar``, ``autoaugment-imagenet``,
  ``autoaugment-svhn``: torchvision v2 (``DAClsTorchvisionAug``);
- a policy-file path (a DDAS search): ``DAClsPolicy``, the final distribution by default, or
  with ``--schedule`` the per-epoch schedule from the file's trajectory;
- ``uniform``: the same search space, ``apply_prob`` and ``ops_per_policy`` as
  ``--reference-policy`` (a searched file) but uniform entry probabilities, so only the
  learned distribution differs from the searched policy. Without a reference: the
  ``ddas_cifar`` space, ``apply_prob`` 0.35 (DDAS's initial s), two entries.

``--arch`` (an ``arch.json`` written by a ``daas_joint`` search, or that search's work dir)
replaces the config's backbone by the fixed found architecture (``DAChoiceNet`` with ``arch``:
only the chosen op of each block is built). A ``DAChoiceNet`` backbone in the config may change
the searched network's non-structural settings (``widths``, ``num_classes``, ``dropout``); of
any other backbone only ``num_classes`` is kept. A config whose backbone is a ``DAChoiceNet``
supernet (no ``arch``) needs ``--arch``.

The test accuracy is printed and written, with the run's settings, to ``WORK_DIR/result.json``.

Examples:
    python tools/train_cls.py configs/cls/wrn_fashion_mnist_train.py --policy none --device cpu
    python tools/train_cls.py configs/cls/wrn_fashion_mnist_train.py \
        --policy work_dirs/wrn_fashion_mnist_ddas/policy.json --seed 1
    python tools/train_cls.py configs/cls/choicenet_fashion_mnist_train.py \
        --arch work_dirs/choicenet_fashion_mnist_daas_joint \
        --policy work_dirs/choicenet_fashion_mnist_daas_joint/policy.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

# E402: the package is imported once the checkout is on sys.path.
from det_autoaug.utils.device import select_device  # noqa: E402
from det_autoaug.utils.run_config import load_config  # noqa: E402

TORCHVISION_POLICIES = ('randaugment', 'trivialaugment', 'autoaugment-cifar', 'autoaugment-imagenet',
                        'autoaugment-svhn')
SIZE_SETTING = ('ResizeCls', 'RandomResizedCropCls', 'CenterCropCls')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='mmengine training config (e.g. configs/cls/wrn_fashion_mnist_train.py)')
    parser.add_argument('--policy', default='none',
                        help=f"'none', 'uniform', {', '.join(TORCHVISION_POLICIES)}, or a policy-file path")
    parser.add_argument('--schedule', action='store_true',
                        help="searched policy: follow the file's per-epoch trajectory (default: final distribution)")
    parser.add_argument('--reference-policy', default=None,
                        help="'uniform': the searched file whose space, apply_prob and ops_per_policy it copies")
    parser.add_argument('--arch', default=None,
                        help='arch.json of a daas_joint search (or its work dir): train that architecture')
    parser.add_argument('--work-dir', default=None, help='where logs, the checkpoint and result.json go')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda', 'cuda:N' or 'auto'")
    parser.add_argument('--seed', type=int, default=0, help='random seed of the run')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config values')
    return parser.parse_args(argv)


def uniform_policy(path: Path, reference: Optional[str]) -> Path:
    """Write the ``uniform`` policy file (see the module doc) to ``path``; returns ``path``."""
    from det_autoaug.policy.policy_file import load_policy_file
    from det_autoaug.utils.uniform_policy import write_uniform_policy
    meta = dict(reference=reference)
    if reference is None:
        write_uniform_policy(path, 'ddas_cifar', 0.35, ops_per_policy=2, meta=meta)
    else:
        ref = load_policy_file(reference)
        write_uniform_policy(path, ref.space, ref.apply_prob, entries=ref.entries, ops_per_policy=ref.ops_per_policy,
                             meta=meta)
    return path


def policy_transform(policy: str, schedule: bool, reference: Optional[str], work_dir: Path) -> Optional[dict]:
    """The pipeline transform config for ``--policy`` (``None`` for ``'none'``)."""
    if schedule and (policy in ('none', 'uniform') or policy in TORCHVISION_POLICIES):
        raise SystemExit(f'--schedule needs a searched policy file, got --policy {policy!r}')
    if reference is not None and policy != 'uniform':
        raise SystemExit(f"--reference-policy is for --policy uniform, got --policy {policy!r}")
    if policy == 'none':
        return None
    if policy in TORCHVISION_POLICIES:
        return dict(type='DAClsTorchvisionAug', policy=policy)
    if policy == 'uniform':
        return dict(type='DAClsPolicy', policy=str(uniform_policy(work_dir / 'uniform_policy.json', reference)))
    if not Path(policy).is_file():
        raise SystemExit(f"--policy {policy!r}: expected 'none', 'uniform', one of {TORCHVISION_POLICIES} "
                         'or an existing policy file')
    return dict(type='DAClsPolicy', policy=str(Path(policy).resolve()), schedule=schedule)


def insert_policy(pipeline: list, transform: dict) -> list:
    """``pipeline`` with ``transform`` after its leading size-setting transforms (else first)."""
    index = 0
    while index < len(pipeline) and pipeline[index].get('type') in SIZE_SETTING:
        index += 1
    return list(pipeline[:index]) + [transform] + list(pipeline[index:])


def set_arch(cfg, arch: Optional[str]) -> Optional[List[str]]:
    """Swap ``cfg.model.backbone`` for the fixed architecture of ``arch``; returns its op names.

    Without ``arch`` the config is left as is, unless its backbone is a ``DAChoiceNet`` supernet.
    """
    from det_autoaug.cls.nas import fixed_backbone_cfg
    from det_autoaug.search.arch_file import load_arch_file
    backbone = dict(cfg.model.get('backbone') or {})
    if arch is None:
        if backbone.get('type') == 'DAChoiceNet' and backbone.get('arch') is None:
            raise SystemExit('the config\'s backbone is a DAChoiceNet supernet (no arch): give --arch '
                             '(the arch.json of a daas_joint search, or its work dir)')
        return None
    try:
        found = load_arch_file(arch)
        cfg.model.backbone = fixed_backbone_cfg(found, backbone)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'--arch {arch}: {e}') from None
    return list(found.arch)


def main(argv: Optional[List[str]] = None) -> dict:
    """Train and test; returns the result dict written to ``result.json``."""
    args = parse_args(argv)
    device = select_device(args.device)
    from mmengine.runner import Runner

    import det_autoaug.cls  # noqa: F401  (registers datasets, models, transforms, metric)

    config = Path(args.config)
    cfg = load_config(config, args.cfg_options, args.work_dir, args.seed)
    if cfg.get('test_dataloader') is None:
        raise SystemExit(f'{config} has no test_dataloader: nothing to report')
    work_dir = Path(cfg.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    arch = set_arch(cfg, args.arch)
    transform = policy_transform(args.policy, args.schedule, args.reference_policy, work_dir)
    if transform is not None:
        dataset = cfg.train_dataloader.dataset
        dataset.pipeline = insert_policy(dataset.get('pipeline', []), transform)
    print(f'train: config {config}, policy {args.policy}{" (schedule)" if args.schedule else ""}, '
          f'device {device}, seed {args.seed}, work dir {work_dir}', flush=True)
    if arch is not None:
        print(f'architecture from {args.arch}: {",".join(arch)}', flush=True)
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    train_seconds = time.perf_counter() - start
    metrics = runner.test()
    result = dict(config=str(config), policy=args.policy, schedule=args.schedule,
                  reference_policy=args.reference_policy, arch=args.arch, arch_ops=arch, seed=args.seed,
                  device=device,
                  train_seconds=round(train_seconds, 1),
                  metrics={k: float(v) for k, v in metrics.items()})
    (work_dir / 'result.json').write_text(json.dumps(result, indent=2) + '\n')
    top1 = result['metrics'].get('accuracy/top1')
    print(f'test accuracy: {top1:.4f}' if top1 is not None else f'test metrics: {result["metrics"]}')
    print(f'result: {work_dir / "result.json"}')
    return result


if __name__ == '__main__':
    main()
    sys.exit(0)
