# Faster R-CNN R-50 FPN, 1x COCO schedule, with the AutoAugment-for-detection policy v0 (Zoph et al. 2019)
# applied in the CPU data pipeline after RandomFlip: the stock mmdet config plus two lines.
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', '../_base_/det_autoaug_policy.py']
train_dataloader = dict(dataset=dict(pipeline={{_base_.autoaug_coco_train_pipeline}}))
