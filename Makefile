# bootc-pipeline: build bootc images into Lima-ready qcow2 disks published as OCI artifacts.
#   make publish ARCH=arm64,amd64 [VARIANT=fedora-40] [REGISTRY=host:port] [FLAGS=...]
# The venv scripts/setup-debian.sh makes; python3 where there is none (a developer's own Python).
PYTHON   ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
VARIANT  ?= fedora-40
ARCH     ?=
REGISTRY ?=
FLAGS    ?=

PIPELINE = $(PYTHON) -m pipeline
STAGE_ARGS = --variant $(VARIANT) $(if $(ARCH),--arch $(ARCH)) $(if $(REGISTRY),--registry $(REGISTRY)) $(FLAGS)

.PHONY: publish build disk compress boot push validate check setup test test-fast boot-test lint bench

publish build disk compress boot push:
	$(PIPELINE) $@ $(STAGE_ARGS)

check:
	$(PIPELINE) check manifests/*.yaml

setup:
	bash scripts/setup-debian.sh

test:
	$(PYTHON) -m pytest

test-fast:
	$(PYTHON) -m pytest -m "not integration"

# The boot tests for one architecture (ARCH=arm64 boots under TCG: slow, see README).
boot-test:
	BOOT_TEST_ARCH=$(or $(ARCH),amd64) $(PYTHON) -m pytest tests/test_boot_e2e.py

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

bench:
	$(PYTHON) benchmarks/compress.py
	$(PYTHON) benchmarks/pull.py
