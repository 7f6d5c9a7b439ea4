# The README's two commands: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := out/demo
# `make demo DATASET=ml-100k` runs the demo on MovieLens (files under DATA_DIR) instead.
DATASET  ?=
DATA_DIR ?= ../shared/datasets
PORT     ?= 8000

.PHONY: install demo test lint typecheck unit postgres browser bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@# torch: the CPU build that lies on this machine's disk (tests cover the CPU fallback)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	@touch $(STAMP)

install: $(STAMP)

# Data -> train -> evaluate -> report -> serve; prints the URLs and keeps serving (Ctrl-C).
demo: install
	$(BIN)/recsemble demo --out $(DEMO) --port $(PORT) \
		$(if $(DATASET),--dataset $(DATASET) --data-dir $(DATA_DIR))

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install postgres browser
	@# pyspark (the `spark` extra, ~450 MB) only for the tests of `--engine spark`, not the demo
	$(BIN)/python -c "import pyspark, pandas" 2>/dev/null || $(BIN)/python -m pip install -q "pyspark>=4.0" "pandas>=2.2,<3"
	$(BIN)/pytest -q

# The store's contract tests (tests/store) also run against PostgreSQL: their conftest.py
# starts a throwaway cluster with the server programs of Debian's `postgresql` package. When
# no initdb is found and we are root (CI, a fresh machine of this kind), install the package;
# otherwise say that those tests will skip (locally) or fail (in CI, where CI is set).
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; \
	then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing PostgreSQL (Debian package) for the store tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends postgresql; \
	else \
		echo "no PostgreSQL and not root: the PostgreSQL store tests will skip (fail in CI)"; \
	fi

# The browser tests (dashboard, report) drive Debian's chromium through chromium-driver.
browser:
	@if command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver (Debian packages) for the browser tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	else \
		echo "no chromedriver and not root: the browser tests will skip (fail in CI)"; \
	fi

test: lint typecheck unit

bench: install
	$(BIN)/python benchmarks/bench_split.py
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
