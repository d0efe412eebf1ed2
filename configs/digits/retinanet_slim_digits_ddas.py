# DDAS policy search with the slim RetinaNet on the digits, on the CPU (tools/search_det.py's
# default config). The training pipeline does not augment: the hook makes the augmented copies.
# Validation is off: the hook holds out val_fraction of the training images for its
# validation gradients, and the detector's mAP is not what a search run is for.
_base_ = ['./retinanet_slim_digits.py', '../_base_/ddas_search.py']

max_epochs = 3  # 450 search steps, so that tools/search_det.py stays under 10 minutes on 2 CPU cores
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs + 1)
val_cfg = None
val_dataloader = None
val_evaluator = None
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', begin=0, end=max_epochs, by_epoch=True, eta_min=0.0002),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
train_dataloader = dict(num_workers=1)
