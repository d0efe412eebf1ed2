# RetinaNet R-50 FPN, 1x COCO schedule, with policy v0 applied on the GPU to the normalised,
# padded batch (BatchPolicyAugment after the data preprocessor): the stock config plus two lines.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/det_autoaug_batch.py']
model = dict(data_preprocessor=dict(batch_augments=[{{_base_.batch_policy_augment}}]))
