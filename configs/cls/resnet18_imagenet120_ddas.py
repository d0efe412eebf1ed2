# DDAS search on the ImageNet proxy (REFERENCE section 1): ResNet-18, 120 classes x (50 train + 20 val)
# images, batch 64, 40 epochs, SGD lr 0.002 Nesterov 0.9 wd 1e-4; alpha lr 0.003, beta lr 0.001;
# the ddas_imagenet space (32 entries). GPU-sized. val_fraction = 20/70 of the 8,400-image subset.
_base_ = ['./_base_/cls_runtime.py']
data_root = 'data/imagenet'  # set: the folder holding train/<wnid>/*.JPEG
max_epochs = 40
model = dict(
    type='DAImageClassifier',
    backbone=dict(type='DATorchvisionResNet', arch='resnet18', num_classes=120),
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]))
# deterministic resize + centre crop only: the hook makes the augmented copies
train_dataloader = dict(
    batch_size=64, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='DAImageFolder', data_root=data_root, split='train', num_classes=120, class_seed=0,
                 subset=120 * 70, subset_seed=0,
                 pipeline=[dict(type='ResizeCls', size=256), dict(type='CenterCropCls', size=224),
                           dict(type='PackClsInputs')]))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.002, momentum=0.9, nesterov=True, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, convert_to_iter_based=True)]
custom_hooks = [
    dict(type='PolicySearchHook',
         searcher=dict(type='DDAS', signal='one_step', num_policies=3, ops_per_policy=2, init_apply_prob=0.35,
                       lr_alpha=0.003, lr_beta=0.001, explore_ratio=1.0),
         space='ddas_imagenet', val_fraction=20 / 70, bgr_inputs=False, policy_file='policy.json',
         snapshot_interval='epoch'),
]
