"""The configs under configs/: they load, their datasets build, and stock mmdet configs train with them.

Training runs are 2 iterations of slim detectors on a tiny generated digits set (64 px, CPU).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import List

import pytest
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs'
# Detection configs; configs/cls/ (the classification search) is tested with the cls code.
ALL_CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in CONFIGS.rglob('*.py')
                     if not p.relative_to(CONFIGS).as_posix().startswith('cls/'))
TRAINING_CONFIGS = [c for c in ALL_CONFIGS if not c.startswith('configs/_base_/')]
SCALE = 64


def _mmdet_configs() -> Path:
    import mmdet
    return Path(mmdet.__file__).parent / '.mim' / 'configs'


def _require_mmdet_scheme() -> None:
    """``mmdet::`` inheritance needs pkg_resources (mmengine's is_installed); say so if it is missing."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        pytest.fail('`mmdet::` config inheritance cannot work here: mmengine.utils.is_installed imports '
                    'pkg_resources, which setuptools >= 81 no longer ships (pin setuptools<81 in '
                    'constraints.txt)')


def load(path: str) -> Config:
    text = (ROOT / path).read_text()
    if 'mmdet::' in text:
        _require_mmdet_scheme()
    return Config.fromfile(str(ROOT / path))


@pytest.fixture(scope='module')
def registered():
    import det_autoaug.mmdet_plugins  # noqa: F401  (custom_imports does the same)
    from mmdet.registry import MODELS, TRANSFORMS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)  # as the configs' default_scope='mmdet'
    from mmengine.registry import HOOKS
    missing = [name for name, reg in (('PolicyAugment', TRANSFORMS), ('BatchPolicyAugment', MODELS),
                                      ('PolicySearchHook', HOOKS))
               if reg.get(name) is None]
    assert not missing, f'importing det_autoaug.mmdet_plugins does not register {missing}'


@pytest.fixture(scope='module')
def digits(tmp_path_factory) -> Path:
    from det_autoaug.data.det_digits import build_det_digits
    root = tmp_path_factory.mktemp('digits')
    build_det_digits(root, seed=0, sizes=dict(train=16, val=4, test=2))
    return root


def set_data_root(cfg: Config, root: Path) -> None:
    data_root = str(root) + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader) is not None:
            cfg[loader]['dataset']['data_root'] = data_root
    for evaluator in ('val_evaluator', 'test_evaluator'):
        if cfg.get(evaluator) is not None:
            cfg[evaluator]['ann_file'] = data_root + Path(cfg[evaluator]['ann_file']).name


def pipeline_types(pipeline: List[dict]) -> List[str]:
    return [t['type'] for t in pipeline]


@pytest.mark.parametrize('path', ALL_CONFIGS)
def test_every_config_loads(path, registered):
    cfg = load(path)
    if path in TRAINING_CONFIGS:
        assert cfg.get('model') is not None, f'{path} has no model'
        assert 'det_autoaug.mmdet_plugins' in cfg.get('custom_imports', {}).get('imports', []) or \
            path.endswith(('retinanet_slim_digits.py', 'faster-rcnn_slim_digits.py', 'centernet_slim_digits.py',
                           'centernet_slim_digits_handpicked.py'))


@pytest.mark.parametrize('path', [c for c in TRAINING_CONFIGS if 'autoaug_v0' in c or 'searched' in c])
def test_policy_configs_put_policy_augment_in_the_training_pipeline(path, registered):
    types = pipeline_types(load(path).train_dataloader.dataset.pipeline)
    assert 'PolicyAugment' in types
    anchor = 'RandomFlip' if 'RandomFlip' in types else 'Resize'
    assert types.index('PolicyAugment') == types.index(anchor) + 1
    assert types[-1] == 'PackDetInputs'


