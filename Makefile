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

.PHONY: publish build disk compress push validate check setup test test-fast lint bench

publish build disk compress push:
	$(PIPELINE) $@ $(STAGE_ARGS)

check:
	$(PIPELINE) check manifests/*.yaml

setup:
	bash scripts/setup-debian.sh

test:
	$(PYTHON) -m pytest

test-fast:
	$(PYTHON) -m pytest -m "not integration"

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

bench:
	$(PYTHON) benchmarks/compress.py
	$(PYTHON) benchmarks/pull.py
