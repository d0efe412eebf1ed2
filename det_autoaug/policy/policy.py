"""The former home of the policy layer, kept so that ``det_autoaug.policy.policy`` imports still work.

What it held now lives by concern:

- :mod:`det_autoaug.policy.step`: :class:`ChainStep`, the step every chain applier takes;
- :mod:`det_autoaug.policy.sampling`: the policies (:class:`Policy`,
  :class:`PublishedPolicy`, :class:`TrivialAugmentPolicy`, :class:`SearchedPolicy`), their
  draws, and :func:`build_policy`;
- :mod:`det_autoaug.policy.apply`: applying chains, :func:`run_chain_np` / :func:`apply_chain_np`
  (cv2 kernels) and :func:`apply_chains_torch` (batched torch kernels), :func:`image_generators`;
- :mod:`det_autoaug.policy.mmdet_export`: :func:`export_mmdet_autoaugment` and
  :func:`to_mmdet_autoaugment` (a policy as an mmdet ``AutoAugment`` config).

New code should import from those modules, or from :mod:`det_autoaug.policy`.
"""
from .apply import (
    GeneratorOrList,
    _cat_params,
    _compose_keep,
    _step_params,
    apply_chain_np,
    apply_chains_torch,
    image_generators,
    run_chain_np,
)
from .mmdet_export import (
    _MMDET_EQUIVALENT,
    EXPORT_TV_TOLERANCE,
    IDENTITY_SUBPOLICY,
    MMDET_SCOPE,
    ROUNDING_WARN_FRACTION,
    MmdetExport,
    _exact_distribution,
    _export_candidates,
    _to_mmdet_step,
    _top_k_within,
    export_mmdet_autoaugment,
    to_mmdet_autoaugment,
)
from .policy_file import PolicyFile, load_policy_file, schedule_index
from .published import PUBLISHED_POLICIES
from .sampling import (
    TRIVIAL_AUGMENT,
    TRIVIAL_AUGMENT_MAX_LEVEL,
    ChainStep,
    Policy,
    PolicySpec,
    PublishedPolicy,
    SearchedPolicy,
    TrivialAugmentPolicy,
    _check_prob,
    _policy_from_mapping,
    build_policy,
    trivial_augment_range,
)

__all__ = [
    'ChainStep', 'Policy', 'PolicySpec', 'PublishedPolicy', 'TrivialAugmentPolicy', 'SearchedPolicy',
    'TRIVIAL_AUGMENT', 'TRIVIAL_AUGMENT_MAX_LEVEL', 'trivial_augment_range', 'build_policy',
    'GeneratorOrList', 'image_generators', 'run_chain_np', 'apply_chain_np', 'apply_chains_torch',
    'IDENTITY_SUBPOLICY', 'MMDET_SCOPE', 'ROUNDING_WARN_FRACTION', 'EXPORT_TV_TOLERANCE', 'MmdetExport',
    'export_mmdet_autoaugment', 'to_mmdet_autoaugment',
    'PolicyFile', 'load_policy_file', 'schedule_index', 'PUBLISHED_POLICIES',
]
