# Task runner. `make demo` and `make test` are the README's two commands; both create .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch is pinned to the build the project is tested with; GPU users see the README.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo demo-tf test test-fast test-tf bench bench-smoke clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

# The main job on the embedded defaults: built-in MiniLM encoder, built-in Q&A corpus, offline.
demo: $(STAMP)
	$(BIN)/pt-mlm train --model builtin:minilm --dataset builtin:chatterbot --output-dir $(DEMO_DIR) \
		--overwrite-output-dir --learning-rate 2e-4
	$(BIN)/pt-mlm fill-mask $(DEMO_DIR) "The Milky Way is a <mask> galaxy." "Python is a programming <mask>." --top-k 3

demo-tf: $(STAMP)
	$(BIN)/tf-mlm train --model builtin:minilm --dataset builtin:chatterbot --output-dir $(DEMO_DIR)-tf \
		--overwrite-output-dir --learning-rate 2e-4
	$(BIN)/tf-mlm fill-mask $(DEMO_DIR)-tf "The Milky Way is a <mask> galaxy." --top-k 3

# The linter first (seconds); then the tests in two workers, one per core (TensorFlow runs in child
# processes, never beside torch in a worker). Tests sharing a trained run stay on one worker (conftest.py).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadgroup

test-fast: $(STAMP)
	$(BIN)/pytest -m "not tf and not slow"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --device auto

clean:
	rm -rf runs .pytest_cache
