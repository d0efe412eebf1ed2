"""The device of a command-line run: what ``--device`` means to the tools."""
from __future__ import annotations

import os


def select_device(device: str) -> str:
    """Make ``device`` the one mmengine uses; fail clearly when CUDA is asked for and absent.

    ``'cpu'`` hides CUDA (``CUDA_VISIBLE_DEVICES=''``; mmengine picks CUDA whenever it sees one), so
    call this before anything initialises CUDA. ``'auto'``: CUDA when present, else the CPU.
    ``'cuda:N'`` also makes device N the current one.

    Args:
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'``.

    Returns:
        The device chosen: ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.

    Raises:
        SystemExit: CUDA asked for and not available, or an unknown device (the message names it).
    """
    if device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
        return 'cpu'
    import torch
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise SystemExit(f'--device {device}: CUDA is not available on this machine (use --device cpu)')
        if ':' in device:
            torch.cuda.set_device(int(device.split(':', 1)[1]))
        return device
    raise SystemExit(f"--device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
