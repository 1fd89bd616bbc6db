#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) to run bootc-pipeline and its whole test suite:
# the engine, registry and judging tools from Debian, the Python package with its test extras
# in a virtual environment, .venv (Debian's python3 has no pip and refuses system-wide
# installs, PEP 668); the Makefile and .ci/run use .venv/bin/python.
# PYTHON=/path/to/python3 picks the interpreter the venv is made from (default: Debian's /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

packages=(
    podman runc uidmap fuse-overlayfs        # the engine (rootful, Docker-compatible API)
    docker.io                                # Docker Engine works too (not end to end here)
    docker-registry apache2-utils openssl    # a real OCI registry for tests (htpasswd, TLS)
    skopeo curl zstd qemu-utils e2fsprogs    # clients that judge what was published
    qemu-user-static binfmt-support          # arm64 builds on amd64 (and the reverse)
    busybox-static debootstrap               # local stand-ins for bases and bootc-image-builder
    qemu-system-x86 qemu-system-arm          # the boot check: QEMU for amd64 and arm64 guests,
    ovmf qemu-efi-aarch64                    #   UEFI firmware (OVMF, AAVMF),
    genisoimage openssh-client openssh-sftp-server  # the cidata seed, ssh, reverse sshfs
    cloud-image-utils fdisk                  # tests: their own guest's seed, partition tables
    dosfstools mtools                        # the bib stand-in's ESP (mkfs.vfat, mcopy); tests read it (mtype)
    git make ca-certificates time            # time: peak memory in `make bench`
    python3 python3-minimal python3-venv     # Debian's Python (/usr/bin/python3 is python3-minimal's); the package goes into .venv
    apt mount passwd                         # commands the tests run themselves (apt-cache, mount, useradd)
)

# The ecosystem's own tools (Lima, the ORAS CLI, cosign, actionlint, distribution v3, olareg, syft),
# built with Go from the Go module proxy at pinned versions (scripts/go-tools.sh), in the background
# while apt and pip work: they need only Go, and building them is most of the set-up's time.
command -v go >/dev/null 2>&1 || { echo "setup: go not found on PATH (Go 1.26 builds the test tools)" >&2; exit 1; }
bash scripts/go-tools.sh >/tmp/bootc-pipeline-go-tools.log 2>&1 &
go_tools=$!
trap 'kill "$go_tools" 2>/dev/null || true' EXIT  # a set-up that stops early leaves no build behind

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"

# binfmt_misc is needed for cross-architecture RUN steps; mount it where the kernel left it empty.
if [ -z "$(ls -A /proc/sys/fs/binfmt_misc 2>/dev/null)" ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true

# The venv is made from Debian's own python3 (PYTHON=/path/to/python3 to choose another): the Lima
# tests run the venv's limactl-url-oras as an unprivileged user, who cannot run an interpreter under
# /root (pyenv). A venv made by another interpreter, or one too old for the package, is made again.
python=${PYTHON:-/usr/bin/python3}
home=$(dirname "$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')")
if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    ! grep -qxF "home = $home" .venv/pyvenv.cfg 2>/dev/null; then
    rm -rf .venv
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
if ! wait "$go_tools"; then
    cat /tmp/bootc-pipeline-go-tools.log >&2
    echo "setup: building the Go tools failed (log above)" >&2
    exit 1
fi
grep -E '^(go install|  )' /tmp/bootc-pipeline-go-tools.log || true
echo "setup done: run the tests with 'make test'"
