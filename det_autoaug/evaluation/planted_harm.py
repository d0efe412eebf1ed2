"""A planted-harm harness: does a searcher move probability away from the ops that hurt?

On Fashion-MNIST (embedded; the shoe classes all face one way, so flips move training away from
the test distribution) with a small CNN, over a small space whose entries range from helpful to
harmful:

1. **Ground truth.** Train with each entry alone (applied to each image with probability
   ``gt_prob``) and with none, for several seeds; an entry's effect is its mean test accuracy
   minus none's, paired by seed. Entries whose effect is below ``-t * se`` (``se`` the standard
   error of the paired differences, ``t`` Student's two-sided 95% quantile with ``seeds - 1``
   degrees of freedom: 2.78 for 5 seeds, 4.30 for 3) are *harmful*, above ``+t * se``
   *helpful*.
2. **Searches.** Each searcher (DDAS with the centred or the published estimator, DDAS with a
   50-step delayed credit, DDAS with the 50-step look-ahead signal, DAAS, DADA)
   trains the same CNN from scratch for the same number of steps while it searches; its final
   per-entry probabilities give the *harmful mass* (summed over the harmful entries).
3. **Null.** The same search with its rewards shuffled (:func:`make_null`): DDAS's K rewards of
   each step permuted across its proposals; DAAS's validation losses and DADA's finite-difference
   derivative and magnitude gradient taken from a step drawn from the last 50 (one sample a step:
   nothing to permute within it). A search whose policy learns from nothing but noise. A
   searcher *separates* when its harmful mass is below the null's 5th percentile.

Everything is seeded, and every run is independent of the others: :func:`run_tasks` runs them in
worker processes (one torch thread each) with the same results as one after the other.
"""
from __future__ import annotations

import inspect
import math
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from ..data.fashion_mnist import load_fashion_mnist
from ..ops.spaces import SpaceEntry
from ..ops.table import get_op
from ..search.searchers import TorchSearchContext, build_searcher, select_images


def planted_space() -> Tuple[SpaceEntry, ...]:
    """10 entries: mild geometric ops (expected to help), flips, large shifts and rotations, Invert."""
    def at(op: str, level: float) -> SpaceEntry:
        return SpaceEntry(op, round(get_op(op).magnitude_at(level, 'ddas'), 6), float(level))
    return (SpaceEntry('Identity', 1.0), SpaceEntry('FlipLR', 1.0), SpaceEntry('FlipUD', 1.0),
            SpaceEntry('Invert', 1.0), at('Rotate', 3), at('Rotate', 14), at('TranslateX', 3),
            at('TranslateX', 14), at('TranslateY', 3), at('ShearX', 3))


@dataclass
class Setting:
    """Sizes and schedule of the harness (defaults: the full run; see :func:`quick_setting`)."""

    per_class: int = 50           # training images per class
    val_images: int = 500         # held-out training images: the searchers' validation batches
    test_images: int = 2000       # Fashion-MNIST test images used for the ground truth
    batch: int = 32
    steps: int = 800              # training steps of every run (ground truth and search)
    lr: float = 0.05              # SGD, momentum 0.9, cosine to 0
    gt_prob: float = 0.5          # probability that a ground-truth run augments an image
    seeds: Tuple[int, ...] = (0, 1, 2, 3, 4)
    null_seeds: Tuple[int, ...] = tuple(range(10))
    searchers: Dict[str, dict] = field(default_factory=lambda: {
        # DDAS's defaults (the look-ahead, 6 single-entry policies per round), one round per 50 steps
        'ddas': dict(name='ddas', cfg=dict(lookahead_steps=50, lookahead_val_batches=16)),
        # the one-step signal at the learning rates of the shipped Fashion-MNIST search config
        # (configs/cls/wrn_fashion_mnist_ddas.py): DDAS's default until 2026-12-04
        'ddas_one_step': dict(name='ddas', cfg=dict(signal='one_step', lr_alpha=0.03, lr_beta=0.006)),
        'ddas_paper': dict(name='ddas', cfg=dict(signal='one_step', lr_alpha=0.03, lr_beta=0.006, estimator='paper')),
        'ddas_h50': dict(name='ddas', cfg=dict(signal='one_step', lr_alpha=0.03, lr_beta=0.006, horizon=50)),
        # the look-ahead with 3 proposals per round (its first measured form)
        'ddas_lookahead': dict(name='ddas', cfg=dict(lookahead_steps=50, lookahead_val_batches=16, num_policies=3)),
        # DAAS's defaults (the look-ahead reward, 6 policies drawn from p per round), one round per 50 steps
        'daas': dict(name='daas', cfg=dict(lookahead_steps=50, lookahead_val_batches=16)),
        # the paired one-step reward at the Fashion-MNIST config's rates: DAAS's default until 2026-12-04
        'daas_paired': dict(name='daas', cfg=dict(reward='paired', lr_alpha=0.03, lr_beta=0.006)),
        'dada': dict(name='dada', cfg=dict()),
    })


