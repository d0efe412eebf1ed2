"""The config of a command-line run: what the tools (``tools/search_det.py``, ``tools/train_det.py``,
``tools/search_cls.py``, ``tools/train_cls.py``) do to a config before they build a Runner.

Find the config file (a path or ``PACKAGE::PATH``), merge ``--cfg-options``, set the work dir and
the seed, point the datasets at ``--data``, stop early when the data is missing, add
``det_autoaug.mmdet_plugins`` to ``custom_imports``, and read or set the searcher of the config's
search hook. mmengine is imported only by the functions that need it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ..search.hook_cfg import hook_searcher as _hook_searcher
from ..search.hook_cfg import search_hooks, set_hook_searcher

CFG_OPTIONS_HELP = ('override settings of the config, KEY=VALUE pairs merged into it as in mmdet\'s tools/train.py '
                    '(lists as key="[a,b]" or key=a,b; list items by index: key.0.scale="(64,64)")')


def parse_cfg_options(items: Sequence[str]) -> dict:
    """``['a.b=1', 'c=[x,y]']`` as mmengine's ``DictAction`` parses them on a command line.

    Raises:
        SystemExit: an item without ``=`` (the message names it).
    """
    for item in items:
        if '=' not in item:
            raise SystemExit(f'--cfg-options {item!r}: expected KEY=VALUE')
    if not items:
        return {}
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(prog='--cfg-options', add_help=False)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *items]).cfg_options


def resolve_config(name: str) -> Path:
    """The file of config ``name``: a path, or ``PACKAGE::PATH`` inside an installed OpenMMLab package.

    ``PACKAGE::PATH`` is read from the package's ``.mim/configs`` (how mmengine resolves
    ``_base_ = 'mmdet::...'``), so stock configs run without copying them.

    Raises:
        SystemExit: the package is not installed, or the file does not exist (the message names it).
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


def load_config(config: Path, cfg_options: Union[Mapping, Sequence[str], None], work_dir: Optional[str], seed: int):
    """Read ``config``, apply ``--cfg-options`` (parsed, or ``KEY=VALUE`` strings) and set the work dir and seed.

    Work dir: ``work_dir``, else the config's, else ``./work_dirs/<config name>`` in the current directory.

    Raises:
        SystemExit: ``config`` does not exist, or a ``KEY=VALUE`` string without ``=``.
    """
    from mmengine.config import Config
    if not config.is_file():
        raise SystemExit(f'config {config} does not exist')
    cfg = Config.fromfile(str(config))
    options = dict(cfg_options) if isinstance(cfg_options, Mapping) else parse_cfg_options(list(cfg_options or []))
    if options:
        cfg.merge_from_dict(options)
    set_work_dir_and_seed(cfg, config, work_dir, seed)
    return cfg


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


def set_data_root(cfg, root: Union[os.PathLike, str]) -> None:
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
    """Stop with one message naming the missing files, before anything is built.

    Raises:
        SystemExit: some of the data the run reads is missing (:func:`missing_data`).
    """
    missing = missing_data(cfg)
    if missing:
        raise SystemExit(f"{config}: the data it reads is missing: {', '.join(missing)} (relative paths start at "
                         f'{os.getcwd()}). Set data_root with --data DIR or --cfg-options '
                         'train_dataloader.dataset.data_root=DIR/; the embedded digits are built with '
                         'python tools/make_det_data.py --out DIR')


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
