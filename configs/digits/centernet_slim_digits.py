# Slim CenterNet on the embedded digits dataset, trained from scratch on the CPU (no augmentation
# beyond resizing): the detection regime of the comparison (docs/results.md, "Sizing").
_base_ = [
    '../_base_/models/centernet_slim.py',
    '../_base_/datasets/det_digits.py',
    '../_base_/digits_runtime.py',
]
# Adam suits the heatmap head from scratch (mmdet's CenterNet recipes use Adam for ResNet-18 too).
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=0.004, weight_decay=0.0),
    clip_grad=dict(max_norm=35, norm_type=2))

# CenterNetHead reads each test image's 'border' (its offset in the padded canvas), which mmdet's
# CenterNet recipes set with RandomCenterCropPad in test mode; the train pipeline stays as it is.
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args=None),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomCenterCropPad', ratios=None, border=None, mean=[0, 0, 0], std=[1, 1, 1], to_rgb=False,
         test_mode=True, test_pad_mode=['logical_or', 31], test_pad_add_pix=1),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'border', 'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
