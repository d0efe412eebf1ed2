# Search a detection augmentation policy with DDAS while the runner trains (PolicySearchHook).
#
# Include it next to a training config whose own custom_hooks it may then not redefine
# (mmengine allows a key from one base file only):
#
#   _base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
#             'path/to/det_autoaug/configs/_base_/ddas_search.py']
#
# The training pipeline must not augment (no RandomFlip/PolicyAugment needed: the hook makes
# the augmented copies itself). The policy file (policy.json in the work dir) is what
# PolicyAugment / BatchPolicyAugment read: policy='work_dirs/<run>/policy.json'.
# Another searcher: searcher=dict(type='DADA') or dict(type='DAAS', lr_alpha=..., lr_beta=...).
custom_imports = dict(imports=['det_autoaug.mmdet_plugins'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='PolicySearchHook',
        # DDAS's defaults: the look-ahead signal (docs/results.md, "Planted harm"). Every 25 steps
        # 6 single-entry policies are each trained on for those 25 steps from a copy of the model and
        # rewarded with the validation loss they save against a clean copy: about 9 model passes per
        # step. Measured with 12-18 rounds per search: for S search steps, lookahead_steps ~ S / 15.
        # The published DDAS: signal='one_step', estimator='paper' (K = 3, 2 entries, 0.005 / 0.001).
        searcher=dict(
            type='DDAS',
            signal='lookahead',
            num_policies=6,            # K policies per round
            ops_per_policy=1,          # entries per policy
            init_apply_prob=0.35,      # initial probability that an image is augmented
            lr_alpha=0.2,              # Adam lr of the entry logits (one step per round)
            lr_beta=0.04,              # Adam lr of the apply-probability logit
            explore_ratio=1.0,         # probability of a uniform proposal (DDAS: 1)
            lookahead_steps=25,        # L, training steps per round
            lookahead_val_batches=4),  # V, validation batches each branch is scored on
        space='det_default',       # named search space (det_autoaug.ops.spaces.SPACES)
        val_fraction=0.2,          # training images held out for the validation gradient
        val_dataloader=None,       # or a dataloader config that gives validation batches
        policy_file='policy.json',
        snapshot_interval='epoch'),
]
