"""The user-facing tools agree (issue 14 items 2, 3, 5): tools/train_det.py, tools/search_det.py, tools/search_cls.py.

- ``train_det.py CONFIG --policy FILE_OR_NAME [--batch]`` puts PolicyAugment after the stock
  pipeline's RandomFlip (or the batch augment into the data preprocessor) and trains.
- ``search_det.py`` adds the search hook to a config that lacks one, keeping its own hooks.
- ``--data`` takes a folder tools/make_det_data.py wrote; missing data is one message naming the
  path; work dirs start in the current directory; ``--seed`` reaches the hook; ``--cfg-options``
  through mmengine's ``DictAction``; policy files are readable by others.

Training runs are a few iterations of slim detectors on a 12-image digits set (CPU).
"""
from __future__ import annotations

import ast
import math
import os
import re
from pathlib import Path

import pytest
from mmengine.config import Config

import det_autoaug.mmdet_plugins  # noqa: F401  (registers PolicyAugment, BatchPolicyAugment, PolicySearchHook)
from det_autoaug.ops.spaces import get_space
from det_autoaug.policy import SearchedPolicy
from det_autoaug.policy.policy_file import save_policy_file
from det_autoaug.utils import run_config

import search_cls  # tools/ (conftest.py)
import search_det
import train_det
from det_helpers import CLASSES, ROOT, make_digits

STOCK_RETINANET = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
STOCK_RTMDET = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'


@pytest.fixture(scope='module')
def digits(tmp_path_factory) -> Path:
    """A folder written by tools/make_det_data.py (no ensure_det_digits marker)."""
    return make_digits(tmp_path_factory.mktemp('digits') / 'det_digits', train=12, val=4, test=4)


@pytest.fixture(scope='module')
def registered():
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)


def searched_policy(path: Path) -> Path:
    entries = get_space('det_default')
    probs = [1.0 / len(entries)] * len(entries)
    save_policy_file(path, searcher='ddas', space='det_default', entries=entries, probs=probs, apply_prob=0.5)
    return path


def stock(name: str) -> Config:
    return Config.fromfile(str(run_config.resolve_config(name)))


def types(pipeline) -> list:
    return [t['type'] if isinstance(t, dict) else type(t).__name__ for t in pipeline]


# ------------------------------------------------------------------------------- train_det: config edits

def test_policy_goes_after_the_stock_flip_or_before_packing():
    cfg = stock(STOCK_RETINANET)
    done = train_det.insert_policy_augment(cfg, 'autoaug_det_v0')
    assert done == ['train_dataloader.dataset.pipeline: after RandomFlip']
    pipeline = types(cfg.train_dataloader.dataset.pipeline)
    assert pipeline.index('PolicyAugment') == pipeline.index('RandomFlip') + 1 and pipeline[-1] == 'PackDetInputs'
    assert types(cfg.val_dataloader.dataset.pipeline).count('PolicyAugment') == 0

    cfg = Config.fromfile(str(ROOT / 'configs/digits/retinanet_slim_digits.py'))  # the digits are never flipped
    train_det.insert_policy_augment(cfg, 'trivialaugment')
    assert types(cfg.train_dataloader.dataset.pipeline)[-2:] == ['PolicyAugment', 'PackDetInputs']

    # A pipeline that already has one gets the new policy instead of a second transform.
    cfg = Config.fromfile(str(ROOT / 'configs/digits/retinanet_slim_digits_autoaug_v0.py'))
    assert train_det.insert_policy_augment(cfg, 'autoaug_det_v1')[0].endswith('policy of its PolicyAugment replaced')
    (augment,) = [t for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'PolicyAugment']
    assert augment['policy'] == 'autoaug_det_v1'


