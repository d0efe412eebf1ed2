# FCOS R-50-caffe FPN GN-head, 1x COCO schedule, with a policy searched by DDAS (tools/search_det.py
# configs/coco/retinanet_r50_fpn_ddas_search_coco.py) applied in the CPU data pipeline.
# policy_file: the policy.json the search wrote; edit it here or set the environment variable
# DET_AUTOAUG_POLICY (mmengine substitutes it when the config is read).
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['det_autoaug.mmdet_plugins'], allow_failed_imports=False)

policy_file = '{{$DET_AUTOAUG_POLICY:work_dirs/retinanet_r50_fpn_ddas_search_coco/policy.json}}'
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PolicyAugment', policy=policy_file),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
