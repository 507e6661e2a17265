# The README's two commands: `make run` and `make test`. Both set everything up first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup models run lint test bench clean gpu-kit

setup:
	@bash scripts/setup.sh

models: setup
	@$(BIN)/orin-console models fetch-demo

# Opens the console (it needs a terminal) on models.toml, the demo catalog.
run: models
	@$(BIN)/orin-console --catalog models.toml

# ruff (rules in pyproject.toml) and mypy (strict on the core and the test helpers).
lint: setup
	@$(BIN)/ruff check .
	@$(BIN)/mypy

# The browser test (tests/test_web_console.py) drives Debian's chromium: installed here if missing.
test: models
	@bash scripts/setup_browser.sh
	@$(MAKE) --no-print-directory lint
	@$(BIN)/python -m pytest -q

# The GPU kit (gpu-kit/, git-ignored, under 64 MB) for `bash scripts/gpu_check.sh` on a GPU machine.
gpu-kit: setup
	@$(BIN)/python scripts/gpu_kit.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .import_linter_cache .mypy_cache .ruff_cache