def test_policy_reaches_the_pipelines_of_wrapped_datasets():
    flip = [dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5), dict(type='PackDetInputs')]
    load = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)]
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset', datasets=[
            dict(type='RepeatDataset', times=2, dataset=dict(type='CocoDataset', pipeline=flip)),
            dict(type='MultiImageMixDataset', dataset=dict(type='CocoDataset', pipeline=load),
                 pipeline=[dict(type='Mosaic', img_scale=(64, 64)), *flip[1:]])]))))
    done = train_det.insert_policy_augment(cfg, 'autoaug_det_v0')
    assert done == ['train_dataloader.dataset.datasets.0.dataset.pipeline: after RandomFlip',
                    'train_dataloader.dataset.datasets.1.pipeline: after RandomFlip']
    concat = cfg.train_dataloader.dataset
    assert types(concat.datasets[0].dataset.pipeline) == ['LoadImageFromFile', 'RandomFlip', 'PolicyAugment',
                                                          'PackDetInputs']
    assert types(concat.datasets[1].pipeline) == ['Mosaic', 'RandomFlip', 'PolicyAugment', 'PackDetInputs']
    assert 'PolicyAugment' not in types(concat.datasets[1].dataset.pipeline)  # the loading half of the mix

    with pytest.raises(SystemExit, match='no training pipeline'):
        train_det.insert_policy_augment(Config(dict(train_dataloader=dict(dataset=dict(pipeline=load)))), 'x')


def test_rtmdet_keeps_the_policy_after_its_pipeline_switch():
    cfg = stock(STOCK_RTMDET)
    done = train_det.insert_policy_augment(cfg, 'autoaug_det_v0')
    assert len(done) == 2 and 'PipelineSwitchHook' in done[1]
    for pipeline in (cfg.train_dataloader.dataset.pipeline, cfg.custom_hooks[1].switch_pipeline):
        kinds = types(pipeline)
        assert kinds.index('PolicyAugment') == kinds.index('RandomFlip') + 1


def test_batch_augment_is_appended_and_bound_to_the_stock_preprocessor(registered):
    from mmdet.registry import MODELS
    from det_autoaug.mmdet_plugins.batch_augment import BatchPolicyAugment
    cfg = stock('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py')
    assert train_det.add_batch_augment(cfg, 'autoaug_det_v0') == ['model.data_preprocessor.batch_augments: appended']
    dp_cfg = cfg.model.data_preprocessor
    (aug,) = MODELS.build(dp_cfg).batch_augments
    assert isinstance(aug, BatchPolicyAugment)
    assert aug.mean.flatten().tolist() == pytest.approx(list(dp_cfg.mean)) and aug.channel_order == 'bgr'
    # YOLOX's own batch augment stays in front of it.
    cfg = stock('mmdet::yolox/yolox_s_8xb8-300e_coco.py')
    train_det.add_batch_augment(cfg, 'autoaug_det_v0')
    assert types(cfg.model.data_preprocessor.batch_augments) == ['BatchSyncRandomResize', 'BatchPolicyAugment']


def test_policy_argument_is_a_name_or_an_existing_file(tmp_path):
    assert train_det.resolve_policy('autoaug_det_v0') == 'autoaug_det_v0'
    assert train_det.resolve_policy('trivialaugment') == 'trivialaugment'
    path = searched_policy(tmp_path / 'policy.json')
    os.chdir(tmp_path)
    try:
        assert train_det.resolve_policy('policy.json') == str(path)  # absolute, as written into the config
    finally:
        os.chdir(ROOT)
    missing = tmp_path / 'run' / 'policy.json'
    with pytest.raises(SystemExit, match=re.escape(f'policy file {missing} does not exist')):
        train_det.resolve_policy(str(missing))
    with pytest.raises(SystemExit, match='autoaug_det_v9'):
        train_det.resolve_policy('autoaug_det_v9')


def test_missing_policy_file_fails_before_anything_is_built(tmp_path, capsys):
    missing = tmp_path / 'nowhere' / 'policy.json'
    with pytest.raises(SystemExit, match=re.escape(str(missing))):
        train_det.main([STOCK_RETINANET, '--policy', str(missing), '--work-dir', str(tmp_path / 'w')])
    assert not (tmp_path / 'w').exists()


# ------------------------------------------------------------------------------- train_det: one command