@pytest.mark.parametrize('path', [c for c in TRAINING_CONFIGS if 'batch' in c])
def test_batch_configs_match_the_preprocessor_normalisation(path, registered):
    from mmdet.registry import MODELS
    dp_cfg = load(path).model.data_preprocessor
    (aug_cfg,) = dp_cfg.batch_augments
    assert aug_cfg.type == 'BatchPolicyAugment'
    # Values a config states must be the preprocessor's; without them the augment reads them when built.
    for key in ('mean', 'std'):
        if aug_cfg.get(key) is not None:
            assert list(aug_cfg[key]) == list(dp_cfg[key])
    (aug,) = MODELS.build(copy.deepcopy(dp_cfg)).batch_augments
    assert aug.mean.flatten().tolist() == pytest.approx(list(dp_cfg.mean))
    assert aug.std.flatten().tolist() == pytest.approx(list(dp_cfg.std))
    assert aug.channel_order == ('rgb' if dp_cfg.bgr_to_rgb else 'bgr')


def test_batch_fragment_states_no_normalisation_and_no_policy_variable(registered):
    fragment = load('configs/_base_/det_autoaug_batch.py')
    assert 'det_autoaug_policy' not in fragment  # an override of it would be ignored
    assert set(fragment.batch_policy_augment) == {'type', 'policy'}


@pytest.mark.parametrize('path', [c for c in TRAINING_CONFIGS if 'ddas' in c])
def test_search_configs_build_their_hook(path, registered):
    from mmengine.registry import HOOKS

    from det_autoaug.search.hook_cfg import is_search_hook
    cfg = load(path)
    hooks = [h for h in cfg.custom_hooks if is_search_hook(h)]
    assert len(hooks) == 1 and hooks[0].type == 'PolicySearchHook'
    assert pipeline_types(cfg.train_dataloader.dataset.pipeline).count('PolicyAugment') == 0
    assert type(HOOKS.build(copy.deepcopy(hooks[0]))).__name__ == hooks[0].type


@pytest.mark.parametrize('path', [c for c in TRAINING_CONFIGS if c.startswith('configs/digits/')])
def test_digits_models_build_without_pretrained_weights(path, registered):
    from mmdet.registry import MODELS
    cfg = load(path)
    assert cfg.model.backbone.init_cfg is None and cfg.model.backbone.base_channels == 16
    model = MODELS.build(cfg.model)
    assert model.bbox_head.num_classes == 10 if hasattr(model, 'bbox_head') else \
        model.roi_head.bbox_head.num_classes == 10


def test_slim_autoaug_train_dataset_builds_and_runs_its_pipeline(digits, registered):
    from mmdet.registry import DATASETS
    cfg = load('configs/digits/retinanet_slim_digits_autoaug_v0.py')
    set_data_root(cfg, digits)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 16 and dataset.metainfo['classes'] == tuple('0123456789')
    for i in range(4):
        item = dataset[i]
        img, sample = item['inputs'], item['data_samples']
        h, w = sample.img_shape
        assert img.shape == (3, h, w) and max(h, w) == 128
        boxes = sample.gt_instances.bboxes.tensor
        assert len(boxes) == len(sample.gt_instances.labels)
        if len(boxes):
            assert float(boxes[:, 2].max()) <= w + 1e-3 and float(boxes[:, 3].max()) <= h + 1e-3


# ---------------------------------------------------------------- stock mmdet config + recipe

STOCK = {
    'retinanet': ('retinanet/retinanet_r50_fpn_1x_coco.py', 'configs/_base_/models/retinanet_slim.py'),
    'faster-rcnn': ('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', 'configs/_base_/models/faster-rcnn_slim.py'),
}
# What a user adds to a stock config (after its `_base_` line): at most 3 lines.
RECIPES = {
    'policy': ('configs/_base_/det_autoaug_policy.py',
               'train_dataloader = dict(dataset=dict(pipeline={{_base_.autoaug_coco_train_pipeline}}))'),
    'batch': ('configs/_base_/det_autoaug_batch.py',
              'model = dict(data_preprocessor=dict(batch_augments=[{{_base_.batch_policy_augment}}]))'),
}


def user_config(tmp_path: Path, detector: str, recipe: str) -> Path:
    stock = _mmdet_configs() / STOCK[detector][0]
    fragment, line = RECIPES[recipe]
    text = f"_base_ = ['{stock}', '{ROOT / fragment}']\n{line}\n"
    assert len(text.splitlines()) - 1 <= 3
    path = tmp_path / f'{detector}_{recipe}.py'
    path.write_text(text)
    return path


