# DAAS joint architecture + augmentation search on a Fashion-MNIST subset, CPU (a few minutes on
# 2 cores): python tools/search_cls.py configs/cls/choicenet_fashion_mnist_daas_joint.py --device cpu
# 2,000 stratified images, half held out for the validation loss (as wrn_fashion_mnist_ddas.py);
# 3 epochs = 96 steps, so the policy and architecture learning rates are raised above the
# GPU-sized ones, and tau is annealed 2 -> 0.5 over the run (0.986 ** 96 ~ 0.26). A supernet
# trains slowly (every step another path), so the space is cut to four candidates per block and
# SGD has momentum (the candidates off the path coast on it; no weight decay, which would shrink
# them). A demonstration of the mechanics: 96 steps are far too few for a meaningful architecture.
_base_ = ['./_base_/choicenet_fashion_mnist.py']
max_epochs = 3
model = dict(backbone=dict(candidates=('conv3x3', 'sepconv3x3', 'maxpool3x3', 'skip')))
train_dataloader = dict(dataset=dict(subset=2000, subset_seed=1))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=0.0))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, convert_to_iter_based=True)]
custom_hooks = [
    dict(type='PolicySearchHook',
         searcher=dict(type='DAASJoint', ops_per_policy=2, init_apply_prob=0.35, lr_alpha=0.03, lr_beta=0.006,
                       baseline_decay=0.9, lr_arch=0.03, tau=2.0, tau_min=0.5, tau_decay=0.986, arch_file='arch.json'),
         space='ddas_cifar', val_fraction=0.5, bgr_inputs=False, policy_file='policy.json',
         snapshot_interval='epoch'),
]
test_dataloader = None
test_evaluator = None
test_cfg = None
# DDP (a launcher): the candidates off the sampled path get no gradient in the weights' backward
find_unused_parameters = True
