# Train the architecture found by choicenet_fashion_mnist_daas_joint.py on 500 Fashion-MNIST
# training images (as wrn_fashion_mnist_train.py), with the found policy:
#   python tools/train_cls.py configs/cls/choicenet_fashion_mnist_train.py --device cpu \
#       --arch work_dirs/choicenet_fashion_mnist_daas_joint \
#       --policy work_dirs/choicenet_fashion_mnist_daas_joint/policy.json
# The backbone below is the supernet; --arch (required) fixes its blocks to the found ops.
_base_ = ['./_base_/choicenet_fashion_mnist.py', './_base_/fashion_mnist_train_schedule.py']
model = dict(backbone=dict(candidates=('conv3x3', 'sepconv3x3', 'maxpool3x3', 'skip')))  # as the search
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=-1, save_last=True, max_keep_ckpts=2))
