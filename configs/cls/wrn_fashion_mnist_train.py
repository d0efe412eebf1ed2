# Train WRN-10-1 on 500 Fashion-MNIST training images (50 per class), test on a stratified
# 2,000 of the test set; the augmentation comes from tools/train_cls.py --policy.
_base_ = ['./_base_/wrn_fashion_mnist.py', './_base_/fashion_mnist_train_schedule.py']
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=-1, save_last=True, max_keep_ckpts=2))
