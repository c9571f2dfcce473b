# make run  - set up, then classify and evaluate the bundled sample images with the bundled model
# make test - set up, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# glibc's malloc otherwise returns tensor memory to the OS after every batch: ~2x slower on CPU.
export GLIBC_TUNABLES := glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736

.PHONY: setup setup-core run test test-fast serve space clean

setup: $(VENV)/.installed
setup-core: $(VENV)/.core

# The core alone (ONNX Runtime, no torch): all that predict and evaluate on the bundled model need.
$(VENV)/.core: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.core
	$(BIN)/python -m pip install -q -e '.[train,app,hub,dev]'  # everything; see README for the profiles
	touch $@

run: setup-core
	$(BIN)/melanoma predict samples
	$(BIN)/melanoma evaluate samples --out runs/samples-eval

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not train and not browser"

serve: setup
	$(BIN)/melanoma serve

# A folder ready to push to a Gradio Space on Hugging Face (see README, "Deploy to Hugging Face").
space: setup
	$(BIN)/python tools/build_space.py

clean:
	rm -rf runs .pytest_cache
