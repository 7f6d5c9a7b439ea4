# The README's two commands: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := out/demo

.PHONY: install demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@# torch: the CPU build that lies on this machine's disk (tests cover the CPU fallback)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/recsemble data synth --out $(DEMO)/data
	$(BIN)/recsemble data describe $(DEMO)/data
	$(BIN)/recsemble evaluate --config configs/demo.toml \
		--json $(DEMO)/results.json --dump $(DEMO)/dump
	$(BIN)/recsemble compare $(DEMO)/results.json --baseline pop --metric ndcg@10

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

bench: install
	$(BIN)/python benchmarks/bench_split.py
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
