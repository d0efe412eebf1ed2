#!/usr/bin/env python
"""Search a detection augmentation policy with DDAS (or DADA, DAAS) while a detector trains.

With no config it searches on the embedded detection dataset (real MNIST digits on real
photographs, built on first use) with the slim CenterNet of docs/results.md "Sizing" (the regime
where augmentation measurably matters) on the CPU in a few minutes. Any mmdet training config
works as it is: a config without a ``PolicySearchHook`` (or its former name ``DDASSearchHook``)
gets one with the default settings (DDAS), appended to its own ``custom_hooks`` (RTMDet's
``EMAHook`` and ``PipelineSwitchHook`` stay). The policy file and a plot of the probabilities
land in the work dir (default ``./work_dirs/<config name>``, relative to the current directory as
in mmdet's tools); train with it: ``python tools/train_det.py CONFIG --policy WORK_DIR/policy.json``.

Examples:
    python tools/search_det.py
    python tools/search_det.py --data data/det_digits          # a folder tools/make_det_data.py wrote
    python tools/search_det.py mmdet::retinanet/retinanet_r50_fpn_1x_coco.py --device cuda
    python tools/search_det.py configs/coco/retinanet_r50_fpn_ddas_search_coco.py --device cuda \
        --cfg-options train_dataloader.batch_size=4
    python tools/search_det.py --resume --work-dir work_dirs/ddas_digits
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from mmengine.config import DictAction

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / 'configs' / 'digits' / 'centernet_slim_digits_ddas.py'
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

# E402: the package is imported once the checkout is on sys.path.
from det_autoaug.search.hook_cfg import SEARCH_HOOK, is_search_hook  # noqa: E402
from det_autoaug.search.searchers import SEARCHERS  # noqa: E402
from det_autoaug.utils.device import select_device  # noqa: E402
from det_autoaug.utils.policy_table import print_policy  # noqa: E402
from det_autoaug.utils.run_config import (  # noqa: E402
    CFG_OPTIONS_HELP,
    add_custom_import,
    check_data,
    hook_searcher,
    resolve_config,
    set_data_root,
    set_searcher,
    set_work_dir_and_seed,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', default=None,
                        help='mmengine config file, or PACKAGE::PATH (mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py); '
                             f'default: {DEFAULT_CONFIG.relative_to(ROOT)}')
    parser.add_argument('--work-dir', default=None,
                        help="where checkpoints, logs and the policy go (default: the config's work_dir, else "
                             './work_dirs/<config name>)')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present)")
    parser.add_argument('--data', default=None,
                        help="data_root of the config's datasets. With no config: the embedded dataset's folder, "
                             'used as it is when tools/make_det_data.py wrote it, built when missing or empty '
                             '(default: the cache folder)')
    parser.add_argument('--seed', type=int, default=0,
                        help="seed of the run (randomness.seed) and of the search hook's generators unless the "
                             "config's hook sets its own seed; with no config also of the embedded dataset built")
    parser.add_argument('--resume', action='store_true', help='resume from the latest checkpoint in the work dir')
    parser.add_argument('--searcher', choices=sorted(SEARCHERS), default=None,
                        help="searcher of the config's search hook (default: the config's, DDAS unless it says)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None, metavar='KEY=VALUE',
                        help=CFG_OPTIONS_HELP)
    return parser.parse_args(argv)


def digits_root(data: Optional[str], seed: int) -> Path:
    """The embedded dataset's folder: ``data`` as it is when it holds one (tools/make_det_data.py's
    layout), else built there (or in the cache folder) by ``ensure_det_digits``."""
    from det_autoaug.data.det_digits import SPLITS, ensure_det_digits
    if data is not None and all((Path(data) / f'{split}.json').is_file() for split in SPLITS):
        return Path(data)
    try:
        return ensure_det_digits(data, seed=seed)
    except FileExistsError as e:
        raise SystemExit(f'--data {data}: {e}') from None


def add_search_hook(cfg) -> bool:
    """Append a ``PolicySearchHook`` with the default settings to ``cfg.custom_hooks`` when it has no
    search hook (``PolicySearchHook`` or ``DDASSearchHook``).

    The config's own custom hooks are kept, in their order. Returns whether the hook was added.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    if any(is_search_hook(h) for h in hooks):
        return False
    cfg.custom_hooks = hooks + [dict(type=SEARCH_HOOK)]
    return True


def hook_seed_note(cfg, seed: int) -> Optional[str]:
    """A line when the config's search hook sets a seed of its own that differs from ``seed``."""
    for hook in cfg.get('custom_hooks') or []:
        if is_search_hook(hook) and hook.get('seed') is not None and hook['seed'] != seed:
            return (f"the config's search hook sets seed={hook['seed']}: it seeds the search's generators; "
                    f'--seed {seed} seeds the rest of the run')
    return None


def main(argv=None):
    """Run the search; returns the runner (its search hook wrote the policy file)."""
    args = parse_args(argv)
    device = select_device(args.device)
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import det_autoaug.mmdet_plugins  # noqa: F401  (registers the hook and transforms)
    from det_autoaug.search.hook import PolicySearchHook

    config = resolve_config(args.config) if args.config else DEFAULT_CONFIG
    cfg = Config.fromfile(str(config))
    if args.config is None:
        set_data_root(cfg, digits_root(args.data, args.seed))
    elif args.data is not None:
        set_data_root(cfg, args.data)
    # Appended before --cfg-options, so that they can set it (custom_hooks.N.KEY=VALUE) and the
    # config's own hooks keep their indices; again after, in case they replaced custom_hooks.
    added = add_search_hook(cfg)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if add_search_hook(cfg) or added:
        kept = [str(h.get('type')) for h in cfg.custom_hooks if not is_search_hook(h)]
        print(f"{config.name} has no search hook: added a {SEARCH_HOOK} with the default settings to custom_hooks"
              + (f" (its own kept: {', '.join(kept)})" if kept else ''), flush=True)
    add_custom_import(cfg)
    if args.searcher is not None:
        set_searcher(cfg, args.searcher)
    set_work_dir_and_seed(cfg, config, args.work_dir, args.seed)
    note = hook_seed_note(cfg, args.seed)
    if note:
        print(note, flush=True)
    check_data(cfg, config)
    if args.resume:
        cfg.resume = True
        cfg.load_from = None
    print(f'{hook_searcher(cfg).upper()} search: config {config}, device {device}, work dir {cfg.work_dir}', flush=True)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, PolicySearchHook))
    path = Path(runner.work_dir) / hook.policy_file
    print_policy(path)
    print(f'\npolicy file: {path}\nplot: {Path(runner.work_dir) / hook.plot_file}')
    return runner


if __name__ == '__main__':
    main()
