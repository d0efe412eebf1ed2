"""Policies: the published detection policies, TrivialAugment, the policy file, sampling and applying chains.

Import-light (torch, numpy, cv2 through the cv2 kernels; no OpenMMLab), so dataloader workers
and the search can use it. :class:`DetPolicy` applies a policy to ``(image, boxes, labels)`` in
plain numpy or PyTorch.

Modules: ``step`` (``ChainStep``, the one step type), ``sampling`` (the policies and their draws,
``build_policy``), ``apply`` (one chain applier per backend: cv2 and batched torch),
``mmdet_export`` (a policy as an mmdet ``AutoAugment`` config), ``policy_file`` (the JSON file a
search writes; its record types in ``file_schema``, its field checks in ``file_checks``),
``published`` (the published policies), ``api`` (``DetPolicy``). ``policy`` re-exports what it
held before it was split.
"""
from . import policy  # noqa: F401  (the module that held sampling, applying and export before the split)
from .api import DetPolicy, describe_steps
from .apply import apply_chain_np, apply_chains_torch, image_generators, run_chain_np, run_chain_traced
from .mmdet_export import to_mmdet_autoaugment
from .policy_file import (
    SCHEMA,
    VERSION,
    VERSION_SUBPOLICIES,
    PolicyFile,
    Snapshot,
    SubPolicy,
    SubPolicyOp,
    load_policy_file,
    policy_from_dict,
    save_policy_file,
    schedule_index,
)
from .published import PUBLISHED_POLICIES, get_published
from .sampling import (
    TRIVIAL_AUGMENT,
    ChainStep,
    Policy,
    PublishedPolicy,
    SearchedPolicy,
    TrivialAugmentPolicy,
    build_policy,
    trivial_augment_range,
)

__all__ = [
    'DetPolicy', 'describe_steps', 'run_chain_traced',
    'ChainStep', 'Policy', 'PublishedPolicy', 'SearchedPolicy', 'TrivialAugmentPolicy', 'TRIVIAL_AUGMENT',
    'trivial_augment_range', 'build_policy', 'apply_chain_np',
    'apply_chains_torch', 'run_chain_np', 'image_generators', 'schedule_index', 'to_mmdet_autoaugment',
    'PolicyFile', 'Snapshot', 'SubPolicy', 'SubPolicyOp', 'VERSION_SUBPOLICIES', 'load_policy_file',
    'save_policy_file', 'policy_from_dict', 'SCHEMA', 'VERSION',
    'PUBLISHED_POLICIES', 'get_published',
]
