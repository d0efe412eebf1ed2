# DDAS policy search with the slim CenterNet on the digits, on the CPU: the detection regime of
# the comparison (docs/results.md, "Sizing"). The training pipeline does not augment: the hook
# makes the augmented copies. Validation is off: the hook holds out val_fraction of the training
# images for its validation gradients.
_base_ = ['./centernet_slim_digits.py', '../_base_/ddas_search.py']

max_epochs = 3
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs + 1)
val_cfg = None
val_dataloader = None
val_evaluator = None
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', begin=0, end=max_epochs, by_epoch=True, eta_min=0.00004),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
train_dataloader = dict(num_workers=1)
