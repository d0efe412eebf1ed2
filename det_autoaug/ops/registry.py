"""Kernels registered against the op table, one per op and backend.

Each op of :data:`det_autoaug.ops.table.OPS` registers its kernels in its family file
(:mod:`.colour`, :mod:`.geometric`, :mod:`.regions`) with :func:`register_kernel`, in the manner
of torchvision's ``_register_kernel_internal``; :func:`~det_autoaug.ops.torch_ops.apply_op` and
:func:`~det_autoaug.ops.cv2_ops.apply_op_np` look their kernel up with :func:`get_kernel`.

Backends and the kernel signature each expects:

- ``'torch'``: ``(images, magnitude, params, boxes) -> (images, matrices or None)``, batched:
  ``images`` ``(B, C, H, W)`` float on the 0..255 scale, ``magnitude`` ``(B,)``, ``params`` an
  :class:`~.params.OpParams`, ``boxes`` ``B`` tensors ``(N_i, 4)`` or ``None``; ``matrices``
  ``(B, 3, 3)`` for geometric ops. Every op has one.
- ``'cv2'``: ``(image, boxes, magnitude, params) -> (image, matrix or None)`` on one ``(H, W, C)``
  uint8 array, ``boxes`` ``(N, 4)`` float32, ``params`` a batch of one or ``None``; ``matrix``
  ``(3, 3)`` for geometric ops. Every op has one.
- ``'matrix'``: ``(magnitude, sign, height, width) -> (B, 3, 3)``, the continuous-coordinate
  matrix of a whole-image geometric op (``kind == 'geometric'``).
- ``'box_matrix'``: ``(box, magnitude, sign, height, width) -> (B, 3, 3)``, the matrix of a
  bbox-only op that warps the content of a box ``(B, 4)``.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, TypeVar

from .table import OPS_BY_NAME, OpSpec

BACKENDS = ('torch', 'cv2', 'matrix', 'box_matrix')
#: The modules whose imports register every kernel, one per op family.
FAMILIES = ('colour', 'geometric', 'regions')

F = TypeVar('F', bound=Callable)
_KERNELS: Dict[str, Dict[str, Callable]] = {backend: {} for backend in BACKENDS}
_loaded = False


def _check_backend(backend: str) -> None:
    if backend not in _KERNELS:
        raise ValueError(f'backend={backend!r} is unknown: expected one of {BACKENDS}')


def register_kernel(op_name: str, backend: str) -> Callable[[F], F]:
    """Decorator: register ``kernel`` as ``op_name``'s ``backend`` kernel (returns it unchanged).

    Raises:
        ValueError: ``op_name`` is not a table name (aliases are not accepted), ``backend`` is
            unknown, or the op already has a kernel for ``backend``.
    """
    if op_name not in OPS_BY_NAME:
        raise ValueError(f'cannot register a kernel for op {op_name!r}: it is not in the op table '
                         f'(expected one of {sorted(OPS_BY_NAME)})')
    _check_backend(backend)
    if op_name in _KERNELS[backend]:
        raise ValueError(f'op {op_name!r} already has a {backend!r} kernel: '
                         f'{_KERNELS[backend][op_name].__qualname__}')

    def register(kernel: F) -> F:
        _KERNELS[backend][op_name] = kernel
        return kernel
    return register


def _load_families() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for family in FAMILIES:
            importlib.import_module(f'{__package__}.{family}')


def kernels(backend: str) -> Dict[str, Callable]:
    """Every registered ``backend`` kernel by op name (a copy), the family files loaded."""
    _check_backend(backend)
    _load_families()
    return dict(_KERNELS[backend])


def get_kernel(op: OpSpec | str, backend: str) -> Callable:
    """The ``backend`` kernel of ``op`` (an :class:`OpSpec` or a table name).

    Raises:
        KeyError: the op has no ``backend`` kernel; the message lists the ops that have one.
        ValueError: unknown ``backend``.
    """
    _check_backend(backend)
    _load_families()
    name = op.name if isinstance(op, OpSpec) else op
    kernel = _KERNELS[backend].get(name)
    if kernel is None:
        raise KeyError(f'op {name!r} has no {backend} kernel; {backend} kernels exist for '
                       f'{sorted(_KERNELS[backend])}')
    return kernel
