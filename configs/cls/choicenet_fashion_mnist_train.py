# Train the architecture found by choicenet_fashion_mnist_daas_joint.py on 500 Fashion-MNIST
# training images (as wrn_fashion_mnist_train.py), with the found policy:
#   python tools/train_cls.py configs/cls/choicenet_fashion_mnist_train.py --device cpu \
#       --arch work_dirs/choicenet_fashion_mnist_daas_joint \
#       --policy work_dirs/choicenet_fashion_mnist_daas_joint/policy.json
# The backbone below is the supernet; --arch (required) fixes its blocks to the found ops.
_base_ = ['./_base_/choicenet_fashion_mnist.py']
model = dict(backbone=dict(candidates=('conv3x3', 'sepconv3x3', 'maxpool3x3', 'skip')))  # as the search
max_epochs = 10
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs + 1)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, convert_to_iter_based=True)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=-1, save_last=True, max_keep_ckpts=1))
