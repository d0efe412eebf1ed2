#!/usr/bin/env python
"""Search a classification augmentation policy with DDAS, DADA or DAAS (the same core and hook as detection).

With no config it searches on a Fashion-MNIST subset with a small WideResNet on the CPU in a few
minutes (configs/cls/wrn_fashion_mnist_ddas.py). The configs in configs/cls/ for CIFAR-10/100,
SVHN and the ImageNet proxy are the official DDAS settings for a GPU (set their data_root).
The policy file (policy.json) and a plot of the probabilities land in the work dir; train with
``python tools/train_cls.py CONFIG --policy WORK_DIR/policy.json``.

DAAS's joint search (``--searcher daas_joint``, or a config whose hook says so) searches the
architecture of a supernet backbone (``DAChoiceNet``) together with the policy and writes the
found architecture to ``arch.json`` beside the policy; train it with ``tools/train_cls.py
CONFIG --arch WORK_DIR --policy WORK_DIR/policy.json``. It needs a config with a supernet:
configs/cls/choicenet_fashion_mnist_daas_joint.py (CPU, minutes) or
configs/cls/choicenet_cifar10_daas_joint.py (GPU).

Examples:
    python tools/search_cls.py --device cpu
    python tools/search_cls.py --device cpu --searcher dada
    python tools/search_cls.py configs/cls/choicenet_fashion_mnist_daas_joint.py --device cpu
    python tools/search_cls.py configs/cls/wrn40-2_cifar10_ddas.py --device cuda \
        --cfg-options train_dataloader.dataset.data_root=/data/cifar
    python tools/search_cls.py --resume --work-dir work_dirs/wrn_fashion_mnist_ddas
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from mmengine.config import DictAction

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / 'configs' / 'cls' / 'wrn_fashion_mnist_ddas.py'
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

# E402: the package is imported once the checkout is on sys.path.
from det_autoaug.search.hook_cfg import search_hooks  # noqa: E402
from det_autoaug.search.searchers import SEARCHERS  # noqa: E402
from det_autoaug.utils.device import select_device  # noqa: E402
from det_autoaug.utils.policy_table import print_policy  # noqa: E402
from det_autoaug.utils.run_config import CFG_OPTIONS_HELP, hook_searcher, load_config, set_searcher  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', default=None,
                        help=f'mmengine config with a PolicySearchHook (default: {DEFAULT_CONFIG.relative_to(ROOT)})')
    parser.add_argument('--work-dir', default=None,
                        help="where checkpoints, logs and the policy go (default: the config's work_dir, else "
                             './work_dirs/<config name>)')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present)")
    parser.add_argument('--seed', type=int, default=0,
                        help="seed of the run (randomness.seed) and of the search hook's generators unless the "
                             "config's hook sets its own seed")
    parser.add_argument('--resume', action='store_true', help='resume from the latest checkpoint in the work dir')
    parser.add_argument('--searcher', choices=sorted(SEARCHERS), default=None,
                        help="searcher of the config's search hook (default: the config's, DDAS unless it says)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None, metavar='KEY=VALUE',
                        help=CFG_OPTIONS_HELP)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Path:
    """Run the search; returns the policy file's path."""
    args = parse_args(argv)
    device = select_device(args.device)
    from mmengine.runner import Runner

    import det_autoaug.cls  # noqa: F401  (registers datasets, models, transforms and the hook)
    from det_autoaug.search.hook import PolicySearchHook
    from det_autoaug.utils.checkpoint import enable_safe_resume

    config = Path(args.config) if args.config else DEFAULT_CONFIG
    cfg = load_config(config, args.cfg_options, args.work_dir, args.seed)
    if not search_hooks(cfg):
        raise SystemExit(f'{config} has no PolicySearchHook in custom_hooks: nothing would be searched')
    if args.searcher is not None:
        set_searcher(cfg, args.searcher)
    if args.resume:
        enable_safe_resume()
        cfg.resume = True
        cfg.load_from = None
    print(f'{hook_searcher(cfg).upper()} search: config {config}, device {device}, work dir {cfg.work_dir}', flush=True)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, PolicySearchHook))
    path = Path(cfg.work_dir) / hook.policy_file
    print_policy(path)
    print(f'\npolicy file: {path}\nplot: {Path(cfg.work_dir) / hook.plot_file}')
    arch_file = getattr(hook.searcher, 'arch_file', None)
    if arch_file is not None:
        print_arch(Path(cfg.work_dir) / arch_file)
    return path


def print_arch(path: Path) -> None:
    """Print the found architecture: per block the chosen op and its probability."""
    from det_autoaug.search.arch_file import load_arch_file
    arch = load_arch_file(path)
    print(f'\narchitecture ({len(arch.arch)} choice blocks), file: {path}')
    for b, (name, offered, probs) in enumerate(zip(arch.arch, arch.candidates, arch.probs)):
        print(f'  block {b}: {name:<12} p = {probs[offered.index(name)]:.3f}')


if __name__ == '__main__':
    main()
    sys.exit(0)
