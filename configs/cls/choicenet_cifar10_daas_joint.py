# DAAS joint architecture + augmentation search on CIFAR-10 (GPU), in the spirit of the paper and
# of DARTS/GDAS: the 50,000 training images split 25,000 + 25,000 (weights / validation loss), batch
# 64, 50 epochs (about 19,550 steps); a supernet of three stages of three choice blocks (widths
# 64, 128, 256); tau annealed 10 -> 0.1 as GDAS; architecture Adam lr 3e-4 (DARTS); policy rates of
# the official DDAS CIFAR runs. Search-time SGD with momentum 0.9 and no weight decay (the candidates
# off the sampled path get a zero gradient, which weight decay would turn into shrinking).
#   python tools/search_cls.py configs/cls/choicenet_cifar10_daas_joint.py --device cuda \
#       --cfg-options train_dataloader.dataset.data_root=/data/cifar
# Paper numbers to answer to: CIFAR-10 97.91% (after training the found network, not reproduced here).
_base_ = ['./_base_/cls_runtime.py']
data_root = 'data/cifar'  # set: the folder holding cifar-10-batches-py
max_epochs = 50
batch_size = 64
steps = max_epochs * ((50000 // 2 + batch_size - 1) // batch_size)
model = dict(
    type='DAImageClassifier',
    backbone=dict(type='DAChoiceNet', widths=(64, 128, 256), blocks_per_stage=3, num_classes=10,
                  candidates=('conv3x3', 'conv5x5', 'sepconv3x3', 'dilconv3x3', 'maxpool3x3', 'skip')),
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[125.31, 122.95, 113.87], std=[62.99, 62.09, 66.70]))
# no augmentation in the search pipeline: the hook makes the augmented copies
train_dataloader = dict(
    batch_size=batch_size, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='DACIFAR', data_root=data_root, variant='cifar10', split='train',
                 pipeline=[dict(type='PackClsInputs')]))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.025, momentum=0.9, weight_decay=0.0))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, convert_to_iter_based=True)]
custom_hooks = [
    dict(type='PolicySearchHook',
         searcher=dict(type='DAASJoint', ops_per_policy=2, init_apply_prob=0.35, lr_alpha=0.005, lr_beta=0.001,
                       baseline_decay=0.9, lr_arch=3e-4, tau=10.0, tau_min=0.1, tau_decay=0.01 ** (1.0 / steps),
                       arch_file='arch.json'),
         space='ddas_cifar', val_fraction=0.5, bgr_inputs=False, policy_file='policy.json',
         snapshot_interval='epoch'),
]
# DDP (a launcher): the candidates off the sampled path get no gradient in the weights' backward
find_unused_parameters = True
