# bootc-pipeline: build bootc images into Lima-ready qcow2 disks published as OCI artifacts.
#   make publish ARCH=arm64,amd64 [VARIANT=fedora-40] [REGISTRY=host:port] [FLAGS=...]
#   make index RESULTS="a/result-amd64.json b/result-arm64.json" [VARIANT=...]  (the join)
# The venv scripts/setup-debian.sh makes; python3 where there is none (a developer's own Python).
PYTHON   ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
VARIANT  ?= fedora-40
ARCH     ?=
REGISTRY ?=
FLAGS    ?=
# What only publish takes, e.g. --skip-boot (tests whose stand-in disks cannot boot).
PUBLISH_FLAGS ?=
RELEASE_VERSION ?=
RESULTS  ?=
# --signing-key FILE, or --keyless (the nightly's join: cosign v2 from `make cosign-v2`)
SIGN_FLAGS ?=
COSIGN_V2 ?= /opt/bootc-pipeline-tools/cosign-v2/cosign

PIPELINE = $(PYTHON) -m pipeline
STAGE_ARGS = --variant $(VARIANT) $(if $(ARCH),--arch $(ARCH)) $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(RELEASE_VERSION),--version $(RELEASE_VERSION)) $(FLAGS) $(SIGN_FLAGS)

.PHONY: publish build disk compress boot push index cosign-v2 prune version versions validate check setup setup-runner test test-fast boot-test lint bench

publish: STAGE_ARGS += $(PUBLISH_FLAGS)
publish build disk compress boot push version:
	$(PIPELINE) $@ $(STAGE_ARGS)

index:
	BOOTC_PIPELINE_COSIGN=$(COSIGN_V2) $(PIPELINE) index $(RESULTS) $(STAGE_ARGS)

# cosign v2 for keyless signing: it writes the tag-based signatures containers/image verifies
cosign-v2:
	GOBIN=$(dir $(COSIGN_V2)) GOTOOLCHAIN=auto go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.4

# the release manifest's retention policy, after the join (PRUNE_FLAGS: e.g. --plain-http)
PRUNE_FLAGS ?=
prune:
	$(PIPELINE) prune --variant $(VARIANT) $(if $(REGISTRY),--registry $(REGISTRY)) --yes $(PRUNE_FLAGS)

# `variant=version` per nightly manifest (the nightly workflow's plan job: one version per run)
NIGHTLY_VARIANTS ?= $(basename $(notdir $(wildcard manifests/*-nightly.yaml)))
versions:
	@for v in $(NIGHTLY_VARIANTS); do ver=$$($(PIPELINE) version --variant $$v $(FLAGS)) || exit 1; echo "$$v=$$ver"; done

check:
	$(PIPELINE) check manifests/*.yaml

setup:
	bash scripts/setup-debian.sh

# A GitHub-hosted Ubuntu 24.04 runner, for one nightly job: ROLE=publish or ROLE=join
ROLE ?=
setup-runner:
	bash scripts/setup-runner.sh $(ROLE)

test:
	$(PYTHON) -m pytest

test-fast:
	$(PYTHON) -m pytest -m "not integration"

# The boot tests for one architecture (ARCH=arm64 boots under TCG: slow, see README).
boot-test:
	BOOT_TEST_ARCH=$(or $(ARCH),amd64) $(PYTHON) -m pytest -rP --durations=0 tests/test_boot_e2e.py

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

bench:
	$(PYTHON) benchmarks/compress.py
	$(PYTHON) benchmarks/pull.py
	$(PYTHON) benchmarks/concurrency.py
