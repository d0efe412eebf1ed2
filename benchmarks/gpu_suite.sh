#!/usr/bin/env bash
# The GPU suite in one command: batch augment throughput, a DDAS step against a plain step on a
# RetinaNet R-50 at 800 px, and the torch kernels on CUDA against the CPU (benchmarks/gpu_bench.py).
# Needs CUDA, torch, torchvision and kornia; OpenMMLab is optional. A folder .whl/ at the repository
# root (wheels for a machine without a registry, e.g. kornia and kornia_rs) is installed first.
# The tables are printed and written to ${OUT:-/tmp}/gpu_suite.md. Usage: bash benchmarks/gpu_suite.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_suite: needs a CUDA device; torch.cuda.is_available() is False" >&2
    exit 2
fi
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_suite_site .whl/*.whl
    export PYTHONPATH="/tmp/gpu_suite_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_bench.py --device cuda --out "${OUT:-/tmp}/gpu_suite.md" "$@"
