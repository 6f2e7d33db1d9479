# hbi-repro: two commands. `make reproduce` regenerates the main result; `make test` runs every check.
# Both create the virtual environment (.venv) and install the pinned requirements when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: venv test reproduce clean-check nbtest pytest bench
venv: $(STAMP)

# One pip command so that pip cannot swap torch while resolving open_clip_torch/timm/torchvision.
$(STAMP): requirements.txt setup.py settings.ini
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

clean-check: venv
	$(BIN)/python tools/check_sync.py

nbtest: venv
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --skip_file_glob "run_*"

pytest: venv
	$(BIN)/python -m pytest tests/ -q -p no:cacheprovider

# Everything CI checks; ends with pytest's closing summary line.
test: venv
	$(BIN)/python tools/check_sync.py
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --skip_file_glob "run_*"
	$(BIN)/python -m pytest tests/ -q -p no:cacheprovider

# The main job: Table I on the default (synthetic) profile, through papermill.
reproduce: venv
	$(BIN)/hbi-repro reproduce --only T1

bench: venv
	$(BIN)/hbi-repro bench
