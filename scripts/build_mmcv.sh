#!/usr/bin/env bash
# Builds mmcv 2.1.0 (with its C++ ops, CPU or CUDA) from PyPI's source distribution into VENV.
#
# mmcv 2.1.0 compiles with -std=c++17, but torch 2.14's headers need C++20, so the flag is
# raised before building. The build (and even reading the metadata of the source distribution)
# imports torch and pkg_resources, hence --no-build-isolation with the venv's setuptools<81.
set -euo pipefail
venv=${1:?usage: build_mmcv.sh VENV}
constraints="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/constraints.txt"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" -m pip --disable-pip-version-check -q download --no-deps --no-binary :all: --no-build-isolation -d "$work" mmcv==2.1.0
tar -xzf "$work"/mmcv-2.1.0.tar.gz -C "$work"
src="$work/mmcv-2.1.0"
grep -q -- "-std=c++1[47]" "$src/setup.py" || { echo "build_mmcv.sh: no C++ standard flag found in mmcv's setup.py" >&2; exit 1; }
sed -i 's/-std=c++1[47]/-std=c++20/g' "$src/setup.py"
"$venv/bin/python" -m pip --disable-pip-version-check -q install -c "$constraints" ninja
MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$venv/bin/python" -m pip --disable-pip-version-check install --no-build-isolation --no-deps "$src"
"$venv/bin/python" -m pip --disable-pip-version-check -q install -c "$constraints" addict mmengine opencv-python packaging Pillow pyyaml yapf
"$venv/bin/python" -c "import mmcv.ops; print('mmcv', mmcv.__version__, 'with ops')"
