# The embedded detection dataset (MNIST digits pasted on photographs, 10 classes '0'..'9',
# images of about 96-128 px) as COCO json files train.json / val.json / test.json + images/.
#
# data_root: the environment variable DET_AUTOAUG_DATA, else the folder below (relative to
# the working directory). tools/search_det.py and tools/browse_policy.py build the dataset with
# det_autoaug.data.det_digits.ensure_det_digits() and fill data_root themselves; for
# mmdet's tools/train.py build it once with `python tools/make_det_data.py --out DIR` and
# export DET_AUTOAUG_DATA=DIR.
# The digits are not mirror-symmetric, so the training pipeline has no RandomFlip.
dataset_type = 'CocoDataset'
data_root = '{{$DET_AUTOAUG_DATA:data/det_digits}}/'
metainfo = dict(classes=('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'))
img_scale = (128, 128)
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='val.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='test.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'val.json', metric='bbox',
                     format_only=False, backend_args=backend_args)
test_evaluator = dict(type='CocoMetric', ann_file=data_root + 'test.json', metric='bbox',
                      format_only=False, backend_args=backend_args)
