# Two commands for a newcomer: `make run` (the registry on localhost) and
# `make test`. Each creates the virtualenv in .venv when it is missing or
# when the requirements changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test migrate clean tools built lock

$(STAMP): requirements-dev.txt layers/shared/requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

## Run every test against real Postgres, Redis and moto's EventBridge.
## The built artifacts (sam build, tests/test_built_artifacts.py) are built
## in the background first, so the build overlaps the other tests.
## TEST_WORKERS pytest-xdist workers (3 on this 2-core machine: much of a
## test's time is spent waiting on a server or a subprocess), each test file
## on one worker (--dist loadfile: module fixtures and in-file order hold);
## TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3
test: $(STAMP)
	@$(BIN)/python -m devstack.built prefetch
	$(BIN)/python -m pytest -p devstack.pytest_built_last $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

## Apply the SQL migrations to $$DATABASE_URL (same SQL as the deploy-time migration).
migrate: $(STAMP)
	PYTHONPATH=layers/shared $(BIN)/python -m registry.migrate

clean:
	rm -rf $(VENV) .venv-sam .aws-sam .pytest_cache

## The SAM CLI (and uv, for `make lock`) in their own virtualenv, .venv-sam:
## aws-sam-cli pins packages the dev virtualenv also has.
tools: $(STAMP)
	@$(BIN)/python -m devstack.built tools

## sam build for ARCH (default: this machine's; the template's default is
## arm64), then packaged as `sam package` zips it, under .aws-sam/built/
## (cached by a hash of the inputs). Needs Python 3.13 (pyenv's is found).
built: $(STAMP)
	@$(BIN)/python -m devstack.built build $(if $(ARCH),--arch $(ARCH))

## Pin the layer's requirements with hashes (arm64 and x86_64 wheels for
## Python 3.13) into layers/shared/requirements.lock, after editing
## layers/shared/requirements.txt. Existing pins are kept unless
## ARGS=--upgrade (or --upgrade-package NAME). Then checks that pip finds a
## hashed wheel of every pin for both architectures.
lock: tools
	.venv-sam/bin/uv pip compile layers/shared/requirements.txt --universal --python-version 3.13 \
	    --generate-hashes --custom-compile-command "make lock" --quiet -o layers/shared/requirements.lock $(ARGS)
	@py313=$$($(BIN)/python -m devstack.built python313) && tmp=$$(mktemp -d) && \
	for cpu in aarch64 x86_64; do \
	    $$py313 -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps --only-binary=:all: \
	        --implementation cp --python-version 3.13 --platform manylinux_2_34_$$cpu --platform manylinux_2_28_$$cpu \
	        --platform manylinux_2_17_$$cpu -d $$tmp/$$cpu -r layers/shared/requirements.lock 2>&1 | grep -v "is ignored" ; \
	    test "$$(ls $$tmp/$$cpu | wc -l)" = "$$(grep -c '==' layers/shared/requirements.lock)" || { echo "lock: wheels missing for $$cpu"; exit 1; }; \
	    echo "lock: every pin has a hashed Python 3.13 wheel for $$cpu"; \
	done; rm -rf $$tmp

## The registry on http://127.0.0.1:PORT (PORT defaults to 3000) over embedded
## Postgres and Redis (or $$DATABASE_URL / $$REDIS_URL) and a local EventBridge,
## every event shown live; Ctrl-C stops it all. Data stays in .registry/.
## Options: make run PORT=3001 ARGS="--fresh | --state-dir DIR | --logs | --sam | --built"
## (--built: each request served by the built artifact under the Lambda
## runtime client, as `sam local start-api` does but without Docker)
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
## 4000, 40x `make test`'s 100), then the database checked; docs/results.md.
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
