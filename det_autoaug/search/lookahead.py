"""Look-ahead rewards for DDAS: each proposed policy is trained on for L steps from the same start,
and rewarded with the validation loss it reaches.

Why: the one-step DDAS reward ``<g_k - g_0, g_V>`` measures what one SGD step with policy k does
to the validation loss. Once the model fits its training batches that reward ranks harmful
augmentations above helpful ones (a short-horizon bias, REFERENCE note e; docs/results.md,
"Search signals", measures it on Fashion-MNIST: Spearman +0.79 with the entries' measured
benefit over the first quarter of training, -0.42 to -0.56 after). Training L steps with a policy
and reading the validation loss sees past the next batch (same study: +0.84, +0.73, +0.49 over
the first three quarters).

A *round* covers L consecutive training batches:

1. at its first step the search copies the training state (:meth:`train_state`: parameters,
   buffers, optimiser state) and draws K policies (the DDAS proposal);
2. the main model trains on every batch as usual, with the current policy (each image augmented
   with probability ``s`` by one policy drawn from ``p`` per batch): the search never holds the
   training back;
3. after the L-th batch, from the copied state, one *branch* per policy trains on the same L
   batches, every image augmented by that policy, plus one branch on the clean batches; each
   branch's loss on the same V validation batches gives ``r_k = L_clean - L_k``; the main model's
   state is then restored.

The rewards enter DDAS's update (:meth:`DDASPolicy.update` with ``dot_aug = -L_k``,
``dot_clean = -L_clean``) without the per-step normalisation (``normalise_rewards=False``), so
rounds late in a decaying schedule, whose branches barely move, move the policy less.

Common random numbers: all branches start from the same state and see the same batches and
validation batches, so the differences between them are the policies' effects plus the
augmentations' own randomness.

Cost per round: ``(K + 1) * L`` training steps and ``(K + 1) * V`` validation forwards on top of
the L main steps; per training step ``K + 2`` passes plus ``(K + 1) V / L`` forwards (DDAS's
one-step reward: ``K + 2`` passes). Memory: two copies of the training state and the L batches
of a round.

A checkpoint holds the policy, not a round in flight: a resumed search starts a new round at the
resumed step (up to L - 1 steps of signal are lost; the model is not affected).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..policy.step import ChainStep
from .categorical import Proposal
from .searchers.base import check_int

Chain = Sequence[ChainStep]


class LookaheadRounds:
    """The round in flight and its branches (module doc).

    Args:
        steps: L, training batches per round, >= 1.
        val_batches: V, validation batches every branch is scored on, >= 1.
    """

    def __init__(self, steps: int = 50, val_batches: int = 4) -> None:
        self.steps = check_int('lookahead_steps', steps, 1)
        self.val_batches = check_int('lookahead_val_batches', val_batches, 1)
        self.start_state: Optional[Dict[str, Any]] = None
        self.proposal: Optional[Proposal] = None
        self.batches: List[dict] = []
        self.last_losses: Optional[List[float]] = None

    @property
    def in_flight(self) -> bool:
        return self.proposal is not None

    def start(self, ctx, proposal: Proposal) -> None:
        """Open a round: copy the training state before its first batch trains the model."""
        self.start_state, self.proposal, self.batches = ctx.train_state(), proposal, []

    def add(self, batch: dict) -> bool:
        """Hold a batch of the round; True when the round has its L batches."""
        if not self.in_flight:
            raise RuntimeError('LookaheadRounds.add before start')
        self.batches.append(batch)
        return len(self.batches) >= self.steps

    def step(self, ctx, data: dict, propose: Callable[[], Proposal], policy_batch: Callable[[], dict],
             chain: Callable[[Sequence[int]], Chain],
             update: Callable[[Proposal, Tensor, Tensor], None]) -> Dict[str, Tensor]:
        """One training step of a searcher that learns in rounds (DDAS's look-ahead signal, DAAS's
        look-ahead reward): open a round with ``propose()`` when none is in flight, hold ``data``,
        train the main model on ``policy_batch()``; after the round's L-th batch run its branches
        (:meth:`finish`, the chains of ``chain(entries)``) and hand ``update`` the proposal,
        ``-L_k`` and ``-L_clean``.

        Returns:
            the main model's log variables.
        """
        if not self.in_flight:
            self.start(ctx, propose())
        full = self.add(data)
        log_vars = ctx.train_step(policy_batch())
        if full:
            outcome = self.finish(ctx, [chain(e) for e in self.proposal.entries.tolist()])
            with ctx.phase('policy update'):
                update(*outcome)
        return log_vars

    def finish(self, ctx, chains: Sequence[Chain]) -> Tuple[Proposal, Tensor, Tensor]:
        """Run the clean branch and one branch per chain, restore the main model, close the round.

        Args:
            ctx: the search context.
            chains: the chain of each proposed policy, in proposal order.

        Returns:
            ``(proposal, -L_k (K,), -L_clean ())`` as float64 on the CPU, averaged over ranks.
        """
        if not self.in_flight or len(self.batches) < self.steps:
            raise RuntimeError(f'round not complete: {len(self.batches)} of {self.steps} batches')
        main_state = ctx.train_state()
        with ctx.phase('validation data'):
            val = [ctx.next_val_batch() for _ in range(self.val_batches)]
        losses = []
        for chain in [None, *chains]:
            ctx.load_train_state(self.start_state)
            for batch in self.batches:
                ctx.train_step(batch if chain is None else ctx.augment(batch, chain))
            losses.append(ctx.val_loss(val))
        ctx.load_train_state(main_state)
        losses = ctx.all_reduce_mean([torch.stack(losses)])[0].double().cpu()
        if not bool(torch.isfinite(losses).all()):
            raise ValueError(f'look-ahead validation losses must be finite, got {losses.tolist()} '
                             '(a branch diverged: lower the learning rate or lookahead_steps)')
        proposal = self.proposal
        self.start_state, self.proposal, self.batches = None, None, []
        self.last_losses = losses.tolist()
        return proposal, -losses[1:], -losses[0]
