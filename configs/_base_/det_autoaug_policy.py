# Train with a detection augmentation policy in the CPU data pipeline (PolicyAugment).
#
# mmengine does not allow a key to come from two base files, and cannot splice a transform into
# an inherited list, so this fragment only defines new variables; the config that includes it
# sets the training pipeline. Recipe, on top of a stock mmdet config (the same two lines work for
# RetinaNet, Faster R-CNN, FCOS, ... whose training pipeline is mmdet's standard COCO one):
#
#   _base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
#             'path/to/det_autoaug/configs/_base_/det_autoaug_policy.py']
#   train_dataloader = dict(dataset=dict(pipeline={{_base_.autoaug_coco_train_pipeline}}))
#
# That pipeline uses the published policy 'autoaug_det_v0'. Another policy (a published name
# 'autoaug_det_v0'..'autoaug_det_v3', 'trivialaugment', or a policy file written by
# tools/search_det.py) goes into the pipeline line itself:
#
#   train_dataloader = dict(dataset=dict(pipeline=[
#       *_base_.coco_pipeline_before_policy,
#       dict(type='PolicyAugment', policy='work_dirs/ddas/policy.json'),
#       *_base_.coco_pipeline_after_policy]))
#
# Overriding a variable of this file does not work: mmengine evaluates a base file on its own,
# so `{{_base_.autoaug_coco_train_pipeline}}` is always the list built here, whatever the
# including config assigns afterwards (this file therefore defines no policy-name variable to
# override). PolicyAugment checks the policy when the dataset is built. With another pipeline,
# write it out with a PolicyAugment after RandomFlip.
custom_imports = dict(imports=['det_autoaug.mmdet_plugins'], allow_failed_imports=False)

# mmdet's standard COCO training pipeline (configs/_base_/datasets/coco_detection.py), split
# where the policy goes: after RandomFlip, before PackDetInputs.
coco_pipeline_before_policy = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
]
coco_pipeline_after_policy = [dict(type='PackDetInputs')]

policy_augment = dict(type='PolicyAugment', policy='autoaug_det_v0')
autoaug_coco_train_pipeline = [*coco_pipeline_before_policy, policy_augment, *coco_pipeline_after_policy]
