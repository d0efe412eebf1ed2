"""Helpers of the searcher tests: comparing searcher states, toy checkpoints, the toy blob problem
(the ``one_thread`` fixture is in conftest.py)."""
from __future__ import annotations

import io
from typing import Any, Dict

import torch


def flatten_state(state: Any, prefix: str = '') -> Dict[str, Any]:
    """``{'a.b.0.': leaf, ...}``: every leaf of nested dicts, lists and tuples under its dotted path."""
    out: Dict[str, Any] = {}
    if isinstance(state, dict):
        for k, v in state.items():
            out.update(flatten_state(v, f'{prefix}{k}.'))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            out.update(flatten_state(v, f'{prefix}{i}.'))
    else:
        out[prefix] = state
    return out


def assert_same_state(a: Any, b: Any) -> Dict[str, Any]:
    """Assert that two states have the same leaves, tensors bit-exactly; returns ``a`` flattened."""
    flat_a, flat_b = flatten_state(a), flatten_state(b)
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        if isinstance(flat_a[key], torch.Tensor):
            assert torch.equal(flat_a[key], flat_b[key]), key
        else:
            assert flat_a[key] == flat_b[key], key
    return flat_a


class ToyCheckpoint:
    """``state()`` / ``load()`` of a toy search run: the searcher, model, optimiser, context
    generators and data generator (attributes ``searcher``, ``model``, ``opt``, ``ctx``,
    ``data_gen``), through ``torch.save`` bytes as a checkpoint would hold them."""

    def state(self) -> bytes:
        buf = io.BytesIO()
        torch.save(dict(searcher=self.searcher.state_dict(), model=self.model.state_dict(), opt=self.opt.state_dict(),
                        ctx=self.ctx.state(), data=self.data_gen.get_state()), buf)
        return buf.getvalue()

    def load(self, blob: bytes) -> None:
        state = torch.load(io.BytesIO(blob), weights_only=True)
        self.searcher.load_state_dict(state['searcher'])
        self.model.load_state_dict(state['model'])
        self.opt.load_state_dict(state['opt'])
        self.ctx.load_state(state['ctx'])
        self.data_gen.set_state(state['data'])


TOY_SIZE = 8


def toy_images(n: int, right: bool, gen: torch.Generator):
    """8x8 images with a bright blob; class = top or bottom half; blob left (train) or right (val)."""
    x = torch.rand(n, 1, TOY_SIZE, TOY_SIZE, generator=gen) * 20
    y = torch.randint(0, 2, (n,), generator=gen)
    for i in range(n):
        row = int(torch.randint(0, TOY_SIZE // 2 - 2, (1,), generator=gen)) + (TOY_SIZE // 2 if y[i] else 0)
        col = int(torch.randint(0, TOY_SIZE // 2 - 2, (1,), generator=gen)) + (TOY_SIZE // 2 if right else 0)
        x[i, :, row:row + 3, col:col + 3] = 220.0
    return x, y


class ToyBlobs(ToyCheckpoint):
    """Streams of the toy problem for a searcher: training blobs on the left, validation blobs on
    the right (FlipLR is the op that helps). Subclasses set ``data_gen``, ``searcher``, ``ctx``."""

    batch = 16

    def _val(self) -> dict:
        x, y = toy_images(self.batch, True, self.data_gen)
        return dict(inputs=x, targets=y)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            x, y = toy_images(self.batch, False, self.data_gen)
            self.searcher.step(self.ctx, dict(inputs=x, targets=y))
