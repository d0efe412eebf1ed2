"""Policies: the published detection policies, TrivialAugment, the policy file, sampling and applying chains.

Import-light (torch, numpy, cv2 through the cv2 kernels; no OpenMMLab), so dataloader workers
and the search can use it. :class:`DetPolicy` applies a policy to ``(image, boxes, labels)`` in
plain numpy or PyTorch.
"""
from .api import DetPolicy, describe_steps, run_chain_traced
from .policy import (TRIVIAL_AUGMENT, ChainStep, Policy, PublishedPolicy, SearchedPolicy, TrivialAugmentPolicy,
                     apply_chain_np, apply_chains_torch, build_policy, image_generators, run_chain_np, schedule_index,
                     to_mmdet_autoaugment, trivial_augment_range)
from .policy_file import (SCHEMA, VERSION, VERSION_SUBPOLICIES, PolicyFile, Snapshot, SubPolicy, SubPolicyOp,
                          load_policy_file, policy_from_dict, save_policy_file)
from .published import PUBLISHED_POLICIES, get_published

__all__ = [
    'DetPolicy', 'describe_steps', 'run_chain_traced',
    'ChainStep', 'Policy', 'PublishedPolicy', 'SearchedPolicy', 'TrivialAugmentPolicy', 'TRIVIAL_AUGMENT',
    'trivial_augment_range', 'build_policy', 'apply_chain_np',
    'apply_chains_torch', 'run_chain_np', 'image_generators', 'schedule_index', 'to_mmdet_autoaugment',
    'PolicyFile', 'Snapshot', 'SubPolicy', 'SubPolicyOp', 'VERSION_SUBPOLICIES', 'load_policy_file', 'save_policy_file', 'policy_from_dict', 'SCHEMA', 'VERSION',
    'PUBLISHED_POLICIES', 'get_published',
]
