"""Reading and writing the project's JSON documents (policy files, arch files) with clear errors."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

PathLike = Union[str, os.PathLike]


def nesting_depth(doc: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON document (a scalar is 0, ``[]`` is 1).

    Iterative, so a document of any depth is measured without recursion.
    """
    depth, stack = 0, [(doc, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in children)
    return depth


def read_json(path: PathLike, kind: str, missing_hint: str = '', *, max_bytes: Optional[int] = None,
              max_depth: Optional[int] = None) -> Any:
    """The parsed JSON of ``path``.

    Args:
        path: the file.
        kind: what the file is, for the messages (``'policy file'``, ``'arch file'``).
        missing_hint: appended to the message when the file does not exist.
        max_bytes: refuse files larger than this (``None``: no limit).
        max_depth: refuse documents whose lists and objects nest deeper than this (``None``: only
            what the parser manages).

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a directory.
        ValueError: not a regular file, larger than ``max_bytes``, not UTF-8, not valid JSON or
            nested too deeply (the message names the file and the problem).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f'{kind} {path} is a directory: expected a JSON file')
    if not os.path.exists(path):
        raise FileNotFoundError(f'{kind} {path} does not exist{missing_hint}')
    if not os.path.isfile(path):
        raise ValueError(f'{kind} {path} is not a regular file: expected a JSON file')
    with open(path, 'rb') as f:
        # Read one byte past the limit: a file that grows after a stat is still caught.
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise ValueError(f'{kind} {path} is larger than the limit of {max_bytes} bytes')
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise ValueError(f'{kind} {path} is not UTF-8 text: {e.reason} at byte {e.start}') from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ValueError(f'{kind} {path} nests lists or objects too deeply to parse') from None
    except ValueError as e:   # JSONDecodeError, and integers over Python's digit limit
        raise ValueError(f'{kind} {path} is not valid JSON: {e}') from None
    if max_depth is not None:
        depth = nesting_depth(doc)
        if depth > max_depth:
            raise ValueError(f'{kind} {path} nests lists or objects {depth} deep: the limit is {max_depth}')
    return doc


def _umask() -> int:
    """The process's umask, read without changing it where Linux reports it."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            return int(next(line for line in f if line.startswith('Umask:')).split()[1], 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def write_json_atomic(path: PathLike, doc: Any, kind: str, what: str = 'meta') -> None:
    """Write ``doc`` as indented JSON to ``path`` through a temporary file in the same folder.

    A reader never sees a half-written file, and a failed write leaves no temporary file behind.
    The file gets the mode ``open()`` would give it (``0o666`` less the umask: 0644 under the
    usual 022), not the temporary file's 0600.

    Raises:
        ValueError: ``doc`` is not JSON-serialisable (NaN included); ``what`` names the part
            of it the caller lets users fill (``'meta'``, ``'network or meta'``).
    """
    try:
        text = json.dumps(doc, indent=2, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f'{kind} {os.fspath(path)}: {what} is not JSON-serialisable ({e})') from None
    folder = os.path.dirname(os.path.abspath(path))
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.det_autoaug-', suffix='.json.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text + '\n')
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
