"""ruff over the repository, with the settings in pyproject.toml (``[tool.ruff]``: the rules, the
paths left out and why)."""
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    if find_spec('ruff') is None:
        pytest.fail(f'ruff is not installed in {sys.prefix}: run `make setup` (it installs the version pinned in '
                    'constraints.txt)', pytrace=False)
    # No paths: ruff checks the project root, so the config's exclusions apply as written.
    proc = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', '--output-format', 'concise'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (f'ruff check failed (exit {proc.returncode}); `ruff check --fix` fixes the '
                                  f'import order and unused imports:\n{proc.stdout}{proc.stderr}')