def quick_setting() -> Setting:
    """Seconds-sized: the test suite runs every path of the harness with it (no claim on results)."""
    return Setting(per_class=4, val_images=40, test_images=60, batch=8, steps=4, seeds=(0,), null_seeds=(0, 1),
                   searchers={'ddas': dict(name='ddas', cfg=dict(lookahead_steps=2, lookahead_val_batches=2)),
                              'ddas_one_step': dict(name='ddas', cfg=dict(signal='one_step')),
                              'daas': dict(name='daas', cfg=dict(lookahead_steps=2, lookahead_val_batches=2)),
                              'daas_paired': dict(name='daas', cfg=dict(reward='paired')),
                              'dada': dict(name='dada', cfg=dict())})


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head for (B, 1, 28, 28) images on the 0..255 scale."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x / 255.0).flatten(1))


@dataclass
class Data:
    train: Tuple[Tensor, Tensor]
    val: Tuple[Tensor, Tensor]
    test: Tuple[Tensor, Tensor]


def load_data(setting: Setting, seed: int = 0, root: Optional[str] = None) -> Data:
    """A class-balanced training set, a held-out validation set and a test subset (seeded)."""
    images, labels = load_fashion_mnist(root, 'train')
    rng = np.random.default_rng(seed)
    train_idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), setting.per_class, replace=False)
                                for c in range(10)])
    rest = np.setdiff1d(np.arange(len(labels)), train_idx)
    val_idx = rng.choice(rest, setting.val_images, replace=False)
    test_images, test_labels = load_fashion_mnist(root, 'test')
    test_idx = rng.choice(len(test_labels), setting.test_images, replace=False)

    def pack(imgs: np.ndarray, labs: np.ndarray, idx: np.ndarray) -> Tuple[Tensor, Tensor]:
        return torch.from_numpy(imgs[idx]).float()[:, None], torch.from_numpy(labs[idx])
    return Data(pack(images, labels, train_idx), pack(images, labels, val_idx),
                pack(test_images, test_labels, test_idx))


def _batches(data: Tuple[Tensor, Tensor], batch: int, gen: torch.Generator) -> Callable[[], dict]:
    """An endless stream of shuffled batches of ``data`` (reshuffled every pass)."""
    x, y = data
    order: List[int] = []

    def next_batch() -> dict:
        nonlocal order
        if len(order) < batch:
            order = torch.randperm(len(y), generator=gen).tolist()
        idx, order = order[:batch], order[batch:]
        return dict(inputs=x[idx], targets=y[idx])
    return next_batch


def _context(setting: Setting, data: Data, seed: int, num_slots: int,
             steps: Optional[int] = None) -> Tuple[TorchSearchContext, Callable]:
    """The seeded CNN, SGD (momentum 0.9, ``setting.lr``), its context over ``data.val`` batches, and a
    cosine schedule over ``steps`` (default ``setting.steps``)."""
    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=setting.lr, momentum=0.9)
    val_stream = _batches(data.val, setting.batch, torch.Generator().manual_seed(seed + 1))
    ctx = TorchSearchContext(model, nn.functional.cross_entropy, opt, val_stream, num_slots, seed=seed)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, setting.steps if steps is None else steps)
    return ctx, sched


