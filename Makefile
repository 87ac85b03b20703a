# genrank — every target installs what it needs into .venv with pip, from scratch on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export GENRANK_HOME ?= $(CURDIR)/.genrank
export GENRANK_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(GENRANK_HOME)/dagster
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
PRESET ?= genrank_assets/presets/demo.yaml
UI_PORT ?= 3000
MLFLOW_UI_PORT ?= 5000

.PHONY: install install-dev demo test test-services test-browser ui mlflow-ui bench lint clean dagster-home \
        team-stack team-stack-stop lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Every install takes the exact versions of constraints.txt (the lock CI tested), so a fresh machine next month
# installs what passed today; `make lock` refreshes it on purpose.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -qq -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -qq -c constraints.txt -e '.[dev]'
	touch $@ $(VENV)/.installed

# Re-resolve pyproject's ranges in a throwaway venv and write every transitive version to constraints.txt.
# Local version labels (torch's +cpu) are dropped so that the same lock serves the CUDA wheel of the gpu extra.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -qq -e '.[dev]'
	{ echo '# The lock: every transitive version of `pip install -e .[dev]`, as CI tested it. Refresh on purpose with'; \
	  echo '# `make lock` (a fresh venv resolves pyproject.toml again), then run `make test` before committing.'; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable | sed -E 's/\+[A-Za-z0-9.]+$$//'; } > constraints.txt
	rm -rf $(LOCK_VENV)

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Dagster's instance lives under GENRANK_HOME, with the settings of genrank_assets/dagster.yaml.
dagster-home:
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || cp genrank_assets/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

data/gen_playlist_info.csv:
	$(BIN)/genrank demo-data --out data

demo: install data/gen_playlist_info.csv dagster-home
	@$(BIN)/python -m genrank_assets.tools.demo_run -c $(PRESET) $(if $(filter-out 0,$(VERBOSE)),-v)
	@echo; echo '$$ genrank recommend "适合深夜听的抒情歌曲" -k 10'
	@$(BIN)/genrank recommend "适合深夜听的抒情歌曲" -k 10
	@echo; echo '$$ genrank recommend "gym running bgm" -k 10'
	@$(BIN)/genrank recommend "gym running bgm" -k 10

# SKIP_SERVICES=1: leave out the tests that start services or a browser (CI runs them all).
test: install-dev
	$(if $(filter-out 0,$(SKIP_SERVICES)),GENRANK_SKIP_SERVICES=1) $(BIN)/pytest

# The tests that start real services / worker processes alone.
test-services: install-dev
	$(BIN)/pytest -m services

# The UI tests alone, in headless Chromium (Debian: apt-get install chromium); screenshots in .artifacts/browser/.
test-browser: install-dev
	$(BIN)/pytest -m browser

ui: install dagster-home
	GENRANK_PRESET=$${GENRANK_PRESET:-demo} $(BIN)/python -m genrank_assets.tools.serve_ui --host 127.0.0.1 --port $(UI_PORT)

# MLflow's UI on GENRANK_HOME's store (runs, registered models and their aliases): http://127.0.0.1:5000
mlflow-ui: install
	$(BIN)/python -m genrank_assets.tools.serve_ui --mlflow --host 127.0.0.1 --port $(MLFLOW_UI_PORT)

# The team stack under GENRANK_HOME/team: PostgreSQL 15 (Debian's postgresql-15), `mlflow server` on it, and
# Dagster's daemon and UI with run/event storage in it (genrank_assets/tools/team_stack.py). PIDs in team/pids/.
team-stack: install
	@$(BIN)/python -m genrank_assets.tools.team_stack start

team-stack-stop:
	@$(BIN)/python -m genrank_assets.tools.team_stack stop

# Every live benchmark in order (python -m benchmarks; each is python -m benchmarks.<name>), JSON under
# benchmarks/results/. QUICK=1: each at its --quick size (minutes on 2 cores), JSON under benchmarks/.cache/quick/.
bench: install
	$(BIN)/python -m benchmarks $(if $(QUICK),--quick)

lint: install-dev
	$(BIN)/ruff check genrank_assets genrank_assets_tests benchmarks

clean:
	rm -rf $(GENRANK_HOME)
