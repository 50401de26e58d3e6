# ospool-ep developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
IMAGE  ?= localhost/ospool-ep:dev
# The image's Debian suite (Dockerfile, "Variants"): forky = HTCondor 25 with
# Apptainer from sid; trixie = Debian stable, HTCondor 23.9, no Apptainer.
DEBIAN_SUITE ?= forky
BIN    := $(VENV)/bin

.PHONY: help dev host-tools lint typecheck unit test fresh image demo bench clean

help:
	@echo "make demo    - a local central manager and one pilot in podman; a job runs on it"
	@echo "make test    - everything CI runs: lint, types, unit and container tests"
	@echo "make unit    - lint, types and the tests that need no containers"
	@echo "make fresh   - make unit in a fresh copy of this tree, as a new contributor would"
	@echo "make image   - build $(IMAGE) from Debian $(DEBIAN_SUITE) (podman; debootstraps a base where no registry is reachable)"
	@echo "make bench   - print the benchmark figures"
	@echo "make mutate  - mutation score of each pure module (mutmut; minutes per module)"

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

# Says how long the tests took (the README states the figure); pytest's exit status is kept.
UNIT_TESTS := $(BIN)/pytest -m "not container"
unit: host-tools lint typecheck
	@echo '$(UNIT_TESTS)'
	@start=$$(date +%s); $(UNIT_TESTS); status=$$?; \
	echo "make unit: the tests took $$(( $$(date +%s) - start )) s"; exit $$status

# `make unit` in a fresh copy of this tree, fresh .venv, only system dirs on PATH.
fresh:
	scripts/fresh-clone-check.sh unit

image:
	IMAGE=$(IMAGE) DEBIAN_SUITE=$(DEBIAN_SUITE) scripts/build-image.sh

demo: dev image
	$(BIN)/python scripts/demo.py

test: lint typecheck image mutate-changed
	$(BIN)/pytest

# dist/ospool-ep-<version>-<release>.noarch.rpm (installs rpm and rpmlint with apt-get if missing).
.PHONY: rpm
rpm:
	rpm/build-rpm.sh

bench: dev
	$(BIN)/python benchmarks/check_latency.py

# Mutation testing of the pure modules (scripts/mutate.py; results kept in .mutmut/,
# so a rerun checks only the functions that changed). The slice `make test` runs:
# the pure modules changed since MUTATE_BASE, stopped after MUTATE_BUDGET seconds.
.PHONY: mutate mutate-changed
MUTATE_BASE   ?= HEAD~1
MUTATE_BUDGET ?= 300
# Report-only in CI until every pure module reaches 90% (then: MUTATE_FAIL_UNDER ?= 90).
MUTATE_FAIL_UNDER ?=
mutate: dev
	$(BIN)/python scripts/mutate.py --fail-under 90

mutate-changed: dev
	$(BIN)/python scripts/mutate.py --changed-since $(MUTATE_BASE) --budget $(MUTATE_BUDGET) \
		$(if $(MUTATE_FAIL_UNDER),--fail-under $(MUTATE_FAIL_UNDER))

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .mutmut
