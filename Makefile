# ospool-ep developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
IMAGE  ?= localhost/ospool-ep:dev
BIN    := $(VENV)/bin

.PHONY: help dev host-tools lint typecheck unit test fresh image demo bench clean

help:
	@echo "make demo    - a local central manager and one pilot in podman; a job runs on it"
	@echo "make test    - everything CI runs: lint, types, unit and container tests"
	@echo "make unit    - lint, types and the tests that need no containers"
	@echo "make fresh   - make unit in a fresh copy of this tree, as a new contributor would"
	@echo "make image   - build $(IMAGE) (podman; debootstraps a base where no registry is reachable)"
	@echo "make bench   - print the benchmark figures"

# A private virtual environment with the project (editable) and its test tools.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

dev: $(BIN)/.installed

# Debian packages some unit tests run (shellcheck, rpmbuild, rpmlint, fuse, ...):
# installed here so that no test skips for a tool the project can install.
# Idempotent; well under a second when everything is there.
host-tools:
	@scripts/setup-host.sh >/dev/null

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: dev
	$(BIN)/mypy

unit: host-tools lint typecheck
	$(BIN)/pytest -m "not container"

# `make unit` in a fresh copy of this tree, fresh .venv, only system dirs on PATH.
fresh:
	scripts/fresh-clone-check.sh unit

image:
	IMAGE=$(IMAGE) scripts/build-image.sh

demo: dev image
	$(BIN)/python scripts/demo.py

test: lint typecheck image
	$(BIN)/pytest

# dist/ospool-ep-<version>-<release>.noarch.rpm (installs rpm and rpmlint with apt-get if missing).
.PHONY: rpm
rpm:
	rpm/build-rpm.sh

bench: dev
	$(BIN)/python benchmarks/check_latency.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
