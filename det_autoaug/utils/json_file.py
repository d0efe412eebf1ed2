"""Reading and writing the project's JSON documents (policy files, arch files) with clear errors."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, os.PathLike]


def read_json(path: PathLike, kind: str, missing_hint: str = '') -> Any:
    """The parsed JSON of ``path``.

    Args:
        path: the file.
        kind: what the file is, for the messages (``'policy file'``, ``'arch file'``).
        missing_hint: appended to the message when the file does not exist.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON (the message names the file and the parser's complaint).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{kind} {path} does not exist{missing_hint}')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f'{kind} {path} is not valid JSON: {e}') from None


def write_json_atomic(path: PathLike, doc: Any, kind: str, what: str = 'meta') -> None:
    """Write ``doc`` as indented JSON to ``path`` through a temporary file in the same folder.

    A reader never sees a half-written file, and a failed write leaves no temporary file behind.

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
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
