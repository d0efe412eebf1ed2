"""The GPU suite stays runnable: its smoke mode on the CPU, and a clear failure without CUDA."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_smoke_mode_prints_every_section(tmp_path):
    out = tmp_path / 'suite.md'
    proc = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'gpu_bench.py'), '--smoke', '--device', 'cpu',
                           '--out', str(out)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for heading in ('## Batch augment', '## DDAS step vs plain step', '## Torch kernels, cpu vs cpu'):
        assert heading in text, f'{heading!r} missing from:\n{text}'
    assert '| FAIL' not in text and text.count('| PASS') >= 31


def test_suite_fails_clearly_without_cuda():
    proc = subprocess.run(['bash', str(REPO / 'benchmarks' / 'gpu_suite.sh')], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, CUDA_VISIBLE_DEVICES='', PYTHON=sys.executable))
    assert proc.returncode != 0
    assert 'needs a CUDA device' in proc.stderr
