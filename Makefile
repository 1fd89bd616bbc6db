# bootc-pipeline: build bootc images into Lima-ready qcow2 disks published as OCI artifacts.
#   make publish ARCH=arm64,amd64 [VARIANT=fedora-40] [REGISTRY=host:port] [FLAGS=...]
#   make index RESULTS="a/result-amd64.json b/result-arm64.json" [VARIANT=...]  (the join)
# The venv scripts/setup-debian.sh makes; python3 where there is none (a developer's own Python).
PYTHON   ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
VARIANT  ?= fedora-40
ARCH     ?=
REGISTRY ?=
FLAGS    ?=
RELEASE_VERSION ?=
RESULTS  ?=

PIPELINE = $(PYTHON) -m pipeline
STAGE_ARGS = --variant $(VARIANT) $(if $(ARCH),--arch $(ARCH)) $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(RELEASE_VERSION),--version $(RELEASE_VERSION)) $(FLAGS)

.PHONY: publish build disk compress push index version versions validate check setup test test-fast lint bench

publish build disk compress push version:
	$(PIPELINE) $@ $(STAGE_ARGS)

index:
	$(PIPELINE) index $(RESULTS) $(STAGE_ARGS)

# `variant=version` per nightly manifest (the nightly workflow's plan job: one version per run)
NIGHTLY_VARIANTS ?= $(basename $(notdir $(wildcard manifests/*-nightly.yaml)))
versions:
	@for v in $(NIGHTLY_VARIANTS); do ver=$$($(PIPELINE) version --variant $$v $(FLAGS)) || exit 1; echo "$$v=$$ver"; done

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
	$(PYTHON) benchmarks/concurrency.py
