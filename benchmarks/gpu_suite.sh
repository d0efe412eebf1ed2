#!/usr/bin/env bash
# The GPU suite in one command: batch augment throughput, a DDAS step against a plain step on a
# RetinaNet R-50 at 800 px, and every torch kernel on CUDA against the CPU (benchmarks/gpu_bench.py).
# Needs CUDA, python3 with torch, torchvision, numpy and opencv; OpenMMLab is optional. The wheels
# of a folder .whl/ at the repository root (kornia and kornia_rs, for a machine without a registry)
# are installed into /tmp/site first. The tables are printed and written to ${OUT:-/tmp}/gpu_suite.md;
# the exit status is non-zero without CUDA or when an op differs between CUDA and the CPU.
# Usage: bash benchmarks/gpu_suite.sh [gpu_bench.py options]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_suite: needs a CUDA device; torch.cuda.is_available() is False" >&2
    exit 2
fi
if compgen -G ".whl/*.whl" > /dev/null; then
    if "$PY" -m pip --version > /dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    else  # no pip: a wheel is a zip of its installed files
        for wheel in .whl/*.whl; do "$PY" -m zipfile -e "$wheel" /tmp/site; done
    fi
    export PYTHONPATH="/tmp/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
mkdir -p "${OUT:-/tmp}"
PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_bench.py --device cuda --out "${OUT:-/tmp}/gpu_suite.md" "$@"
