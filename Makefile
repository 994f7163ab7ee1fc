# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint format bench fuzz clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

## Start Redis, SecantusDB and a dry-run model where .env names none, then web and worker.
run: $(STAMP)
	$(BIN)/python -m devtools.local_stack

## Run the whole test suite against real servers; the slowest tests are listed at the end.
test: $(STAMP)
	$(BIN)/python -m pytest --durations=25

## The unit tests only: no server is started.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m unit -q

## Simulated participants against web + worker on real servers: spread over a turn, starting
## together, a burst of 500 first messages, 1,000 long polls; each held to its goal, against
## RQ's stock worker. Figures and chart in bench-results/. Options go through BENCH_ARGS, e.g.
## make bench BENCH_ARGS="--scenarios burst --workers concurrent --profile".
bench: $(STAMP)
	$(BIN)/python -m devtools.bench $(BENCH_ARGS)

## schemathesis with every check against a live local stack, with a new seed each time.
fuzz: $(STAMP)
	$(BIN)/python -m devtools.fuzz $(FUZZ_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
