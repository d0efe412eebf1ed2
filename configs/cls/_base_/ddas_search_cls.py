# PolicySearchHook with DDAS for classification (REFERENCE section 1, official CIFAR settings: the
# one-step signal of the paper; the look-ahead, DDAS's default, needs a search of 12 or more rounds
# of lookahead_steps, see configs/_base_/ddas_search.py).
# The training pipeline must not augment: the hook makes the augmented copies itself.
# Images reach the model as RGB uint8 (det_autoaug.cls datasets), hence bgr_inputs=False.
custom_hooks = [
    dict(
        type='PolicySearchHook',
        searcher=dict(
            type='DDAS',
            signal='one_step',
            num_policies=3,        # K augmented copies per step
            ops_per_policy=2,
            init_apply_prob=0.35,  # initial s
            lr_alpha=0.005,        # CIFAR 0.005, ImageNet 0.003
            lr_beta=0.001,
            explore_ratio=1.0),    # uniform proposals, as the official runs
        space='ddas_cifar',        # 52 entries (ddas_imagenet: 32)
        val_fraction=0.5,          # 2,000 + 2,000 out of a 4,000-image search subset
        bgr_inputs=False,
        policy_file='policy.json',
        snapshot_interval='epoch'),
]
