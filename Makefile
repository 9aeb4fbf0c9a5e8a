# The two commands a newcomer needs:
#   make run    set up and start the service on the embedded SQLite database
#               (installs the runtime dependencies only, requirements.txt)
#   make test   set up and run everything CI runs: ruff, mypy --strict, pytest (SQLite +
#               PostgreSQL); installs the dev toolchain too (requirements-dev.txt)
# and for performance work (bench/README.md):
#   make bench        the benchmark: gunicorn + wrk + pgbench on seeded PostgreSQL databases,
#                     and the service's req/s as a fraction of a bare-WSGI floor's
#   make bench-smoke  the same, seconds long on tiny data (what CI runs, through pytest)
# and for running several replicas (docs/operations.md, "Several replicas"):
#   make cluster      nginx on :8080 in front of 2 gunicorn replicas, PgBouncer in front of the
#                     local PostgreSQL (CLUSTER_DATABASE_URL), rate limits in Redis; Ctrl-C stops it

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
PYTEST_ARGS ?=
BENCH_ARGS ?=

export FLASK_APP := wsgi

.PHONY: run test lint typecheck pytest install install-runtime system-deps clean

# Two sentinels: `make run` needs only the runtime pins (requirements.txt); everything else
# (tests, lint, the bench, the cluster) also needs the dev toolchain (requirements-dev.txt).
# An existing virtualenv is reused, never recreated.
$(VENV)/.runtime-installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

install-runtime: $(VENV)/.runtime-installed

install: $(VENV)/.dev-installed

run: install-runtime
	APP_ENV=development $(BIN)/flask db upgrade
	@echo
	@echo "  todo-api on http://127.0.0.1:$(PORT)  (SQLite: instance/todo.db)"
	@echo "  Swagger UI:  http://127.0.0.1:$(PORT)/docs   OpenAPI: http://127.0.0.1:$(PORT)/openapi.json"
	@echo "  A token for user 'demo-user' (paste into Authorize; new ones: $(BIN)/flask token create USER_ID):"
	@echo
	@APP_ENV=development $(BIN)/flask token create demo-user --ttl 86400
	@echo
	APP_ENV=development $(BIN)/flask run --host 127.0.0.1 --port $(PORT) --reload

system-deps:
	@bash scripts/install-system-deps.sh

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy --strict todo config.py wsgi.py gunicorn.conf.py bench

pytest: install system-deps
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

test: lint typecheck pytest

# Extra options: make bench BENCH_ARGS="--sets large --duration 10 --keep" (python -m bench --help).
.PHONY: bench bench-smoke
bench: install system-deps
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-smoke: install system-deps
	$(BIN)/python -m bench --smoke $(BENCH_ARGS)

# Extra options: make cluster CLUSTER_ARGS="--replicas 3 --port 9090" (python -m deploy.cluster --help).
CLUSTER_ARGS ?=
.PHONY: cluster
cluster: install
	@bash scripts/install-system-deps.sh nginx pgbouncer
	$(BIN)/python -m deploy.cluster $(CLUSTER_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
