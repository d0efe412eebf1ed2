"""Let MMEngine resume its checkpoints safely: under torch >= 2.6 with ``weights_only`` kept on,
and after a kill at any instant, a checkpoint save included.

``weights_only``: torch 2.6 made ``torch.load`` default to ``weights_only=True``, which refuses
mmengine 0.10's own ``HistoryBuffer`` (in the message hub) and numpy arrays and scalars. Turning
the safety off would let a malicious checkpoint run code, so instead:

- the exact types mmengine's checkpoints hold are allow-listed (``HistoryBuffer``, numpy
  arrays, dtypes and scalars: plain data);
- ``HistoryBuffer`` stops pickling references to its four built-in statistics methods (which
  need ``builtins.getattr``, a global that must never be allowed); they are restored by its
  constructor anyway. Custom methods registered by users are still pickled, and such a
  checkpoint is then refused by ``weights_only`` with torch's own message.

Kills: mmengine 0.10.7's ``CheckpointHook`` deletes the oldest checkpoint, writes the new one in
place (a kill leaves a truncated file) and then rewrites ``work_dir/last_checkpoint`` in place
(a kill leaves it empty or cut), and ``resume=True`` loads whatever that file names. With
:func:`enable_crash_safe_checkpoints`:

- a checkpoint is written to ``<name>.part`` beside it, flushed to disk and renamed over
  ``<name>`` (atomic on POSIX and Windows), so a checkpoint file is always complete;
- the hook deletes the checkpoints it rotates out only after the new checkpoint and
  ``last_checkpoint`` are written, so a complete checkpoint exists at every instant, even with
  ``max_keep_ckpts=1`` (a kill between the two leaves one checkpoint too many on disk);
- ``resume=True`` continues from :func:`find_complete_checkpoint`: the checkpoint
  ``last_checkpoint`` names if it is complete, else (missing, cut or truncated) the newest
  complete ``epoch_N.pth`` / ``iter_N.pth`` beside it or in the work dir, with a warning.

A search or training run killed during a save therefore resumes from the last complete
checkpoint and, the search being deterministic, ends exactly as an uninterrupted one
(``tests/test_checkpoint_kill.py`` kills one with SIGKILL in the middle of a write). A kill
during a write leaves ``<name>.part``, which the resumed run's save of that name replaces.

:func:`enable_safe_resume` installs both; importing :mod:`det_autoaug.mmdet_plugins` or
:mod:`det_autoaug.cls` calls it, and so does building ``PolicySearchHook``.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log

_BUILTIN_STATS = ('min', 'max', 'current', 'mean')
#: The file names mmengine's CheckpointHook gives its checkpoints (``filename_tmpl`` default).
CHECKPOINT_NAME = re.compile(r'^(?:epoch|iter)_(\d+)\.pth$')


def _getstate(self: HistoryBuffer) -> dict:
    state = dict(self.__dict__)
    custom = {name: fn for name, fn in self._statistics_methods.items() if name not in _BUILTIN_STATS}
    if custom:
        state['statistics_methods'] = custom
    return state


def enable_safe_resume() -> None:
    """Allow-list mmengine's checkpoint types for ``torch.load(weights_only=True)`` and make
    checkpoints crash-safe (:func:`enable_crash_safe_checkpoints`). Idempotent."""
    HistoryBuffer.__getstate__ = _getstate
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals([
            HistoryBuffer, np.ndarray, np.dtype, np._core.multiarray._reconstruct, np._core.multiarray.scalar,
            *[getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith('DType')]])
    enable_crash_safe_checkpoints()


# ----------------------------------------------------------------------------- crash safety

def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole ``torch.save`` archive.

    ``torch.save`` writes a zip archive whose central directory comes last, so a file cut
    anywhere has none; reading the directory costs a few KiB whatever the checkpoint's size.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name == 'data.pkl' or name.endswith('/data.pkl') for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _is_local(path: str) -> bool:
    return '://' not in path


def find_complete_checkpoint(work_dir: str | os.PathLike) -> Optional[str]:
    """The checkpoint ``resume=True`` continues from in ``work_dir``.

    Args:
        work_dir: the run's work dir (holding ``last_checkpoint``).

    Returns:
        The path ``work_dir/last_checkpoint`` names when that file is complete (or not local:
        left to its backend); otherwise the newest complete ``epoch_N.pth`` / ``iter_N.pth`` (the
        largest ``N``, then the latest modified) in that path's folder or in ``work_dir``; else the
        named path if it is a file (for mmengine to load or refuse); else ``None``, as mmengine
        returns without ``last_checkpoint`` (training starts over).
    """
    pointer = Path(work_dir) / 'last_checkpoint'
    named = pointer.read_text(errors='replace').strip() if pointer.is_file() else ''
    if named and (not _is_local(named) or is_complete_checkpoint(named)):
        return named
    folders = {Path(work_dir).resolve(): Path(work_dir)}
    if named:
        folders.setdefault(Path(named).parent.resolve(), Path(named).parent)
    found = []
    for folder in folders.values():
        if folder.is_dir():
            for path in folder.iterdir():
                match = CHECKPOINT_NAME.match(path.name)
                if match and path.is_file():
                    found.append((int(match.group(1)), path.stat().st_mtime, str(path)))
    for _, _, path in sorted(found, reverse=True):
        if is_complete_checkpoint(path):
            if named:
                print_log(f'{pointer} names {named!r}, which is missing or incomplete (the run was killed '
                          f'while saving): resuming from {path}, the newest complete checkpoint',
                          logger='current', level=logging.WARNING)
            return path
    if named and Path(named).is_file():
        return named
    if named or found:
        print_log(f'{pointer} names {named!r} and no complete checkpoint is in '
                  f'{sorted(map(str, folders.values()))}: nothing to resume, training starts over',
                  logger='current', level=logging.WARNING)
    return None


def _atomic_save(original, checkpoint: dict, filename: str, file_client_args=None, backend_args=None) -> None:
    """``mmengine.runner.checkpoint.save_checkpoint``, written to a temporary file renamed over
    ``filename`` when the file is local (other backends keep mmengine's own write)."""
    if file_client_args is not None or not _is_local(str(filename)):
        return original(checkpoint, filename, file_client_args=file_client_args, backend_args=backend_args)
    from mmengine.fileio import LocalBackend, get_file_backend
    if not isinstance(get_file_backend(filename, backend_args=backend_args), LocalBackend):
        return original(checkpoint, filename, file_client_args=file_client_args, backend_args=backend_args)
    folder = os.path.dirname(os.path.abspath(filename))
    os.makedirs(folder, exist_ok=True)
    partial = f'{filename}.part'   # one writer (mmengine saves on the main process only)
    try:
        with open(partial, 'wb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    with contextlib.suppress(OSError, AttributeError):   # the rename itself, on disk (POSIX only)
        folder_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)


class _DeferredRemoval:
    """A file backend whose ``remove`` only records the path; everything else is the backend's."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.removed: list = []

    def remove(self, path) -> None:
        self.removed.append(path)

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


def _save_then_rotate(original, hook, runner, step, meta) -> None:
    """``CheckpointHook._save_checkpoint_with_step`` with its removals after the save."""
    backend = hook.file_backend
    deferred = _DeferredRemoval(backend)
    hook.file_backend = deferred
    try:
        original(hook, runner, step, meta)
    finally:
        hook.file_backend = backend
    for path in deferred.removed:
        backend.remove(path)


def enable_crash_safe_checkpoints() -> None:
    """Make mmengine's checkpoints survive a kill at any instant (see the module doc). Idempotent.

    Wraps, in mmengine 0.10: the ``save_checkpoint`` that ``Runner.save_checkpoint`` calls,
    ``CheckpointHook._save_checkpoint_with_step`` and the ``find_latest_checkpoint`` that
    ``Runner.load_or_resume`` calls for ``resume=True``.
    """
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import runner as runner_module
    if getattr(runner_module.save_checkpoint, '_det_autoaug_atomic', False):
        return
    save = functools.partial(_atomic_save, runner_module.save_checkpoint)
    save._det_autoaug_atomic = True
    runner_module.save_checkpoint = save
    runner_module.find_latest_checkpoint = find_complete_checkpoint
    rotate = CheckpointHook._save_checkpoint_with_step

    def save_checkpoint_with_step(self, runner, step, meta):
        _save_then_rotate(rotate, self, runner, step, meta)
    CheckpointHook._save_checkpoint_with_step = save_checkpoint_with_step
