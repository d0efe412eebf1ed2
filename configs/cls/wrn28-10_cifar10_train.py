# Final training on CIFAR-10 (GPU): WRN-28-10, 200 epochs, SGD 0.1 Nesterov, wd 5e-4, cosine,
# crop + flip; add the policy with tools/train_cls.py --policy (e.g. the searched policy.json,
# --schedule for the DDAS per-epoch schedule). For WRN-40-2: --cfg-options model.backbone.depth=40
# model.backbone.widen_factor=2.
_base_ = ['./_base_/cls_runtime.py']
data_root = 'data/cifar'
max_epochs = 200
model = dict(
    type='DAImageClassifier',
    backbone=dict(type='DAWideResNet', depth=28, widen_factor=10, num_classes=10, dropout=0.0),
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[125.31, 122.95, 113.87], std=[62.99, 62.09, 66.70]))
train_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=False,  # non-persistent: --schedule reads the epoch
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='DACIFAR', data_root=data_root, variant='cifar10', split='train',
                 pipeline=[dict(type='RandomCropPadCls', padding=4), dict(type='RandomFlipCls', prob=0.5),
                           dict(type='PackClsInputs')]))
test_dataloader = dict(
    batch_size=256, num_workers=4, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='DACIFAR', data_root=data_root, variant='cifar10', split='test', test_mode=True,
                 pipeline=[dict(type='PackClsInputs')]))
test_evaluator = dict(type='DAAccuracy', topk=1)
test_cfg = dict(type='TestLoop')
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs + 1)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, convert_to_iter_based=True)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, save_last=True, max_keep_ckpts=2))
