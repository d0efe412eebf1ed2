"""Classification where augmentation matters: every policy arm and searcher on a regime that overfits.

Fashion-MNIST with the planted-harm harness's small CNN (:mod:`det_autoaug.evaluation.planted_harm`)
on a few training images per class, trained long enough that ``none`` fits its training set. Every
arm trains the same model from scratch with the same data, initialisation, batches and schedule;
only the augmentation differs. Per image, a policy's :meth:`~det_autoaug.policy.policy.Policy.sample_chain`
gives the chain, and :func:`apply_chains_batched` applies it with the package's torch kernels.

Arms (what each is, and its searcher: :mod:`det_autoaug.evaluation.arms`; how it augments here):

- ``none``; ``handpicked`` (:func:`handpicked_policy`: flip, shift by up to 2 px, Cutout);
- ``randaugment`` (:class:`RandAugmentPolicy`: 2 ops drawn uniformly from RandAugment's 14 at
  torchvision's default magnitude 9 of 30); ``trivialaugment`` on the search space's ops;
- ``uniform``: uniform ``p`` over the search space, the DDAS starting point (``s`` 0.35, two
  entries per image), so a searched arm differs from it only in what the search learned;
- each searcher in ``searchers`` (DDAS one-step, DDAS look-ahead, DADA, DAAS): one search per
  seed on the same training images, rewarded on a held-out validation split from the training
  pool (``data.val``), for ``search_steps`` steps; its export is written with
  :func:`~det_autoaug.policy.policy_file.save_policy_file` and the final model is trained from
  scratch with :func:`~det_autoaug.policy.policy.build_policy` of that file. The search's cost
  is counted in model passes (forward calls of the network, with or without a backward) and
  seconds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..ops.spaces import get_space
from ..ops.table import get_op
from ..policy.apply import apply_chains_torch
from ..policy.policy import ChainStep, Policy, build_policy, trivial_augment_range
from ..policy.policy_file import policy_from_dict, save_policy_file
from ..search.searchers import build_searcher
from .arms import get_arm, task_arms
from .planted_harm import Data, _batches, _context, accuracy

#: The classification comparison's arms without a search, built by :func:`baseline_policy` (rows of
#: :data:`det_autoaug.evaluation.arms.ARMS`); its searched arms are :data:`SEARCHED_ARMS`.
BASELINE_ARMS = task_arms('none', 'handpicked', 'randaugment', 'trivialaugment', 'uniform')
SEARCHED_ARMS = task_arms('ddas', 'ddas_one_step', 'ddas_lookahead', 'daas', 'daas_paired', 'dada')
#: RandAugment's 14 ops (Cubuk et al. 2020, as torchvision and timm implement it).
RANDAUGMENT_OPS = ('Identity', 'AutoContrast', 'Equalize', 'Rotate', 'Solarize', 'Color', 'Posterize',
                   'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')
# Classification's part of the searched arms' arguments, as in the planted-harm harness: the look-ahead
# updates once per 50-step round; the one-step DDAS and DAAS arms take the learning rates of the
# shipped Fashion-MNIST search config (configs/cls/wrn_fashion_mnist_ddas.py).
_SEARCH_ARGS = {
    'ddas': dict(lookahead_steps=50, lookahead_val_batches=16),
    'ddas_one_step': dict(lr_alpha=0.03, lr_beta=0.006),
    'ddas_lookahead': dict(lookahead_steps=50, lookahead_val_batches=16),
    'daas': dict(lookahead_steps=50, lookahead_val_batches=16),
    'daas_paired': dict(lr_alpha=0.03, lr_beta=0.006),
}


def _searchers() -> Dict[str, dict]:
    """The searched arms' ``dict(name=searcher, cfg=its arguments)``, for :func:`search`."""
    specs = {}
    for arm in SEARCHED_ARMS:
        name, cfg = get_arm(arm).searcher_cfg(**_SEARCH_ARGS.get(arm, {}))
        specs[arm] = dict(name=name, cfg=cfg)
    return specs


