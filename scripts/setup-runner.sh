#!/usr/bin/env bash
# Set up a GitHub-hosted ubuntu-24.04 / ubuntu-24.04-arm runner (as root) for one nightly job, with
# only what that job runs: never the test tool chain (scripts/setup-debian.sh is for that), and
# never docker.io or runc: the runners' Docker is Docker's own docker-ce with containerd.io,
# which conflicts with Ubuntu's containerd and runc (apt would fail or remove the runner's Docker).
#   setup-runner.sh publish   build, disk, boot check and push of this runner's architecture
#   setup-runner.sh join      the plan job and the join: the package talks to the registry only
# Package names are Ubuntu 24.04's; every one is also Debian 12's name (tests/test_setup_runner.py
# checks them with apt-cache; README "Nightlies" says what that does and does not show).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
role=${1:-}

join=(
    python3 python3-venv ca-certificates   # the package, in .venv (pip from the venv)
)
publish=(
    "${join[@]}"
    git mount                               # the revision (git rev-parse); umount after bib
    skopeo                                  # the disk stage: Docker's image into a containers-storage
    qemu-utils genisoimage                  # the boot check: qemu-img, the cidata seed,
    openssh-client openssh-sftp-server      #   ssh and reverse sshfs into the guest
)
# the boot check boots this runner's own architecture: its QEMU and UEFI firmware only
amd64=(qemu-system-x86 ovmf)
arm64=(qemu-system-arm qemu-efi-aarch64)

case $role in
    join) packages=("${join[@]}") ;;
    publish)
        arch=$(dpkg --print-architecture)
        case $arch in
            amd64) packages=("${publish[@]}" "${amd64[@]}") ;;
            arm64) packages=("${publish[@]}" "${arm64[@]}") ;;
            *) echo "setup-runner: no nightly runner for architecture $arch" >&2; exit 2 ;;
        esac
        ;;
    *) echo "usage: setup-runner.sh publish|join (got '${role}')" >&2; exit 2 ;;
esac
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"

rm -rf .venv
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check .
echo "setup-runner done ($role): ${packages[*]}"
