# DDAS search on a Fashion-MNIST subset with WRN-10-1 on the CPU (a few minutes on 2 cores):
#   python tools/search_cls.py            (this config is the default)
# 2,000 stratified training images: the hook holds out half (1,000 + 1,000, the official 2,000 +
# 2,000 halved). Fewer steps than the official 20 epochs x 63 iterations, so the policy learning
# rates are raised (alpha 0.03, beta 0.006, about 6x) and the model lr is 0.05: see
# docs/results.md, "Classification". The one-step signal: 64 search steps are too few for the
# look-ahead's rounds (DDAS's default; tools/planted_harm.py measures it on Fashion-MNIST).
_base_ = ['./_base_/wrn_fashion_mnist.py', './_base_/ddas_search_cls.py']
max_epochs = 2
train_dataloader = dict(dataset=dict(subset=2000, subset_seed=1))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# search-time SGD as the official runs: no momentum, no weight decay, cosine
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.05, momentum=0.0, weight_decay=0.0))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, convert_to_iter_based=True)]
custom_hooks = [
    dict(type='PolicySearchHook',
         searcher=dict(type='DDAS', signal='one_step', num_policies=3, ops_per_policy=2, init_apply_prob=0.35,
                       lr_alpha=0.03, lr_beta=0.006, explore_ratio=1.0),
         space='ddas_cifar', val_fraction=0.5, bgr_inputs=False, policy_file='policy.json',
         snapshot_interval='epoch'),
]
test_dataloader = None
test_evaluator = None
test_cfg = None