@dataclass
class CompareSetting:
    """Data, schedule and arms of the comparison (defaults: the full run; see :func:`quick_setting`).

    The field names the planted-harm data loader reads (``per_class``, ``val_images``,
    ``test_images``) mean the same here.
    """

    per_class: int = 50           # training images per class
    val_images: int = 500         # held-out training images: the searchers' validation batches
    test_images: int = 10000      # Fashion-MNIST test images (all of them)
    data_seed: int = 0            # which images: the same for every arm and seed
    batch: int = 32
    steps: int = 1500             # training steps of every arm (SGD, momentum 0.9, cosine to 0)
    search_steps: int = 1500      # steps of every search (its own model, same schedule)
    lr: float = 0.05
    seeds: Tuple[int, ...] = (0, 1, 2)
    space: str = 'ddas_cifar'
    uniform_apply_prob: float = 0.35
    uniform_ops_per_policy: int = 2
    randaugment_num_ops: int = 2
    randaugment_magnitude: int = 9    # of randaugment_bins - 1 (torchvision's default 9 of 30)
    randaugment_bins: int = 31
    searchers: Dict[str, dict] = field(default_factory=_searchers)

    @property
    def arms(self) -> Tuple[str, ...]:
        return BASELINE_ARMS + tuple(self.searchers)


def quick_setting() -> CompareSetting:
    """Seconds-sized: the test suite runs every arm with it (no claim on results)."""
    searchers = _searchers()
    for spec in searchers.values():  # rounds of 2 steps, so that one completes
        if 'lookahead_steps' in spec['cfg']:
            spec['cfg'] = dict(spec['cfg'], lookahead_steps=2, lookahead_val_batches=2)
    return CompareSetting(per_class=4, val_images=40, test_images=60, batch=8, steps=4, search_steps=4, seeds=(0,),
                          searchers=searchers)


# ----------------------------------------------------------------------------- policies

class RangePolicy(Policy):
    """A fixed chain whose magnitudes are drawn per image, uniformly in a range.

    Args:
        name: policy name.
        steps: ``(op, prob, low, high)``: the op runs with probability ``prob`` at a magnitude
            uniform in ``[low, high]`` (signed ops also draw a random sign when applied).

    Raises:
        ValueError: unknown op, a probability outside ``[0, 1]`` or a range outside the op's.
    """

    def __init__(self, name: str, steps: Sequence[Tuple[str, float, float, float]]) -> None:
        checked = []
        for op, prob, low, high in steps:
            spec = get_op(op)
            lo, hi = spec.magnitude_range
            if not 0.0 <= prob <= 1.0 or not lo <= low <= high <= hi:
                raise ValueError(f'policy {name!r}: step ({op}, prob={prob}, [{low}, {high}]) is invalid: expected '
                                 f'prob in [0, 1] and low <= high inside the op\'s range [{lo}, {hi}]')
            checked.append((spec.name, float(prob), float(low), float(high)))
        self.name = name
        self.steps = tuple(checked)

    def sample_chain(self, generator: Optional[torch.Generator], epoch: Optional[int] = None,
                     train_epochs: Optional[int] = None) -> List[ChainStep]:
        u = torch.rand(len(self.steps), generator=generator, dtype=torch.float64).tolist()
        return [ChainStep(op, low + v * (high - low), prob) for (op, prob, low, high), v in zip(self.steps, u)]

    def __repr__(self) -> str:
        return f'RangePolicy({self.name!r}, {[s[0] for s in self.steps]})'


def handpicked_policy(image_size: int = 28) -> RangePolicy:
    """What one would pick by hand for Fashion-MNIST, and the best of the variants the sizing tried
    (``docs/results.md``): a left-right flip with probability 1/2 (clothes are left-right symmetric;
    the shoes all face one way, which the planted-harm ground truth found harmless), a shift by up
    to 2 px along each axis and a Cutout square of side up to 0.3 of the image (8 px). Rotations
    (up to 10 degrees) and 3 px shifts hurt in the sizing: the test images are centred and upright,
    and the geometric kernels fill with grey 128 where Fashion-MNIST's background is black."""
    shift = 2.0 / image_size
    return RangePolicy('handpicked', (('FlipLR', 0.5, 1.0, 1.0), ('TranslateX', 1.0, 0.0, shift),
                                      ('TranslateY', 1.0, 0.0, shift), ('Cutout', 1.0, 0.0, 0.3)))


