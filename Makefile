# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every data-parallel path runs on 8 (virtual) CPU devices in the tests.
TEST_ENV := XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# Two workers, each taking whole test files (their module fixtures are built once): the suite is
# compile-bound, so 2 cores run it in little more than half the time.
test: install
	@$(TEST_ENV) $(PY) -m pytest -q -n 2 --dist loadfile --durations=15

demo: install
	@$(PY) -m facemusic_jax.demo

clean:
	rm -rf $(VENV) workdirs out
