# DDAS search on CIFAR-100, official settings (GPU).
_base_ = ['./_base_/cifar_wrn40-2_ddas.py']
num_classes = 100
model = dict(backbone=dict(num_classes=num_classes),
             data_preprocessor=dict(mean=[129.30, 124.07, 112.43], std=[68.17, 65.39, 70.42]))
train_dataloader = dict(dataset=dict(variant='cifar100'))
