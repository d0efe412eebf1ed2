# DDAS search on SVHN (core training set), official CIFAR settings (GPU).
_base_ = ['./_base_/cifar_wrn40-2_ddas.py']
data_root = 'data/svhn'  # set: the folder holding train_32x32.mat / test_32x32.mat
model = dict(data_preprocessor=dict(mean=[111.61, 113.16, 120.57], std=[50.50, 51.26, 50.24]))
train_dataloader = dict(dataset=dict(_delete_=True, type='DASVHN', data_root=data_root, split='train',
                                     subset=4000, subset_seed=0, pipeline=[dict(type='PackClsInputs')]))
