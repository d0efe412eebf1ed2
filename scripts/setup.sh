#!/usr/bin/env bash
# Creates (or refreshes) the project's virtualenv with the pinned OpenMMLab stack.
#
# Usage: scripts/setup.sh [--venv DIR] [--wheels DIR] [--no-apt]
#   --venv DIR    virtualenv to create or reuse (default: .venv)
#   --wheels DIR  directory holding a prebuilt mmcv wheel (default: $MMCV_WHEELS, else
#                 ../shared/wheels when it exists). Without one mmcv 2.1.0 is built from
#                 its PyPI source distribution with C++20 (about 25 minutes on 2 cores).
#   --no-apt      never call apt-get (Fashion-MNIST must then be provided by hand).
# Re-running when everything is installed takes a few seconds.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
wheels="${MMCV_WHEELS:-}"
use_apt=1
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv=$2; shift 2 ;;
    --wheels) wheels=$2; shift 2 ;;
    --no-apt) use_apt=0; shift ;;
    *) echo "setup.sh: unknown argument '$1' (expected --venv DIR, --wheels DIR or --no-apt)" >&2; exit 2 ;;
  esac
done
if [ -z "$wheels" ] && [ -d "$root/../shared/wheels" ]; then
  wheels="$root/../shared/wheels"
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
stamp="$venv/.det_autoaug-setup"
want=$(cat "$root/constraints.txt" "$root/requirements.txt" "$root/pyproject.toml" | sha1sum | cut -d' ' -f1)

fashion_dir=/usr/share/datasets/fashion-mnist
if [ ! -d "$fashion_dir" ] && [ "$use_apt" = 1 ] && command -v apt-get >/dev/null; then
  echo "[setup] installing Debian's dataset-fashion-mnist"
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }) ||
    echo "[setup] warning: could not install dataset-fashion-mnist; pass its path to the loader" >&2
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import det_autoaug, mmcv.ops" 2>/dev/null; then
  echo "[setup] $venv is up to date"
  exit 0
fi

# A fresh virtualenv takes about 6.5 GB (torch ships its CUDA libraries) plus pip's unpacking space
# in TMPDIR; pip's own "No space left on device" comes halfway through and names neither.
need_gib=8
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  for dir in "$(dirname "$venv")" "${TMPDIR:-/tmp}"; do
    free_kib=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
    if [ -n "$free_kib" ] && [ "$free_kib" -lt $((need_gib * 1024 * 1024)) ]; then
      echo "setup.sh: $dir has $((free_kib / 1024 / 1024)) GiB free; installing torch into $venv needs about" \
        "$need_gib GiB there (free some space or pass --venv / TMPDIR elsewhere)" >&2
      exit 1
    fi
  done
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# This machine's pip configuration may point at local package folders that do not exist in
# every environment; pip then warns once per package. Those lines are noise: drop them.
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
pip install -c "$root/constraints.txt" pip setuptools wheel

echo "[setup] torch and torchvision"
pip install -c "$root/constraints.txt" torch torchvision

if ! "$venv/bin/python" -c "import mmcv.ops" 2>/dev/null; then
  if [ -n "$wheels" ] && ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    echo "[setup] mmcv from the wheel in $wheels"
    pip install -c "$root/constraints.txt" --find-links "$wheels" --only-binary mmcv mmcv
  else
    echo "[setup] no mmcv wheel given: building mmcv 2.1.0 from source with C++20 (about 25 minutes on 2 cores)"
    "$root/scripts/build_mmcv.sh" "$venv"
  fi
fi

echo "[setup] the rest of the stack and det_autoaug"
pip install -c "$root/constraints.txt" -r "$root/requirements.txt"
pip install -c "$root/constraints.txt" --no-deps -e "$root"
"$venv/bin/python" -c "import det_autoaug, mmdet, mmcv.ops, kornia"
echo "$want" > "$stamp"
echo "[setup] done: $venv"
