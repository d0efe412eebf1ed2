# A small WideResNet on Fashion-MNIST (grey 28x28 as 3 channels), CPU-sized. No augmentation in
# the base pipeline: the policy under test (train_cls.py --policy) is the only one.
_base_ = ['./cls_runtime.py']
data_root = None  # None: $FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist
# mean/std of Fashion-MNIST's training set on the 0..255 scale
model = dict(
    type='DAImageClassifier',
    backbone=dict(type='DAWideResNet', depth=10, widen_factor=1, num_classes=10, dropout=0.0),
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[72.94] * 3, std=[90.02] * 3))
train_pipeline = [dict(type='PackClsInputs')]
test_pipeline = [dict(type='PackClsInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='DAFashionMNIST', data_root=data_root, split='train', subset=500, subset_seed=0,
                 pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=256, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='DAFashionMNIST', data_root=data_root, split='test', subset=2000, subset_seed=0,
                 pipeline=test_pipeline, test_mode=True))
test_evaluator = dict(type='DAAccuracy', topk=1)
test_cfg = dict(type='TestLoop')
