# The slim CenterNet with a hand-picked augmentation (no search): scale and translation jitter
# (mmdet's RandomAffine, boxes follow and degenerate ones are dropped) plus colour jitter
# (PhotoMetricDistortion). The "sensible augmentation" any searched policy is compared with.
_base_ = ['./centernet_slim_digits.py']
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomAffine', max_rotate_degree=0.0, max_translate_ratio=0.1, scaling_ratio_range=(0.75, 1.25),
         max_shear_degree=0.0, border=(0, 0), border_val=(114, 114, 114)),
    dict(type='PhotoMetricDistortion'),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1)),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
