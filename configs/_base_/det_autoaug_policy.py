# Train with a detection augmentation policy in the CPU data pipeline (PolicyAugment).
#
# mmengine does not allow a key to come from two base files, and cannot splice a transform into
# an inherited list, so this fragment only defines new variables; the config that includes it
# sets the training pipeline. Recipe, on top of a stock mmdet config:
#
#   _base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
#             'path/to/det_autoaug/configs/_base_/det_autoaug_policy.py']
#   train_dataloader = dict(dataset=dict(pipeline={{_base_.autoaug_coco_train_pipeline}}))
#
# (the same two lines work for Faster R-CNN, FCOS, ... whose training pipeline is mmdet's
# standard COCO one). With another pipeline, write it out with `policy_augment` after
# RandomFlip, e.g. `dict(type='PolicyAugment', policy='work_dirs/ddas/policy.json')`.
# The policy: a published name 'autoaug_det_v0'..'autoaug_det_v3' or a policy file written
# by the search (tools/search_det.py). PolicyAugment checks it when the dataset is built.
custom_imports = dict(imports=['det_autoaug'], allow_failed_imports=False)

det_autoaug_policy = 'autoaug_det_v0'
policy_augment = dict(type='PolicyAugment', policy=det_autoaug_policy)

# mmdet's standard COCO training pipeline (configs/_base_/datasets/coco_detection.py) with the
# policy after RandomFlip.
autoaug_coco_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    policy_augment,
    dict(type='PackDetInputs'),
]
