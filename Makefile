# Two commands: `make run` serves everything, `make test` runs the whole suite (and `make bench`
# measures, see docs/benchmarks.md).
# Both create .venv on first use and reinstall only when a requirements file changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
PYTEST_ARGS ?=
# Two pytest-xdist workers: much of the suite waits on servers, clusters and browsers, not the CPU.
TEST_WORKERS ?= 2

.PHONY: run test bench

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed (3.11 recommended); set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)

# Stamp files record which requirements are installed; make compares their dates.
$(VENV)/.installed-run: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-test: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(MANAGE) migrate --noinput --verbosity 0
	$(MANAGE) migrate --database cloud --noinput --verbosity 0
	$(MANAGE) createcachetable
	$(MANAGE) load_builtin_schemas
	$(MANAGE) setup_schedules
	$(MANAGE) ensure_admin
	$(MANAGE) collectstatic --noinput --verbosity 0
	exec $(MANAGE) serve

test: $(VENV)/.installed-test
	$(PY) -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# SQLite on fresh files by default; PostgreSQL with BENCH_DATABASE_URL and BENCH_CLOUD_DATABASE_URL.
# Prints one table and writes it to bench/results/latest.md.
$(VENV)/.installed-bench: requirements.txt requirements-dev.txt bench/requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed-test $(VENV)/.installed-run

bench: $(VENV)/.installed-bench
	$(PY) bench/run.py
