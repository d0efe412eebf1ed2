"""The GPU suite stays runnable: its smoke mode on the CPU, and a clear failure without CUDA."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from det_autoaug.ops import OPS

REPO = Path(__file__).resolve().parents[1]
HEADINGS = ('## Batch augment', '## DDAS step vs plain step', '## Torch kernels, cpu vs cpu')


def test_smoke_mode_prints_every_section(tmp_path):
    out = tmp_path / 'suite.md'
    proc = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'gpu_bench.py'), '--smoke', '--device', 'cpu',
                           '--out', str(out)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for heading in HEADINGS:
        assert heading in text and heading in proc.stdout, f'{heading!r} missing from:\n{text}'
    assert '| FAIL |' not in text and text.count('| PASS |') == len(OPS)


def test_suite_fails_clearly_without_cuda(tmp_path):
    proc = subprocess.run(['bash', str(REPO / 'benchmarks' / 'gpu_suite.sh')], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, CUDA_VISIBLE_DEVICES='', PYTHON=sys.executable,
                                                OUT=str(tmp_path)))
    assert proc.returncode != 0
    assert 'needs a CUDA device; torch.cuda.is_available() is False' in proc.stderr
    assert not (tmp_path / 'gpu_suite.md').exists()
