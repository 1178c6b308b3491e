# One place for every routine command. `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: install test lint docs check demo clean

$(BIN)/medbalance: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build; nothing after it may replace it with a CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0 torchvision==0.28.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python scripts/check_cpu_torch.py
	touch $@

install: $(BIN)/medbalance  ## create .venv with medbalance and the dev tools

test: install  ## run the test suite on two workers (one file per worker at a time)
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: install  ## formatting, lint, types and the import-layer contract
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

docs: install  ## the documentation site, warnings as errors, into site/ (open site/index.html)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

check: lint test  ## everything CI checks

demo: install  ## the main job, offline: synthetic data -> inspect -> compare remedies -> reports
	$(BIN)/medbalance demo --out demo-out

clean:
	rm -rf $(VENV) demo-out inspect site .pytest_cache .mypy_cache .ruff_cache
