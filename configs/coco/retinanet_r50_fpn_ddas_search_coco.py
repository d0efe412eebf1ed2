# DDAS policy search on COCO with RetinaNet R-50 FPN (ImageNet-pretrained backbone, as in the
# stock config), on a GPU:
#   python tools/search_det.py configs/coco/retinanet_r50_fpn_ddas_search_coco.py --device cuda
# Proxy task, as DDAS searches on a reduced set: the first `search_images` training images,
# a few epochs, no evaluation. The stock pipeline (with RandomFlip) is kept so the search sees
# the data the final training sees; the hook holds out 20% of the images for the validation
# gradients and strips the random transforms from their pipeline.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/ddas_search.py']

search_images = 20000
max_epochs = 4
train_dataloader = dict(dataset=dict(indices=search_images))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs + 1)
val_cfg = None
val_dataloader = None
val_evaluator = None
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', begin=0, end=max_epochs, by_epoch=True, eta_min=0.0001),
]
# The look-ahead's round length (DDAS's default signal, configs/_base_/ddas_search.py): 16,000
# training images x 4 epochs at 16 images per step (8 GPUs x 2) make 4,000 steps, so 250-step
# rounds give 16 policy updates, the regime the default learning rates were measured in on the
# embedded data (12-16 rounds); not measured on COCO. With fewer GPUs the steps grow: keep about
# 15 rounds. A round holds its L batches in memory to replay them in its branches.
custom_hooks = [dict(type='PolicySearchHook', searcher=dict(type='DDAS', lookahead_steps=250), space='det_default',
                     val_fraction=0.2, policy_file='policy.json', snapshot_interval='epoch')]
