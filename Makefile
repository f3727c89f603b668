# Two commands on a fresh machine:  `make demo` (set up + run on the embedded default), `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Test processes (pytest-xdist): one more than the CPUs. Several long tests mostly wait (the
# Terraform apply on moto: ~290 s of which ~100 s CPU; subprocess CLI runs; retry back-offs),
# and a worker that waits would leave its core idle. Work stealing: the tests' lengths vary
# from milliseconds to minutes, so an idle worker takes tests queued for another.
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

.PHONY: install demo test lint format bench-lake

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# The offline demo: ~100 days of synthetic history (so silver has complete bars), then the
# daily pipeline exactly as cron runs it, then the health check, then a few bars read back.
DEMO_START ?= $(shell date -u -d '100 days ago' +%F)

demo: install
	$(BIN)/condvest --quiet fetch --source synthetic --start $(DEMO_START) > /dev/null
	$(BIN)/condvest run --source synthetic
	$(BIN)/condvest status --check
	$(BIN)/condvest read bars --interval 5 --start $(DEMO_READ_START)

# The demo ends by reading the lake: the 5-session bars of the last few weeks.
DEMO_READ_START ?= $(shell date -u -d '21 days ago' +%F)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: install lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)
