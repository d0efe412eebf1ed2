"""Shared fixtures of the test suite, and where its helper modules and the tools are imported from.

pytest loads this file before any test module, so what it sets up holds for every file and every
import mode (``prepend``, ``append`` or ``importlib``):

- ``tests/`` is on ``sys.path``: the helper modules import by name, ``from det_helpers import
  make_digits`` (tiny detection configs and data), ``search_helpers`` (comparing searcher states,
  toy checkpoints and the toy blob problem), ``cls_helpers`` (tiny Fashion-MNIST IDX files).
  They are modules, not fixtures: classes, functions and constants that tests call or subclass.
- ``tools/`` is on ``sys.path`` (appended, so a script's name never shadows an installed module):
  tests of a command-line tool import it the way ``python tools/NAME.py`` sees its siblings,
  ``import search_det``. The logic the tools share lives in the package (``det_autoaug.evaluation``,
  ``det_autoaug.utils.device``, ``det_autoaug.utils.run_config``); what a test imports from a tool is
  its command line.

Fixtures:

- ``one_thread``: one torch thread for the duration of a test. Not autouse, because most of the
  suite runs in the thread count it is given (``OMP_NUM_THREADS``); files of tiny-tensor searcher
  tests opt in with ``pytestmark = pytest.mark.usefixtures('one_thread')``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
if str(ROOT / 'tools') not in sys.path:
    sys.path.append(str(ROOT / 'tools'))


@pytest.fixture
def one_thread():
    """Tiny tensors: threads only add contention on a shared machine; the count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
