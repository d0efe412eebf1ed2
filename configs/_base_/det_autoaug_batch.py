# Apply a detection augmentation policy on the training device (GPU) after the data
# preprocessor, as an mmdet batch augment (BatchPolicyAugment).
#
# mmengine does not allow a key to come from two base files, so this fragment only defines
# new variables; the config that includes it adds the batch augment. Recipe, on top of a stock
# mmdet config:
#
#   _base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
#             'path/to/det_autoaug/configs/_base_/det_autoaug_batch.py']
#   model = dict(data_preprocessor=dict(batch_augments=[{{_base_.batch_policy_augment}}]))
#
# BatchPolicyAugment un-normalises the batch with `mean`/`std`, which must be the data
# preprocessor's: the values below are mmdet's default (ImageNet, RGB, bgr_to_rgb=True) used
# by the RetinaNet and Faster R-CNN configs. For a caffe-style config (e.g. FCOS r50-caffe:
# mean=[102.9801, 115.9465, 122.7717], std=[1, 1, 1], bgr_to_rgb=False) copy its values with
#   dict(type='BatchPolicyAugment', policy=...,
#        mean={{_base_.model.data_preprocessor.mean}},
#        std={{_base_.model.data_preprocessor.std}}, channel_order='bgr')
# (det_autoaug.mmdet_plugins.batch_augment.batch_augment_cfg does the same in Python).
custom_imports = dict(imports=['det_autoaug'], allow_failed_imports=False)

det_autoaug_policy = 'autoaug_det_v0'
batch_policy_augment = dict(
    type='BatchPolicyAugment',
    policy=det_autoaug_policy,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    channel_order='rgb')