class RandAugmentPolicy(Policy):
    """RandAugment (Cubuk et al., 2020) with the package's kernels: ``num_ops`` ops drawn uniformly
    (with replacement) from :data:`RANDAUGMENT_OPS`, each at the fixed fraction
    ``magnitude / (bins - 1)`` of the way from the identity to the op's TrivialAugment strength
    (:func:`~det_autoaug.policy.policy.trivial_augment_range`; torchvision's defaults: 2 ops, 9 of
    30, e.g. Rotate 9 degrees, Color factor 1 +- 0.27). Colour factors take a random sign, as in
    torchvision; geometric ops draw theirs when applied.
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 9, bins: int = 31) -> None:
        if not 0 <= magnitude < bins or num_ops < 1:
            raise ValueError(f'num_ops={num_ops}, magnitude={magnitude}, bins={bins}: expected num_ops >= 1 and '
                             '0 <= magnitude < bins')
        self.name = f'randaugment_n{num_ops}_m{magnitude}'
        self.num_ops = num_ops
        fraction = magnitude / (bins - 1)
        self.ops = RANDAUGMENT_OPS
        self.magnitudes = []
        for op in self.ops:
            low, high = trivial_augment_range(get_op(op))
            self.magnitudes.append((high * fraction, low < 0.0) if low != high else (high, False))

    def sample_chain(self, generator: Optional[torch.Generator], epoch: Optional[int] = None,
                     train_epochs: Optional[int] = None) -> List[ChainStep]:
        picks = torch.randint(len(self.ops), (self.num_ops,), generator=generator).tolist()
        signs = torch.where(torch.rand(self.num_ops, generator=generator) < 0.5, -1.0, 1.0).tolist()
        chain = []
        for i, sign in zip(picks, signs):
            magnitude, signed = self.magnitudes[i]
            chain.append(ChainStep(self.ops[i], sign * magnitude if signed else magnitude, 1.0))
        return chain

    def __repr__(self) -> str:
        return f'RandAugmentPolicy({self.name!r})'


def uniform_policy(space: str, apply_prob: float, ops_per_policy: int) -> Policy:
    """Uniform ``p`` over ``space``: with ``apply_prob``, ``ops_per_policy`` entries drawn uniformly."""
    entries = get_space(space)
    doc = dict(schema='det_autoaug.policy', version=1, searcher='uniform', space=space,
               entries=[dict(op=e.op, magnitude=e.magnitude, level=e.level) for e in entries],
               probs=[1.0 / len(entries)] * len(entries), apply_prob=apply_prob, ops_per_policy=ops_per_policy,
               trajectory=None, meta={})
    return build_policy(policy_from_dict(doc))


def baseline_policy(arm: str, setting: CompareSetting) -> Optional[Policy]:
    """The policy of a baseline arm (``None`` for ``'none'``)."""
    if arm not in BASELINE_ARMS:
        raise ValueError(f'arm={arm!r} is not a baseline arm: expected one of {BASELINE_ARMS}')
    return _BASELINES[arm](setting)


_BASELINES: Dict[str, Callable[[CompareSetting], Optional[Policy]]] = {
    'none': lambda setting: None,
    'handpicked': lambda setting: handpicked_policy(),
    'randaugment': lambda setting: RandAugmentPolicy(setting.randaugment_num_ops, setting.randaugment_magnitude,
                                                     setting.randaugment_bins),
    'trivialaugment': lambda setting: build_policy(dict(name='trivialaugment', space=setting.space)),
    'uniform': lambda setting: uniform_policy(setting.space, setting.uniform_apply_prob,
                                              setting.uniform_ops_per_policy),
}


# ----------------------------------------------------------------------------- applying and training

def apply_chains_batched(images: Tensor, chains: Sequence[Sequence[ChainStep]],
                         generator: torch.Generator) -> Tensor:
    """One chain per image, applied op by op to the images that share it (classification: no boxes).

    :func:`~det_autoaug.policy.apply.apply_chains_torch` with ``draws='per_op'``: per chain
    position, the images that share an op draw whether it runs and its parameters in one batch from
    ``generator`` (faster than the default per-image draws, which let a draw be replayed image by
    image; reproducible all the same for a seeded generator).

    Args:
        images: ``(B, C, H, W)`` float on the 0..255 scale, or uint8. Not modified.
        chains: ``B`` chains, possibly empty.
        generator: CPU generator of every draw.

    Returns:
        ``(B, C, H, W)`` in the input dtype.
    """
    return apply_chains_torch(images, None, chains, generator, draws='per_op')[0]


def train_with_policy(setting: CompareSetting, data: Data, policy: Optional[Policy], seed: int) -> dict:
    """Train the small CNN from scratch for ``setting.steps`` steps, each image augmented by a chain
    that ``policy`` samples (``None``: no augmentation); initialisation and batches depend only on
    ``seed``.

    Returns:
        ``dict(acc=test accuracy, train_acc=accuracy on the clean training images, seconds)``.
    """
    ctx, sched = _context(setting, data, seed, 1, setting.steps)
    stream = _batches(data.train, setting.batch, torch.Generator().manual_seed(seed + 2))
    aug_gen = torch.Generator().manual_seed(seed + 3)
    start = time.perf_counter()
    for _ in range(setting.steps):
        batch = stream()
        if policy is not None:
            chains = [policy.sample_chain(aug_gen) for _ in range(len(batch['targets']))]
            batch = dict(batch, inputs=apply_chains_batched(batch['inputs'], chains, aug_gen))
        ctx.train_step(batch)
        sched.step()
    seconds = time.perf_counter() - start
    return dict(acc=accuracy(ctx.model, data.test), train_acc=accuracy(ctx.model, data.train), seconds=seconds)


def search(setting: CompareSetting, data: Data, spec: dict, seed: int, policy_path: Path) -> dict:
    """One search of ``setting.search_steps`` steps over ``setting.space``; its export written to ``policy_path``.

    Returns:
        ``dict(policy_file, model_passes, seconds, apply_prob, ops_per_policy, top)``: ``top`` the five
        most probable entries (DADA: ops) with ``p * N``, how far above uniform.
    """
    entries = get_space(setting.space)
    searcher = build_searcher(spec['name'], entries, spec['cfg'])
    ctx, sched = _context(setting, data, seed, searcher.num_grad_slots, setting.search_steps)
    passes = [0]
    hook = ctx.model.register_forward_pre_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))
    stream = _batches(data.train, setting.batch, torch.Generator().manual_seed(seed + 2))
    start = time.perf_counter()
    for _ in range(setting.search_steps):
        searcher.step(ctx, stream())
        sched.step()
    seconds = time.perf_counter() - start
    hook.remove()
    searcher.snapshot(1)  # the final policy, as the search hook records it at the end of a run
    exported = searcher.export()
    policy_file = save_policy_file(policy_path, space=setting.space, meta=dict(search_steps=setting.search_steps,
                                                                               seed=seed, spec=spec), **exported)
    labels = [e.label for e in policy_file.entries]
    probs = np.asarray(policy_file.probs)
    top = [(labels[i], round(float(probs[i] * len(probs)), 3)) for i in np.argsort(-probs)[:5]]
    return dict(policy_file=str(policy_path), model_passes=passes[0], seconds=seconds,
                apply_prob=policy_file.apply_prob, ops_per_policy=policy_file.ops_per_policy, top=top)


# ----------------------------------------------------------------------------- summary

def pooled_std(a: Sequence[float], b: Sequence[float]) -> float:
    """``sqrt((s_a^2 + s_b^2) / 2)`` of the sample standard deviations (0 with fewer than 2 seeds)."""
    if len(a) < 2 or len(b) < 2:
        return 0.0
    return math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)


def summarise(arms: Dict[str, Dict[str, List[float]]]) -> List[dict]:
    """Per arm: mean and std of the test accuracy and its difference from ``none`` and ``uniform``,
    also in pooled seed standard deviations (``None`` where the reference or a spread is missing)."""
    rows = []
    for name, arm in arms.items():
        acc = arm['acc']
        row = dict(arm=name, seeds=len(acc), mean=float(np.mean(acc)),
                   std=float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0)
        for ref in ('none', 'uniform'):
            other = arms.get(ref, {}).get('acc')
            if other:
                diff = float(np.mean(acc) - np.mean(other))
                pooled = pooled_std(acc, other)
                row[f'vs_{ref}'] = diff
                row[f'vs_{ref}_pooled_std'] = diff / pooled if pooled > 0 else None
        rows.append(row)
    return rows