def test_train_det_trains_a_stock_config_with_a_searched_policy(digits, tmp_path, registered):
    policy = searched_policy(tmp_path / 'search' / 'policy.json')
    # The user's side of any stock config: their classes and a model small enough for the CPU.
    config = tmp_path / 'retinanet_digits.py'
    config.write_text(
        f"_base_ = '{run_config.resolve_config(STOCK_RETINANET)}'\n"
        f"metainfo = dict(classes={CLASSES!r})\n"
        "train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,\n"
        "                        dataset=dict(ann_file='train.json', data_prefix=dict(img='images/'),\n"
        "                                     metainfo=metainfo))\n"
        "model = dict(\n"
        "    backbone=dict(depth=18, base_channels=16, init_cfg=None),\n"
        "    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),\n"
        "    bbox_head=dict(num_classes=10, in_channels=32, feat_channels=32, stacked_convs=1))\n"
        "val_cfg = val_dataloader = val_evaluator = None\n")
    runner = train_det.main([
        str(config), '--policy', str(policy), '--data', str(digits), '--device', 'cpu',
        '--work-dir', str(tmp_path / 'work'),
        '--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.pipeline.2.scale=(64,64)',
        f'experiment_name=train_det_{tmp_path.name}', f'visualizer.name=vis_train_det_{tmp_path.name}'])
    transforms = runner.train_dataloader.dataset.pipeline.transforms
    names = [type(t).__name__ for t in transforms]
    assert names.index('PolicyAugment') == names.index('RandomFlip') + 1
    augment = transforms[names.index('PolicyAugment')]
    assert isinstance(augment.policy, SearchedPolicy) and augment.policy.file.path == str(policy)
    assert runner.iter == 3  # 12 images, batch 4, 1 epoch
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    dumped = Config.fromfile(str(tmp_path / 'work' / config.name))
    assert 'det_autoaug.mmdet_plugins' in dumped.custom_imports['imports']


# ------------------------------------------------------------------------------- search_det

def test_search_hook_is_added_to_a_config_without_one_keeping_its_hooks():
    own = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, priority=49),
           dict(type='PipelineSwitchHook', switch_epoch=280, switch_pipeline=[dict(type='PackDetInputs')])]
    cfg = Config(dict(custom_hooks=own))
    assert search_det.add_search_hook(cfg) is True
    assert types(cfg.custom_hooks) == ['EMAHook', 'PipelineSwitchHook', 'PolicySearchHook']
    assert cfg.custom_hooks[0] == own[0] and cfg.custom_hooks[1].switch_epoch == 280
    assert search_det.add_search_hook(cfg) is False and len(cfg.custom_hooks) == 3

    cfg = stock(STOCK_RTMDET)  # the real thing
    search_det.add_search_hook(cfg)
    run_config.add_custom_import(cfg)
    assert types(cfg.custom_hooks) == ['EMAHook', 'PipelineSwitchHook', 'PolicySearchHook']
    assert cfg.custom_imports['imports'] == ['det_autoaug.mmdet_plugins']

    cfg = Config.fromfile(str(ROOT / 'configs/digits/retinanet_slim_digits_ddas.py'))  # has one: unchanged
    assert search_det.add_search_hook(cfg) is False and types(cfg.custom_hooks) == ['PolicySearchHook']


