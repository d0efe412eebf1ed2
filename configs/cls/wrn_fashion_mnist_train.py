# Train WRN-10-1 on 500 Fashion-MNIST training images (50 per class), test on a stratified
# 2,000 of the test set; the augmentation comes from tools/train_cls.py --policy.
_base_ = ['./_base_/wrn_fashion_mnist.py']
max_epochs = 10
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs + 1)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, convert_to_iter_based=True)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=-1, save_last=True, max_keep_ckpts=1))
