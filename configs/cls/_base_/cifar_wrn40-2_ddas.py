# Official DDAS CIFAR search (REFERENCE section 1): WRN-40-2, batch 32, 20 epochs on 2,000 + 2,000
# training images (a stratified 4,000-image subset; the hook holds out half), SGD lr 0.01 cosine,
# no momentum, no weight decay; alpha lr 0.005, beta lr 0.001, s0 = 0.35, K = 3. GPU-sized.
_base_ = ['./cls_runtime.py', './ddas_search_cls.py']
data_root = 'data/cifar'  # set: the folder holding cifar-10-batches-py / cifar-100-python
num_classes = 10
max_epochs = 20
model = dict(
    type='DAImageClassifier',
    backbone=dict(type='DAWideResNet', depth=40, widen_factor=2, num_classes=num_classes, dropout=0.0),
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[125.31, 122.95, 113.87], std=[62.99, 62.09, 66.70]))
# no augmentation in the search pipeline: the hook makes the augmented copies
train_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='DACIFAR', data_root=data_root, variant='cifar10', split='train', subset=4000,
                 subset_seed=0, pipeline=[dict(type='PackClsInputs')]))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.0, weight_decay=0.0))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, convert_to_iter_based=True)]
