#!/usr/bin/env python
"""Search a detection augmentation policy with DDAS.

With no config it searches on the embedded detection dataset (real MNIST digits on real
photographs, built on first use) with a slim RetinaNet on the CPU in about ten minutes. With a
COCO config (e.g. configs/coco/retinanet_r50_fpn_ddas_search_coco.py) on a GPU it is the
production search. The policy file and a plot of the probabilities land in the work dir.

Examples:
    python tools/search_det.py
    python tools/search_det.py configs/coco/retinanet_r50_fpn_ddas_search_coco.py --device cuda
    python tools/search_det.py --resume --work-dir work_dirs/ddas_digits
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / 'configs' / 'digits' / 'retinanet_slim_digits_ddas.py'
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from det_autoaug.search.searchers import SEARCHERS  # noqa: E402  (light: no OpenMMLab import)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', default=None,
                        help=f'mmengine config with a DDASSearchHook (default: {DEFAULT_CONFIG.relative_to(ROOT)})')
    parser.add_argument('--work-dir', default=None, help='where checkpoints, logs and the policy go')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present)")
    parser.add_argument('--data', default=None, help='embedded dataset folder (default: the cache folder)')
    parser.add_argument('--seed', type=int, default=0, help='random seed of the run and of the dataset')
    parser.add_argument('--resume', action='store_true', help='resume from the latest checkpoint in the work dir')
    parser.add_argument('--searcher', choices=sorted(SEARCHERS), default=None,
                        help="searcher of the config's search hook (default: the config's, DDAS unless it says)")
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config values, as in mmdet tools/train.py')
    return parser.parse_args(argv)


def select_device(device: str) -> str:
    """Make ``device`` the one mmengine uses; fail clearly when CUDA is asked for and absent."""
    if device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''  # mmengine picks CUDA whenever it sees one
        return 'cpu'
    import torch
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise SystemExit(f'--device {device}: CUDA is not available on this machine (use --device cpu)')
        if ':' in device:
            torch.cuda.set_device(int(device.split(':', 1)[1]))
        return device
    raise SystemExit(f"--device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


def hook_searcher(cfg) -> str:
    """The searcher of the first DDASSearchHook in ``cfg.custom_hooks`` (``'ddas'`` unless it says)."""
    hooks = [h for h in cfg.get('custom_hooks') or [] if h.get('type') == 'DDASSearchHook']
    return hooks[0].get('searcher', 'ddas') if hooks else 'ddas'


def set_searcher(cfg, searcher: str) -> None:
    """Set ``searcher`` on every DDASSearchHook in ``cfg.custom_hooks``."""
    for hook in cfg.get('custom_hooks') or []:
        if hook.get('type') == 'DDASSearchHook':
            hook['searcher'] = searcher


def print_policy(path: Path, top: int = 15) -> None:
    """Print the searched policy as a table, most probable entries first."""
    policy = json.loads(path.read_text())
    if policy.get('subpolicies'):
        print(f"\n{policy['searcher'].upper()} policy ({policy['space']}): top sub-policies")
        for rank, sp in enumerate(policy['subpolicies'][:top], 1):
            ops = ', '.join(f"{o['op']}(m={o['magnitude']:.3g}, p={o['prob']:.2f})" for o in sp['ops'])
            print(f"{rank:>4}  {sp['prob']:.4f}  {ops}")
        return
    entries, probs = policy['entries'], policy['probs']
    uniform = 1.0 / len(probs)
    print(f"\n{policy['searcher'].upper()} policy ({policy['space']}, {len(probs)} entries): an image is augmented with "
          f"probability s = {policy['apply_prob']:.3f} by {policy['ops_per_policy']} entries drawn from p")
    print(f"{'rank':>4}  {'entry':<28} {'magnitude':>9}  {'p':>7}  {'p / uniform':>11}")
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    for rank, i in enumerate(order[:top], 1):
        e = entries[i]
        label = e['op'] if e.get('level') is None else f"{e['op']}@{e['level']:g}"
        print(f'{rank:>4}  {label:<28} {e["magnitude"]:>9.3f}  {probs[i]:>7.4f}  {probs[i] / uniform:>11.2f}')
    print('  ...')
    for i in order[-3:]:
        e = entries[i]
        label = e['op'] if e.get('level') is None else f"{e['op']}@{e['level']:g}"
        print(f"{'':>4}  {label:<28} {e['magnitude']:>9.3f}  {probs[i]:>7.4f}  {probs[i] / uniform:>11.2f}")
    meta = policy.get('meta', {})
    if meta:
        print(f"search: {meta.get('iterations')} steps in {meta.get('search_seconds')} s")


def main(argv=None) -> None:
    args = parse_args(argv)
    device = select_device(args.device)
    from mmengine.config import Config, DictAction
    from mmengine.runner import Runner

    import det_autoaug  # noqa: F401  (registers the hook and transforms)
    from det_autoaug.data.det_digits import ensure_det_digits

    config = Path(args.config) if args.config else DEFAULT_CONFIG
    if not config.is_file():
        raise SystemExit(f'config {config} does not exist')
    cfg = Config.fromfile(str(config))
    options = {}
    for item in args.cfg_options:
        if '=' not in item:
            raise SystemExit(f'--cfg-options {item!r}: expected KEY=VALUE')
        key, value = item.split('=', 1)
        options[key] = DictAction._parse_iterable(value)
    if args.config is None:
        data_root = str(ensure_det_digits(args.data, seed=args.seed)) + '/'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(loader) is not None:
                cfg[loader]['dataset']['data_root'] = data_root
        for evaluator in ('val_evaluator', 'test_evaluator'):
            if cfg.get(evaluator) is not None and 'ann_file' in cfg[evaluator]:
                cfg[evaluator]['ann_file'] = data_root + Path(cfg[evaluator]['ann_file']).name
    cfg.merge_from_dict(options)
    if args.searcher is not None:
        set_searcher(cfg, args.searcher)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or str(ROOT / 'work_dirs' / config.stem)
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    if args.resume:
        cfg.resume = True
        cfg.load_from = None
    print(f'{hook_searcher(cfg).upper()} search: config {config}, device {device}, work dir {cfg.work_dir}', flush=True)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hooks = [h for h in runner.hooks if type(h).__name__ == 'DDASSearchHook']
    if not hooks:
        raise SystemExit(f'{config} has no DDASSearchHook in custom_hooks: nothing was searched')
    path = Path(cfg.work_dir) / hooks[0].policy_file
    print_policy(path)
    print(f'\npolicy file: {path}\nplot: {Path(cfg.work_dir) / hooks[0].plot_file}')


if __name__ == '__main__':
    sys.exit(main())
