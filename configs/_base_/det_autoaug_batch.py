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
# That augment uses the published policy 'autoaug_det_v0'. Another policy (a published name
# 'autoaug_det_v0'..'autoaug_det_v3', 'trivialaugment', or a policy file written by
# tools/search_det.py) goes into the line itself:
#
#   model = dict(data_preprocessor=dict(batch_augments=[
#       dict(type='BatchPolicyAugment', policy='work_dirs/ddas/policy.json')]))
#
# or, with no config written: python tools/train_det.py CONFIG --policy FILE --batch (which also
# keeps batch augments the stock config has, such as YOLOX's BatchSyncRandomResize; the line above
# replaces them).
#
# BatchPolicyAugment reads mean, std and the channel order from the data preprocessor it is built
# in, so the same line is right for every stock preprocessor (ImageNet, caffe-style FCOS,
# RTMDet's, grey): there are no values to copy. Overriding a variable of this file does not work:
# mmengine evaluates a base file on its own, so `{{_base_.batch_policy_augment}}` is always the
# dict built here, whatever the including config assigns afterwards (this file therefore defines
# no policy-name variable to override).
custom_imports = dict(imports=['det_autoaug.mmdet_plugins'], allow_failed_imports=False)

batch_policy_augment = dict(type='BatchPolicyAugment', policy='autoaug_det_v0')
