# det_autoaug: one entry point for setup, the main job and the tests.
#   make setup    create .venv with the pinned stack (mmcv from WHEELS when given, else built from source)
#   make search   setup, then the DDAS detection search on the embedded data (slim CenterNet, CPU, ~5 minutes)
#   make test     setup, then the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
WHEELS ?= $(wildcard ../shared/wheels)
DEVICE ?= cpu
WORK_DIR ?= work_dirs/ddas_digits

.PHONY: setup search test
setup:
	bash scripts/setup.sh --venv $(VENV) $(if $(WHEELS),--wheels $(WHEELS))

search: setup
	$(PY) tools/search_det.py --device $(DEVICE) --work-dir $(WORK_DIR)

test: setup
	$(PY) -m pytest tests -q -rs