def shrink_for_cpu(cfg: Config, detector: str, digits: Path, work_dir: Path) -> None:
    """Test-only changes: a slim model (keeping the user's data preprocessor), tiny data, 2 iterations."""
    model = Config.fromfile(str(ROOT / STOCK[detector][1])).model
    model.data_preprocessor = cfg.model.data_preprocessor
    cfg.model = model
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.pop('batch_sampler', None)
    cfg.train_dataloader.dataset.update(data_root=str(digits) + '/', ann_file='train.json',
                                        data_prefix=dict(img='images/'), metainfo=dict(classes=tuple('0123456789')))
    for t in cfg.train_dataloader.dataset.pipeline:
        if t['type'] == 'Resize':
            t['scale'] = (SCALE, SCALE)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.param_scheduler = []
    cfg.optim_wrapper.optimizer.lr = 0.001
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1000, by_epoch=False, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False)
    cfg.visualizer.name = f'vis_{work_dir.parent.name}'
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=0)


@pytest.mark.parametrize('detector', sorted(STOCK))
@pytest.mark.parametrize('recipe', sorted(RECIPES))
def test_stock_mmdet_config_plus_recipe_trains_two_iterations(detector, recipe, digits, tmp_path, registered):
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(user_config(tmp_path, detector, recipe)))
    assert cfg.custom_imports == dict(imports=['det_autoaug.mmdet_plugins'], allow_failed_imports=False)
    shrink_for_cpu(cfg, detector, digits, tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner._experiment_name = f'{detector}_{recipe}_{tmp_path.name}'
    runner.train()
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert math.isfinite(loss), f'loss {loss}'
    if recipe == 'policy':
        names = [type(t).__name__ for t in runner.train_dataloader.dataset.pipeline.transforms]
        assert 'PolicyAugment' in names
    else:
        (aug,) = runner.model.data_preprocessor.batch_augments
        assert type(aug).__name__ == 'BatchPolicyAugment' and aug.generator is not None  # it ran


# ---------------------------------------------------------------- bad values fail at build time

def test_bad_policy_values_raise_when_components_are_built(digits, tmp_path, registered):
    from mmdet.registry import DATASETS, MODELS, TRANSFORMS
    with pytest.raises(ValueError, match='no_such_policy'):
        TRANSFORMS.build(dict(type='PolicyAugment', policy='no_such_policy'))
    with pytest.raises(ValueError, match='level'):
        TRANSFORMS.build(dict(type='DARotate', level=99, prob=1.0))
    missing = str(tmp_path / 'missing_policy.json')
    cfg = load('configs/digits/retinanet_slim_digits_autoaug_v0.py')
    set_data_root(cfg, digits)
    cfg.train_dataloader.dataset.pipeline[3]['policy'] = missing
    assert cfg.train_dataloader.dataset.pipeline[3]['type'] == 'PolicyAugment'
    with pytest.raises(FileNotFoundError, match='missing_policy.json'):
        DATASETS.build(cfg.train_dataloader.dataset)
    cfg = load('configs/digits/retinanet_slim_digits_batch_v0.py')
    cfg.model.data_preprocessor.batch_augments[0]['policy'] = 'autoaug_det_v9'
    with pytest.raises(ValueError, match='autoaug_det_v9'):
        MODELS.build(cfg.model)


@pytest.mark.parametrize('path', ALL_CONFIGS)
def test_checkpointing_configs_keep_two_checkpoints(path, registered):
    """mmengine deletes the oldest checkpoint before it writes the next one: with one kept, a kill
    during that save leaves no complete checkpoint to resume from (two kept: last_checkpoint still
    names the previous, complete one until the new one is written)."""
    hook = (load(path).get('default_hooks') or {}).get('checkpoint')
    if hook is None or hook.get('interval', -1) == -1 and not hook.get('save_last', True):
        return
    keep = hook.get('max_keep_ckpts', -1)
    assert keep == -1 or keep >= 2, f'{path}: checkpoint hook keeps max_keep_ckpts={keep}, expected -1 or >= 2'
