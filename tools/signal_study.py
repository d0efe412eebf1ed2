#!/usr/bin/env python
"""Which search signal ranks the planted-harm entries by their measured benefit, and when?

On the planted-harm setting (:mod:`det_autoaug.evaluation.planted_harm`), one model trains with
the uniform policy (each image augmented with probability 0.35 by one entry per batch). Every
``--round`` steps, from the same training state, every entry gets

- its **one-step DDAS reward** ``<g_e - g_0, g_V>`` (the gradient of the batch augmented by the
  entry minus the clean one, against the validation gradient), summed over every 10th batch of
  the round, through the search context's gradient buffers, as DDAS computes it;
- its **look-ahead reward** ``L_clean - L_e``: the validation loss after training ``--round``
  steps on the clean batches minus that after the same steps with every image augmented by the
  entry (the branches of :mod:`det_autoaug.search.lookahead`).

Each signal's per-entry means over each quarter of training are rank-correlated (Spearman) with
the entries' measured effects in a planted-harm ``results.json`` (its ground truth).

    python tools/signal_study.py --seeds 0 1 --jobs 2 --out docs/results/signal_study_fmnist.json

About 4 minutes per seed on one core.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from det_autoaug.evaluation.planted_harm import (  # noqa: E402
    Setting,
    _batches,
    _context,
    load_data,
    planted_space,
    run_tasks,
)
from det_autoaug.search.searchers import select_images  # noqa: E402
from det_autoaug.utils.json_file import write_json_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def study_seed(seed: int, round_steps: int, steps: int, val_batches: int = 16) -> List[Dict[str, list]]:
    """Per round: ``{'step', 'lr', 'lookahead': [per entry], 'one_step': [per entry]}``."""
    setting = Setting(steps=steps)
    data = load_data(setting)
    entries = planted_space()
    n = len(entries)
    ctx, sched = _context(setting, data, seed, num_slots=n + 2)  # rows: clean, entries, validation
    stream = _batches(data.train, setting.batch, torch.Generator().manual_seed(seed + 2))
    mix_gen = torch.Generator().manual_seed(seed + 5)
    val = [ctx.next_val_batch() for _ in range(val_batches)]  # 16: the whole validation split (500 images), fixed
    chains = [[e.step()] for e in entries]
    rounds = []
    for r in range(steps // round_steps):
        batches = [stream() for _ in range(round_steps)]
        start = ctx.train_state()
        g_val = 0.0  # the validation gradient of the whole split (mean over its batches), at the round's start
        for v in val:
            ctx.loss_grad(v, n + 1)
            g_val = g_val + ctx.buffers.buffers[n + 1].double() / len(val)
        one_step = np.zeros(n)
        for batch in batches[::10]:
            ctx.loss_grad(batch, 0)
            for i, chain in enumerate(chains):
                ctx.loss_grad(ctx.augment(batch, chain), i + 1)
            rows = ctx.buffers.buffers.double()
            one_step += ((rows[1:n + 1] - rows[0]) @ g_val).cpu().numpy()
        losses = []
        for chain in [None, *chains]:
            ctx.load_train_state(start)
            for batch in batches:
                ctx.train_step(batch if chain is None else ctx.augment(batch, chain))
            losses.append(float(ctx.val_loss(val)))
        ctx.load_train_state(start)
        lr = ctx.lr()
        for batch in batches:  # the main model: uniform policy, s = 0.35
            i = int(torch.randint(n, (1,), generator=mix_gen))
            mask = (torch.rand(len(batch['targets']), generator=mix_gen) < 0.35).tolist()
            ctx.train_step(select_images(batch, ctx.augment(batch, chains[i]), mask))
            sched.step()
        rounds.append(dict(step=r * round_steps, lr=lr, lookahead=[losses[0] - x for x in losses[1:]],
                           one_step=one_step.tolist()))
    return rounds


def summarise(runs: Dict[str, List[dict]], effects: np.ndarray, quarters: int = 4) -> Dict[str, list]:
    """Spearman of each signal's per-entry mean (over seeds and the rounds of each quarter) with ``effects``."""
    out: Dict[str, list] = {}
    for signal in ('one_step', 'lookahead'):
        values = np.array([[r[signal] for r in rounds] for rounds in runs.values()])  # seeds, rounds, entries
        bounds = np.linspace(0, values.shape[1], min(quarters, values.shape[1]) + 1).round().astype(int)
        rows = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            mean = values[:, lo:hi].mean(axis=(0, 1))
            rows.append(dict(rounds=[int(lo), int(hi)], spearman=float(stats.spearmanr(mean, effects)[0]),
                             per_entry=mean.tolist()))
        single = [stats.spearmanr(values[s, r], effects)[0] for s in range(values.shape[0])
                  for r in range(values.shape[1])]
        out[signal] = dict(quarters=rows, all=float(stats.spearmanr(values.mean(axis=(0, 1)), effects)[0]),
                           single_round_mean=float(np.mean(single)), single_round_sd=float(np.std(single)))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--round', type=int, default=50, help='look-ahead steps per round')
    parser.add_argument('--steps', type=int, default=800, help='training steps (the planted-harm schedule)')
    parser.add_argument('--ground-truth', default=str(ROOT / 'docs' / 'results' / 'planted_harm_fmnist.json'),
                        help="a planted-harm results.json whose 'ground_truth' gives the entries' effects")
    parser.add_argument('--val-batches', type=int, default=16, help='validation batches of 32 (16: all 500 images)')
    parser.add_argument('--jobs', type=int, default=1, help='seeds in parallel (one torch thread each)')
    parser.add_argument('--out', default='work_dirs/signal_study.json')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gt = json.loads(Path(args.ground_truth).read_text())['ground_truth']
    labels = [e.label for e in planted_space()]
    if [r['entry'] for r in gt['entries']] != labels:
        parser.error(f'{args.ground_truth}: its entries are not the planted space {labels}')
    effects = np.array([r['effect'] for r in gt['entries']])
    results = run_tasks(study_seed, [(s, args.round, args.steps, args.val_batches) for s in args.seeds], args.jobs)
    runs = {str(s): r for s, r in zip(args.seeds, results)}
    summary = summarise(runs, effects)
    doc = dict(setting=dict(seeds=args.seeds, round=args.round, steps=args.steps, val_batches=args.val_batches,
                            ground_truth=args.ground_truth),
               space=labels, effects=effects.tolist(), runs=runs, summary=summary)
    write_json_atomic(Path(args.out), doc, 'signal study', 'out')
    quarters = ' | '.join(f'rounds {q["rounds"][0]}-{q["rounds"][1]}' for q in summary['one_step']['quarters'])
    print(f'| signal | {quarters} | all rounds | one round (mean +- sd) |')
    print('|---' * 7 + '|')
    for signal, row in summary.items():
        print(f'| {signal} | ' + ' | '.join(f'{q["spearman"]:+.2f}' for q in row['quarters'])
              + f' | {row["all"]:+.2f} | {row["single_round_mean"]:+.2f} +- {row["single_round_sd"]:.2f} |')
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
