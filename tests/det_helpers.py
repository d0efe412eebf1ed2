"""Tiny detector configs and data for the search and integration tests (CPU, seconds per run)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = tuple('0123456789')


def make_digits(out: Path, train: int = 12, val: int = 4, test: int = 4, seed: int = 0) -> Path:
    """Build a small embedded detection set with tools/make_det_data.py."""
    cmd = [sys.executable, str(ROOT / 'tools' / 'make_det_data.py'), '--out', str(out), '--seed', str(seed),
           '--train', str(train), '--val', str(val), '--test', str(test)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f'tools/make_det_data.py failed:\n{done.stdout}\n{done.stderr}')
    return out


def slim_retinanet(num_classes: int = 10, width: int = 32) -> dict:
    """A RetinaNet small enough to train on 2 CPU cores in a test."""
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=18, base_channels=16, num_stages=4, out_indices=(1, 2, 3),
                      frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                      style='pytorch', init_cfg=None),
        neck=dict(type='FPN', in_channels=[32, 64, 128], out_channels=width, start_level=0,
                  add_extra_convs='on_input', num_outs=3),
        bbox_head=dict(
            type='RetinaHead', num_classes=num_classes, in_channels=width, stacked_convs=1, feat_channels=width,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=2,
                                  ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                     ignore_iof_thr=-1),
                       sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=20))


def train_pipeline(scale: int = 64, extra: tuple = ()) -> list:
    return [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(scale, scale), keep_ratio=True), *extra, dict(type='PackDetInputs')]


def dataloader(data_root: Path, split: str = 'train', batch_size: int = 2, pipeline=None, shuffle=True) -> dict:
    return dict(batch_size=batch_size, num_workers=0, persistent_workers=False,
                sampler=dict(type='DefaultSampler', shuffle=shuffle),
                dataset=dict(type='CocoDataset', data_root=str(data_root) + '/', ann_file=f'{split}.json',
                             data_prefix=dict(img='images/'), metainfo=dict(classes=CLASSES),
                             filter_cfg=dict(filter_empty_gt=False), pipeline=pipeline or train_pipeline()))


def search_runner_cfg(data_root: Path, work_dir: Path, max_epochs: int = 2, hook: dict | None = None,
                      extra_hooks: list | None = None, **overrides) -> dict:
    """A full Runner config: slim RetinaNet, PolicySearchHook (one-step DDAS with 2 policies), no evaluation.

    ``hook`` updates the hook's config: ``hook=dict(searcher=dict(type='DADA'))`` replaces the searcher.
    """
    hook_cfg = dict(type='PolicySearchHook', searcher=dict(type='DDAS', signal='one_step', num_policies=2),
                    space='det_default', val_fraction=0.25, seed=0)
    hook_cfg.update(hook or {})
    cfg = dict(
        model=slim_retinanet(), work_dir=str(work_dir), default_scope='mmdet',
        train_dataloader=dataloader(data_root),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1000),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[hook_cfg] + list(extra_hooks or []),
        randomness=dict(seed=0), env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        log_level='WARNING')
    cfg.update(overrides)
    return cfg
