# The README's two commands: `make run` and `make test`. Both set everything up first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup models run lint test bench clean

setup:
	@bash scripts/setup.sh

models: setup
	@$(BIN)/orin-console models fetch-demo

# Until the TUI lands this shows the catalog with each file's validated header facts and the
# machine's live telemetry (jtop on a Jetson, NVML on a desktop GPU, psutil elsewhere).
run: models
	@$(BIN)/orin-console models list
	@$(BIN)/orin-console telemetry

# ruff (rules and per-file debt in pyproject.toml) and mypy (strict; debt listed there too).
lint: setup
	@$(BIN)/ruff check .
	@$(BIN)/mypy

test: models
	@$(MAKE) --no-print-directory lint
	@$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .import_linter_cache .mypy_cache .ruff_cache
