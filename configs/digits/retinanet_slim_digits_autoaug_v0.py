# Slim RetinaNet on the digits, with AutoAugment-for-detection policy v0 in the CPU pipeline.
# To train with a searched policy instead, set det_autoaug_policy to the policy file.
_base_ = './retinanet_slim_digits.py'
custom_imports = dict(imports=['det_autoaug.mmdet_plugins'], allow_failed_imports=False)

det_autoaug_policy = 'autoaug_det_v0'
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PolicyAugment', policy=det_autoaug_policy),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
