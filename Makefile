# Two commands set everything up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ENV = eval "$$($(PY) tools/localenv.py)"
PORT ?= 8000

.PHONY: run test lint lock stop localstack-test zip-check venv migrate seed package bench bench-quick clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-xray.txt requirements-dev.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c requirements-dev.lock
	# compat: a plain path entry; the default editable finder costs every Python start ~20 ms
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . --config-settings editable_mode=compat
	touch $@

run: venv
	@$(ENV) && $(PY) -m chalicelib.cli migrate \
	  && $(PY) -m chalicelib.cli seed --size small --if-empty \
	  && $(PY) -m chalicelib.cli refresh-views >/dev/null \
	  && TOKEN=$$($(PY) -m chalicelib.cli token --tenant 1 --role admin --ttl 86400) \
	  && echo "" \
	  && echo "Ready. Try:" \
	  && echo "  curl -s -H \"Authorization: Bearer $$TOKEN\" 'http://127.0.0.1:$(PORT)/api/departments?clientId=1'" \
	  && echo "" \
	  && exec $(PY) -m chalicelib.cli serve --port $(PORT)

test: venv
	@$(ENV) && $(PY) -m pytest -q $(PYTEST_ARGS)

# ruff (pycodestyle, pyflakes, import order) over everything, mypy over the shipped code;
# both configured in pyproject.toml.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Rewrite requirements-dev.lock from the current .venv (after changing requirements-dev.txt).
lock: venv
	{ sed -n '1,3p' requirements-dev.lock; $(PY) -m pip freeze --exclude-editable --disable-pip-version-check; } > requirements-dev.lock.new
	mv requirements-dev.lock.new requirements-dev.lock

# The AWS-facing tests against real LocalStack (installed once into .local/localstack-venv).
localstack-test: venv
	tools/localstack_test.sh

# Build the deployment zips (default and X-Ray stage) and run them as Lambda would.
zip-check: venv
	$(PY) tools/lambda_zip_check.py

# Stop the embedded PostgreSQL and Redis that `make run` / `make test` started under .local/.
stop:
	@if [ -x $(PY) ]; then $(PY) tools/localenv.py --stop; else echo "nothing to stop (no .venv)"; fi

migrate: venv
	@$(ENV) && $(PY) -m chalicelib.cli migrate

seed: venv
	@$(ENV) && $(PY) -m chalicelib.cli seed --size $(or $(SIZE),small) $(SEED_ARGS)

clean: stop
	rm -rf $(VENV) .local build

package: venv
	infra/package.sh build/package

bench: venv
	@$(ENV) && $(PY) -m bench --full

bench-quick: venv
	@$(ENV) && $(PY) -m bench --quick
