# Two commands for a newcomer: `make run` (the registry on localhost) and
# `make test`. Each creates the virtualenv in .venv when it is missing or
# when the requirements changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test migrate clean

$(STAMP): requirements-dev.txt layers/shared/requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

## Run every test against real Postgres, Redis and moto's EventBridge.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Apply the SQL migrations to $$DATABASE_URL (same SQL as the deploy-time migration).
migrate: $(STAMP)
	PYTHONPATH=layers/shared $(BIN)/python -m registry.migrate

clean:
	rm -rf $(VENV) .pytest_cache

## The registry on http://127.0.0.1:PORT (PORT defaults to 3000) over embedded
## Postgres and Redis (or $$DATABASE_URL / $$REDIS_URL) and a local EventBridge,
## every event shown live; Ctrl-C stops it all. Data stays in .registry/.
## Options: make run PORT=3001 ARGS="--fresh | --state-dir DIR | --logs | --sam"
.PHONY: run
run: $(STAMP)
	@$(BIN)/python -m devstack.local $(if $(PORT),--port $(PORT)) $(ARGS)

## Benchmark on this machine: warm latency against the floor, round trips,
## cold start, sweep at 1,000,000 workspaces, HTTP; prints a table, writes
## bench/out/results.json and bench/out/latency.png (docs/bench.md).
## Sizes: BENCH_ITERATIONS, BENCH_FLEET, BENCH_COLD_RUNS, BENCH_HTTP_REQUESTS;
## options: make bench ARGS="--only latency,cold | --profile | --smoke | --help"
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

## The long fuzz: tests/test_fuzz.py (schemathesis against the local API's
## /openapi.json) with FUZZ_EXAMPLES generated bodies per route (default
## 4000, 16x `make test`'s 250), then the database checked; docs/results.md.
## Options: make fuzz FUZZ_EXAMPLES=10000 FUZZ_SEED=7
.PHONY: fuzz
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),4000) $(if $(FUZZ_SEED),FUZZ_SEED=$(FUZZ_SEED)) $(BIN)/python -m pytest tests/test_fuzz.py -s -rxX $(PYTEST_ARGS)

## The operators' command line, python -m registry.admin, against `make run`
## (or a deployed stack: ARGS="--url https://<api>.execute-api.<region>.amazonaws.com/<stage> summary").
## make admin ARGS="workspaces --status degraded" | ARGS="events --follow" | ARGS="--help"
.PHONY: admin
admin: $(STAMP)
	@PYTHONPATH=layers/shared $(BIN)/python -m registry.admin $(if $(PORT),--url http://127.0.0.1:$(PORT)) $(ARGS)
