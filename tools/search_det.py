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
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / 'configs' / 'digits' / 'centernet_slim_digits_ddas.py'
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from mmengine.config import DictAction  # noqa: E402

from det_autoaug.search.hook_cfg import SEARCH_HOOK, is_search_hook, search_hooks, set_hook_searcher  # noqa: E402
from det_autoaug.search.hook_cfg import hook_searcher as _hook_searcher  # noqa: E402
from det_autoaug.search.searchers import SEARCHERS  # noqa: E402
from det_autoaug.utils.device import select_device  # noqa: E402  (train_det, search_cls, train_cls import it from here)

CFG_OPTIONS_HELP = ('override settings of the config, KEY=VALUE pairs merged into it as in mmdet\'s tools/train.py '
                    '(lists as key="[a,b]" or key=a,b; list items by index: key.0.scale="(64,64)")')


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


def parse_cfg_options(items: Sequence[str]) -> dict:
    """``['a.b=1', 'c=[x,y]']`` as mmengine's ``DictAction`` parses them on a command line."""
    for item in items:
        if '=' not in item:
            raise SystemExit(f'--cfg-options {item!r}: expected KEY=VALUE')
    if not items:
        return {}
    parser = argparse.ArgumentParser(prog='--cfg-options', add_help=False)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *items]).cfg_options


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


def resolve_config(name: str) -> Path:
    """The file of config ``name``: a path, or ``PACKAGE::PATH`` inside an installed OpenMMLab package.

    ``PACKAGE::PATH`` is read from the package's ``.mim/configs`` (how mmengine resolves
    ``_base_ = 'mmdet::...'``), so stock configs run without copying them.
    """
    if '::' in name:
        package, relative = name.split('::', 1)
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin is None:
            raise SystemExit(f'config {name}: package {package!r} is not installed')
        base = Path(spec.origin).parent
        candidates = (base / '.mim' / 'configs' / relative, base.parent / 'configs' / relative)
        for path in candidates:
            if path.is_file():
                return path
        raise SystemExit(f'config {name}: {candidates[0]} does not exist')
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f'config {path} does not exist')
    return path


def default_work_dir(config: Path) -> str:
    """``./work_dirs/<config name>``, relative to the current directory as in mmdet's tools/train.py."""
    return os.path.join('.', 'work_dirs', config.stem)


def set_work_dir_and_seed(cfg, config: Path, work_dir: Optional[str], seed: int) -> None:
    """Work dir: ``work_dir``, else the config's, else :func:`default_work_dir`; ``randomness.seed``: ``seed``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config)
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)


def dataset_cfgs(dataset: Any, where: str = 'dataset') -> Iterator[Tuple[str, dict]]:
    """``(where, config)`` of ``dataset`` and of every dataset it wraps (``RepeatDataset.dataset``,
    ``ConcatDataset.datasets``, ...), outermost first; ``where`` is the dotted path from the loader."""
    stack = [(where, dataset)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield where, node
        inner = node.get('datasets') or []
        stack.extend(reversed([(f'{where}.datasets.{i}', d) for i, d in enumerate(inner) if isinstance(d, dict)]))
        if isinstance(node.get('dataset'), dict):
            stack.append((f'{where}.dataset', node['dataset']))


def _evaluators(cfg, key: str) -> List[dict]:
    value = cfg.get(key)
    return [e for e in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(e, dict)]


def set_data_root(cfg, root: os.PathLike | str) -> None:
    """Point the datasets of the train/val/test loaders at ``root``, and the evaluators' annotation files with them."""
    root = str(root).rstrip('/') + '/'
    for loader, evaluator in (('train_dataloader', None), ('val_dataloader', 'val_evaluator'),
                              ('test_dataloader', 'test_evaluator')):
        if cfg.get(loader) is None:
            continue
        old = set()
        for _, dataset in dataset_cfgs(cfg[loader].get('dataset')):
            if 'ann_file' in dataset or 'data_root' in dataset:
                old.add(str(dataset.get('data_root') or ''))
                dataset['data_root'] = root
        for metric in _evaluators(cfg, evaluator) if evaluator else []:
            ann_file = metric.get('ann_file')
            if not ann_file:
                continue
            prefix = next((p for p in sorted(old, key=len, reverse=True) if p and ann_file.startswith(p)), None)
            metric['ann_file'] = root + (ann_file[len(prefix):] if prefix else Path(ann_file).name)


def _local(path: str) -> bool:
    return '://' not in path


def missing_data(cfg) -> List[str]:
    """Annotation files and image folders the run reads (training, and validation when it runs) that do not exist.

    Datasets read through ``backend_args`` (remote storage) and URLs are not checked.
    """
    loaders = [('train_dataloader', None)]
    if cfg.get('val_cfg') is not None and cfg.get('val_dataloader') is not None:
        loaders.append(('val_dataloader', 'val_evaluator'))
    missing: List[str] = []
    for loader, evaluator in loaders:
        if cfg.get(loader) is None:
            continue
        for _, dataset in dataset_cfgs(cfg[loader].get('dataset')):
            if dataset.get('backend_args') is not None:
                continue
            root = str(dataset.get('data_root') or '')
            ann_file = dataset.get('ann_file')
            if ann_file and _local(root + ann_file):
                path = ann_file if os.path.isabs(ann_file) else os.path.join(root, ann_file)
                if not os.path.isfile(path):
                    missing.append(path)
            img = (dataset.get('data_prefix') or {}).get('img')
            if isinstance(img, str) and img and _local(root + img):
                path = img if os.path.isabs(img) else os.path.join(root, img)
                if not os.path.isdir(path):
                    missing.append(path)
        for metric in _evaluators(cfg, evaluator) if evaluator else []:
            ann_file = metric.get('ann_file')
            if ann_file and metric.get('backend_args') is None and _local(ann_file) and not os.path.isfile(ann_file):
                missing.append(ann_file)
    return list(dict.fromkeys(missing))


def check_data(cfg, config: Path) -> None:
    """Stop with one message naming the missing files, before anything is built."""
    missing = missing_data(cfg)
    if missing:
        raise SystemExit(f"{config}: the data it reads is missing: {', '.join(missing)} (relative paths start at "
                         f'{os.getcwd()}). Set data_root with --data DIR or --cfg-options '
                         'train_dataloader.dataset.data_root=DIR/; the embedded digits are built with '
                         'python tools/make_det_data.py --out DIR')


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


def add_custom_import(cfg, module: str = 'det_autoaug.mmdet_plugins') -> None:
    """Make ``custom_imports`` import ``module`` too (the dumped config then runs in mmdet's own tools)."""
    imports = dict(cfg.get('custom_imports') or {})
    names = imports.get('imports') or []
    names = [names] if isinstance(names, str) else list(names)
    if module not in names:
        names.append(module)
    cfg.custom_imports = dict(imports, imports=names, allow_failed_imports=imports.get('allow_failed_imports', False))


def hook_searcher(cfg) -> str:
    """The searcher name of the first search hook in ``cfg.custom_hooks`` (``'ddas'`` unless it says)."""
    hooks = search_hooks(cfg)
    return _hook_searcher(hooks[0]) if hooks else 'ddas'


def set_searcher(cfg, searcher: str) -> None:
    """Make every search hook in ``cfg.custom_hooks`` run ``searcher`` (a name: ``'daas'``)."""
    for hook in search_hooks(cfg):
        set_hook_searcher(hook, searcher)


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