def test_search_det_takes_a_make_det_data_folder_and_seeds_the_hook(digits, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old_umask = os.umask(0o022)
    try:
        runner = search_det.main([
            '--data', str(digits), '--device', 'cpu', '--seed', '3',
            '--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            f'experiment_name=search_det_{tmp_path.name}', f'visualizer.name=vis_search_det_{tmp_path.name}'])
    finally:
        os.umask(old_umask)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'PolicySearchHook')
    assert hook.seed == 3  # the config's hook sets no seed: --seed reaches its generators
    assert runner.cfg.train_dataloader.dataset.data_root == str(digits) + '/'
    # The work dir is ./work_dirs/<config name> in the current directory, not in the clone.
    work_dir = tmp_path / 'work_dirs' / search_det.DEFAULT_CONFIG.stem
    assert Path(runner.work_dir) == work_dir
    policy = work_dir / 'policy.json'
    assert policy.is_file() and policy.stat().st_mode & 0o777 == 0o644
    assert f'policy file: {policy}' in capsys.readouterr().out


def test_hook_seed_set_in_the_config_wins_and_is_reported():
    from mmengine.registry import HOOKS
    cfg = Config(dict(custom_hooks=[dict(type='PolicySearchHook', seed=7)]))
    assert '--seed 3' in search_det.hook_seed_note(cfg, 3) and 'seed=7' in search_det.hook_seed_note(cfg, 3)
    assert search_det.hook_seed_note(cfg, 7) is None
    assert search_det.hook_seed_note(Config(dict(custom_hooks=[dict(type='PolicySearchHook')])), 3) is None
    assert HOOKS.build(dict(type='PolicySearchHook')).seed is None  # resolved from the run in before_run
    with pytest.raises(ValueError, match='seed=1.5'):
        HOOKS.build(dict(type='PolicySearchHook', seed=1.5))


def test_missing_data_is_one_message_naming_the_path(tmp_path):
    nowhere = tmp_path / 'nowhere'
    config = str(ROOT / 'configs/digits/retinanet_slim_digits_ddas.py')
    with pytest.raises(SystemExit, match=re.escape(str(nowhere / 'train.json'))):
        search_det.main([config, '--data', str(nowhere), '--device', 'cpu', '--work-dir', str(tmp_path / 'w')])
    policy = searched_policy(tmp_path / 'policy.json')
    with pytest.raises(SystemExit, match=re.escape(str(nowhere / 'train.json'))):
        train_det.main([str(ROOT / 'configs/digits/retinanet_slim_digits.py'), '--policy', str(policy),
                        '--data', str(nowhere), '--device', 'cpu', '--work-dir', str(tmp_path / 'w')])
    # A stock COCO config without COCO: named before pycocotools ever runs.
    cfg = stock(STOCK_RETINANET)
    run_config.set_data_root(cfg, nowhere)
    missing = run_config.missing_data(cfg)
    assert str(nowhere / 'annotations/instances_train2017.json') in missing
    assert str(nowhere / 'annotations/instances_val2017.json') in missing  # the evaluator's, moved with the root
    # A non-empty folder that is not the embedded data is refused, not overwritten.
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'x.txt').write_text('x')
    with pytest.raises(SystemExit, match='--data .*other'):
        search_det.digits_root(str(tmp_path / 'other'), 0)


def test_work_dirs_default_to_the_current_directory(tmp_path):
    cfg = Config(dict())
    run_config.set_work_dir_and_seed(cfg, Path('/somewhere/configs/my_config.py'), None, 5)
    assert cfg.work_dir == os.path.join('.', 'work_dirs', 'my_config') and cfg.randomness.seed == 5
    cfg = Config(dict(work_dir='mine'))
    run_config.set_work_dir_and_seed(cfg, Path('x.py'), None, 0)
    assert cfg.work_dir == 'mine'
    run_config.set_work_dir_and_seed(cfg, Path('x.py'), 'cli', 0)
    assert cfg.work_dir == 'cli'
    cfg = run_config.load_config(ROOT / 'configs/cls/wrn_fashion_mnist_ddas.py', ['train_cfg.max_epochs=2'], None, 1)
    assert cfg.work_dir == os.path.join('.', 'work_dirs', 'wrn_fashion_mnist_ddas') and cfg.train_cfg.max_epochs == 2


def test_cfg_options_go_through_dictaction():
    for tool, argv in ((search_det, []), (search_cls, []), (train_det, ['c.py', '--policy', 'autoaug_det_v0'])):
        options = tool.parse_args(argv + ['--cfg-options', 'a.b=1', 'c=[x,y]', 'd=None']).cfg_options
        assert options == {'a.b': 1, 'c': ['x', 'y'], 'd': None}
    assert run_config.parse_cfg_options(['a=(1,2)']) == {'a': (1, 2)}
    with pytest.raises(SystemExit, match='KEY=VALUE'):
        run_config.parse_cfg_options(['novalue'])
    for path in [*(ROOT / 'tools').glob('*.py'), ROOT / 'det_autoaug' / 'utils' / 'run_config.py']:
        assert '_parse_iterable' not in path.read_text(), f'{path.name} calls a private mmengine function'


def test_tools_do_not_import_each_other():
    """What tools share lives in the package (det_autoaug.utils.run_config, ...), not in a sibling script."""
    tools = {path.stem: path for path in (ROOT / 'tools').glob('*.py')}
    for name, path in tools.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split('.')[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split('.')[0])
        assert not imported & set(tools), f'tools/{name}.py imports {sorted(imported & set(tools))} from tools/'


def test_searcher_choices_come_from_the_registry():
    from det_autoaug.search.searchers import SEARCHERS
    for tool in (search_det, search_cls):
        for name in SEARCHERS:
            assert tool.parse_args(['--searcher', name]).searcher == name


@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_policy_files_get_the_mode_of_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = searched_policy(tmp_path / 'policy.json')
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.det_autoaug-')]


# ------------------------------------------------------------------------------- the README, verbatim

def _readme_code(language: str) -> list:
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    return [line for block in re.findall(rf'```{language}\n(.*?)```', text, flags=re.S) for line in block.splitlines()]


def test_readme_search_hook_lines_keep_or_need_the_stock_hooks(tmp_path):
    lines = _readme_code('python')
    (imports,) = {line for line in lines if line.startswith('custom_imports =')}
    hook_lines = [line for line in lines if line.startswith('custom_hooks =')]
    (plain,) = [line for line in hook_lines if '_base_.custom_hooks' not in line]
    (keeping,) = [line for line in hook_lines if '_base_.custom_hooks' in line]

    def hooks_of(stock_name: str, line: str) -> list:
        path = tmp_path / 'user.py'
        path.write_text(f"_base_ = ['{run_config.resolve_config(stock_name)}']\n{imports}\n{line}\n")
        return types(Config.fromfile(str(path)).custom_hooks)

    assert hooks_of(STOCK_RETINANET, plain) == ['PolicySearchHook']
    assert hooks_of(STOCK_RTMDET, keeping) == ['EMAHook', 'PipelineSwitchHook', 'PolicySearchHook']
    assert hooks_of(STOCK_RTMDET, plain) == ['PolicySearchHook']  # the trap the README warns about
    with pytest.raises(Exception, match='custom_hooks'):
        hooks_of(STOCK_RETINANET, keeping)  # as the README says: needs a base that defines them
    from mmengine.registry import HOOKS
    (tmp_path / 'hook_only.py').write_text(f'{plain}\n')
    hook = HOOKS.build(Config.fromfile(str(tmp_path / 'hook_only.py')).custom_hooks[0])
    assert hook.searcher.name == 'ddas' and hook.num_policies == 6 and hook.space == 'det_default'
    assert hook.searcher.signal == 'lookahead' and hook.searcher.lookahead.steps == 25


def test_readme_train_det_commands_parse_and_find_their_configs():
    import shlex
    commands = [line for line in _readme_code('bash') if line.startswith('python tools/train_det.py')]
    assert len(commands) >= 2
    for command in commands:
        args = train_det.parse_args(shlex.split(command)[2:])
        assert run_config.resolve_config(args.config).is_file()
        assert args.batch == ('--batch' in command)


def test_readme_config_side_pipeline_inserts_the_policy_after_the_flip(tmp_path):
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    (block,) = [b for b in re.findall(r'```python\n(.*?)```', text, flags=re.S) if 'train_pipeline = [' in b]
    path = tmp_path / 'user.py'
    path.write_text(f"_base_ = ['{run_config.resolve_config(STOCK_RETINANET)}']\n{block}")
    cfg = Config.fromfile(str(path))
    pipeline = cfg.train_dataloader.dataset.pipeline
    stock = Config.fromfile(str(run_config.resolve_config(STOCK_RETINANET))).train_dataloader.dataset.pipeline
    assert [t['type'] for t in pipeline] == [t['type'] for t in stock[:4]] + ['PolicyAugment', 'PackDetInputs']
    from mmengine.registry import init_default_scope
    from mmdet.registry import TRANSFORMS
    init_default_scope('mmdet')
    transform = TRANSFORMS.build(pipeline[4])
    assert type(transform).__name__ == 'PolicyAugment' and transform.policy.name == 'autoaug_det_v0'