def accuracy(model: nn.Module, data: Tuple[Tensor, Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in zip(data[0].split(500), data[1].split(500)))
    model.train()
    return correct / len(data[1])


def train_with_entry(setting: Setting, data: Data, entry: Optional[SpaceEntry], seed: int) -> float:
    """Test accuracy after training with ``entry`` applied per image with ``gt_prob`` (None: no augmentation)."""
    ctx, sched = _context(setting, data, seed, num_slots=1)
    stream = _batches(data.train, setting.batch, torch.Generator().manual_seed(seed + 2))
    mask_gen = torch.Generator().manual_seed(seed + 3)
    for _ in range(setting.steps):
        batch = stream()
        if entry is not None:
            mask = (torch.rand(len(batch['targets']), generator=mask_gen) < setting.gt_prob).tolist()
            batch = select_images(batch, ctx.augment(batch, [entry.step()]), mask)
        ctx.zero_grad()
        ctx.train_loss_grad(batch)
        ctx.optimizer_step()
        sched.step()
    return accuracy(ctx.model, data.test)


def _init_worker() -> None:
    torch.set_num_threads(1)


def run_tasks(fn: Callable, tasks: Sequence[tuple], jobs: int = 1) -> list:
    """``[fn(*task) for task in tasks]``, in ``jobs`` worker processes (one torch thread each) when > 1."""
    if jobs <= 1:
        return [fn(*task) for task in tasks]
    with ProcessPoolExecutor(jobs, initializer=_init_worker) as pool:
        return list(pool.map(fn, *zip(*tasks)))


def classify(effect: float, se: Optional[float], n: int) -> str:
    """``'harmful'`` / ``'helpful'`` when the paired effect is beyond Student's two-sided 95% bound."""
    if se is None or n < 2:
        return 'neutral'
    bound = float(stats.t.ppf(0.975, n - 1)) * se
    return 'harmful' if effect < -bound else 'helpful' if effect > bound else 'neutral'


def ground_truth(setting: Setting, data: Data, entries: Sequence[SpaceEntry],
                 log: Callable[[str], None] = print, jobs: int = 1) -> dict:
    """Per-entry test accuracies over the seeds, effects against none, and the harmful/helpful sets."""
    arms = [None, *entries]
    accs = run_tasks(train_with_entry, [(setting, data, e, s) for e in arms for s in setting.seeds], jobs)
    n = len(setting.seeds)
    none = accs[:n]
    log(f'none: {np.mean(none):.4f} +- {np.std(none, ddof=1) if n > 1 else 0:.4f}')
    rows = paired_effects(none, {e.label: accs[i * n:(i + 1) * n] for i, e in enumerate(entries, start=1)},
                          'acc', log)
    return dict(none=none, entries=rows, rule='effect beyond t(0.975, seeds - 1) * se')


def paired_effects(none: Sequence[float], per_entry: Dict[str, Sequence[float]], metric: str,
                   log: Callable[[str], None] = print) -> List[dict]:
    """One row per entry: its per-seed ``metric`` values, the mean effect against ``none`` paired by
    seed (same initialisation and data order), its standard error and its :func:`classify` class."""
    n = len(none)
    rows = []
    for label, values in per_entry.items():
        if len(values) != n:
            raise ValueError(f'{label}: {len(values)} seeds of {metric} but none has {n}: expected paired seeds')
        diff = np.array(values) - np.array(none)
        se = float(np.std(diff, ddof=1) / math.sqrt(n)) if n > 1 else None  # None: one seed
        rows.append(dict(entry=label, **{metric: list(values)}, effect=float(diff.mean()), se=se,
                         **{'class': classify(float(diff.mean()), se, n)}))
        log(f'{label:>16}: {np.mean(values):.4f}  effect {diff.mean():+.4f} (se {se}) {rows[-1]["class"]}')
    return rows


def _shuffle_rewards(searcher, gen: torch.Generator) -> None:
    """Permute each step's rewards across its proposals before the policy sees them (the null):
    DDAS's ``policy.update``, or DAAS's look-ahead ``update_lookahead``."""
    if hasattr(searcher, 'update_lookahead'):
        update_lookahead = searcher.update_lookahead

        def shuffled_lookahead(proposal, rewards):
            return update_lookahead(proposal, rewards[torch.randperm(len(rewards), generator=gen)])
        searcher.update_lookahead = shuffled_lookahead
        return
    policy = searcher.policy
    update = policy.update

    def shuffled(proposal, dot_aug, dot_clean):
        return update(proposal, dot_aug[torch.randperm(len(dot_aug), generator=gen)], dot_clean)
    policy.update = shuffled


# What a searcher's ``update_policy`` learns from, for the null of a searcher with one sample per step
NULL_ARGUMENTS = {'daas': ('val_loss', 'val_loss_before'), 'dada': ('d', 'grad_mag')}


def _shuffle_in_time(searcher, gen: torch.Generator, names: Sequence[str], window: int) -> None:
    """Feed ``searcher.update_policy`` the arguments ``names`` of a step drawn uniformly from the last
    ``window`` steps (this one included) instead of its own: the outcome no longer belongs to the
    policy drawn, while the outcomes' distribution is kept."""
    update = searcher.update_policy
    signature = inspect.signature(update)
    recent: deque = deque(maxlen=window)

    def shuffled(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        recent.append(tuple(bound.arguments.get(n) for n in names))
        pick = recent[int(torch.randint(len(recent), (1,), generator=gen))]
        bound.arguments.update(zip(names, pick))
        return update(*bound.args, **bound.kwargs)
    searcher.update_policy = shuffled


def make_null(searcher, gen: torch.Generator, window: int = 50) -> str:
    """Turn ``searcher`` into its shuffled-reward null; returns which kind.

    - ``'proposals'`` (DDAS, K >= 2 proposals a step or round; DAAS's look-ahead, K >= 2 a round): each
      update's K rewards permuted across its proposals.
    - ``'time'`` (DAAS: one policy a step, rewarded by its validation losses; DADA: one sub-policy a
      step, credited with the finite-difference derivative ``d`` and the magnitude gradient): the
      policy update receives those of a step drawn from the last ``window`` steps.
    """
    if hasattr(searcher, 'policy') and getattr(searcher, 'num_policies', 1) >= 2:
        _shuffle_rewards(searcher, gen)
        return 'proposals'
    names = NULL_ARGUMENTS.get(getattr(searcher, 'name', None))
    if names is None or not hasattr(searcher, 'update_policy'):
        raise ValueError(f'no shuffled-reward null for searcher {type(searcher).__name__} '
                         f'(name {getattr(searcher, "name", None)!r}): expected DDAS with K >= 2, DAAS or DADA')
    _shuffle_in_time(searcher, gen, names, window)
    return 'time'


def entry_probs(searcher) -> List[float]:
    """Per-entry probability of being used: DDAS/DAAS ``p``; DADA: its op probabilities spread over entries."""
    if hasattr(searcher, 'policy') and hasattr(searcher.policy, 'probs'):
        return [float(v) for v in searcher.policy.probs().detach()]
    ops = searcher.op_probs()  # DADA: one probability per op (at its mean magnitude): split over its entries
    total = sum(ops.values())
    count = {op: sum(e.op == op for e in searcher.entries) for op in ops}
    return [ops.get(e.op, 0.0) / total / count.get(e.op, 1) for e in searcher.entries]


def run_search(setting: Setting, data: Data, entries: Sequence[SpaceEntry], spec: dict, seed: int,
               null: bool = False) -> dict:
    """One search of ``setting.steps`` steps; the final per-entry probabilities and its cost."""
    searcher = build_searcher(spec['name'], entries, spec['cfg'])
    if null:
        make_null(searcher, torch.Generator().manual_seed(seed + 77))
    ctx, sched = _context(setting, data, seed, searcher.num_grad_slots)
    stream = _batches(data.train, setting.batch, torch.Generator().manual_seed(seed + 2))
    start = time.perf_counter()
    for _ in range(setting.steps):
        searcher.step(ctx, stream())
        sched.step()
    return dict(probs=entry_probs(searcher), seconds=time.perf_counter() - start,
                test_acc=accuracy(ctx.model, data.test))


def mass(probs: Sequence[float], labels: Sequence[str], chosen: Sequence[str]) -> float:
    return float(sum(p for p, lab in zip(probs, labels) if lab in chosen))


def summarise(gt: dict, searches: Dict[str, List[dict]], nulls: Dict[str, List[dict]],
              labels: Sequence[str]) -> dict:
    """Harmful and helpful mass of every search against the uniform share and the null's percentiles."""
    harmful = [r['entry'] for r in gt['entries'] if r['class'] == 'harmful']
    helpful = [r['entry'] for r in gt['entries'] if r['class'] == 'helpful']
    out = dict(harmful=harmful, helpful=helpful, uniform_harmful=len(harmful) / len(labels),
               uniform_helpful=len(helpful) / len(labels), searchers={})
    for name, runs in searches.items():
        h = [mass(r['probs'], labels, harmful) for r in runs]
        g = [mass(r['probs'], labels, helpful) for r in runs]
        row = dict(harmful_mass=h, helpful_mass=g)
        null_runs = nulls.get(name)
        if null_runs:
            null_h = [mass(r['probs'], labels, harmful) for r in null_runs]
            row['null_harmful_mass'] = null_h
            row['null_p05'] = float(np.percentile(null_h, 5))
            row['separated'] = sum(v < row['null_p05'] for v in h)
            # the helpful side, where the ground truth has helpful entries: above the null's 95th percentile
            null_g = [mass(r['probs'], labels, helpful) for r in null_runs]
            row['null_helpful_mass'] = null_g
            row['null_helpful_p95'] = float(np.percentile(null_g, 95))
            row['helpful_separated'] = sum(v > row['null_helpful_p95'] for v in g)
        out['searchers'][name] = row
    return out
