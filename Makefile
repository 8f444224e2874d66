# The two commands of the README, and their parts. Run as root on Debian 12.
SHELL := /bin/bash
PYTEST_ARGS ?=

.PHONY: demo check setup lint test unit unit-alone integration long bench cluster-stop docs compat

## demo: set everything up, then run the two-node all-reduce example as the cluster user
demo: setup
	bash scripts/demo

## check: set everything up, lint, type-check and run every test tier (what CI runs); lint and the
## tiers that need no cluster run while the cluster is set up (scripts/check)
check:
	PYTEST_ARGS="$(PYTEST_ARGS)" bash scripts/check

setup:
	bash scripts/setup

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

test:
	.venv/bin/python -m pytest $(PYTEST_ARGS)

unit:
	.venv/bin/python -m pytest tests/unit $(PYTEST_ARGS)

## unit-alone: the unit tests as CI runs them, with a `shared` folder beside the checkout hidden
unit-alone:
	bash .ci/run unit

integration:
	.venv/bin/python -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

## long: the long scenario tests (marker long, left out of check) on the cluster; dated result in benchmarks/results/long_tests.md
long: setup
	.venv/bin/python scripts/long_tests.py $(PYTEST_ARGS)

bench: setup
	cd benchmarks && ../.venv/bin/python submit_overhead.py && ../.venv/bin/python container_overhead.py

## compat: the integration suite inside chroot clusters of other Slurm/Podman majors (cluster/compat-suite); dated result table in docs/compatibility.md
RELEASES ?= trixie sid
compat:
	cluster/compat-suite all $(RELEASES)

cluster-stop:
	cluster/localcluster stop

## docs: build the documentation site into site/; a broken link or a page missing from the navigation fails
docs:
	[ -x .venv/bin/python ] || python3 -m venv .venv
	.venv/bin/python -c 'import mkdocs, material' 2>/dev/null || \
		.venv/bin/pip install -q --disable-pip-version-check -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict
