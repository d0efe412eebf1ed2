"""Let MMEngine resume its checkpoints under torch >= 2.6 without turning off ``weights_only``.

torch 2.6 made ``torch.load`` default to ``weights_only=True``, which refuses mmengine 0.10's own
``HistoryBuffer`` (in the message hub) and numpy arrays and scalars. Turning the safety off
would let a malicious checkpoint run code, so instead:

- the exact types mmengine's checkpoints hold are allow-listed (``HistoryBuffer``, numpy
  arrays, dtypes and scalars: plain data);
- ``HistoryBuffer`` stops pickling references to its four built-in statistics methods (which
  need ``builtins.getattr``, a global that must never be allowed); they are restored by its
  constructor anyway. Custom methods registered by users are still pickled, and such a
  checkpoint is then refused by ``weights_only`` with torch's own message.
"""
from __future__ import annotations

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_BUILTIN_STATS = ('min', 'max', 'current', 'mean')


def _getstate(self: HistoryBuffer) -> dict:
    state = dict(self.__dict__)
    custom = {name: fn for name, fn in self._statistics_methods.items() if name not in _BUILTIN_STATS}
    if custom:
        state['statistics_methods'] = custom
    return state


def enable_safe_resume() -> None:
    """Allow-list mmengine's checkpoint types for ``torch.load(weights_only=True)``. Idempotent."""
    HistoryBuffer.__getstate__ = _getstate
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals([
            HistoryBuffer, np.ndarray, np.dtype, np._core.multiarray._reconstruct, np._core.multiarray.scalar,
            *[getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith('DType')]])
