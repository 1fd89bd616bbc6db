#!/usr/bin/env bash
# The ecosystem's own tools, built from the Go module proxy at pinned versions, that the tests use as
# judges and peers: the real Lima (limactl and its guest agent), the ORAS CLI, cosign, actionlint, two
# more registries (distribution v3, olareg) and syft. Test tools only: the product stays Python.
# Installed under TOOLS (default /opt/bootc-pipeline-tools): TOOLS/bin/X, Lima as TOOLS/lima/bin/limactl
# with its agents in TOOLS/lima/share/lima (where limactl looks for them: <dir of limactl>/../share/lima).
# A tool already built at its pinned version is not built again (the version file beside it says which).
set -euo pipefail
tools=${TOOLS:-/opt/bootc-pipeline-tools}
export GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0
export GOTOOLCHAIN=local

# name | module/cmd path | version
pinned=(
    "oras|oras.land/oras/cmd/oras|v1.3.6"
    "actionlint|github.com/rhysd/actionlint/cmd/actionlint|v1.7.12"
    "cosign|github.com/sigstore/cosign/v3/cmd/cosign|v3.1.2"
    "registry|github.com/distribution/distribution/v3/cmd/registry|v3.1.1"
    "olareg|github.com/olareg/olareg/cmd/olareg|v0.2.2"
    "syft|github.com/anchore/syft/cmd/syft|v1.57.1"
)
lima_version=v2.2.0
lima_module=github.com/lima-vm/lima/v2

mkdir -p "$tools/bin" "$tools/lima/bin" "$tools/lima/share/lima"
have() { [ -x "$1" ] && [ "$(cat "$1.version" 2>/dev/null)" = "$2" ]; }

for entry in "${pinned[@]}"; do
    IFS='|' read -r name path version <<<"$entry"
    if have "$tools/bin/$name" "$path@$version"; then continue; fi
    echo "go install $path@$version" >&2
    start=$SECONDS
    GOBIN="$tools/bin" go install -trimpath "$path@$version"
    echo "$path@$version" >"$tools/bin/$name.version"
    echo "  $name built in $((SECONDS - start)) s" >&2
done

# Lima: limactl for this host, its guest agent for each guest architecture the tests boot, the
# version stamped (else limactl reports "<unknown>" and templates' minimumLimaVersion checks fail).
ldflags="-X $lima_module/pkg/version.Version=$lima_version"
if ! have "$tools/lima/bin/limactl" "$lima_version"; then
    echo "go install $lima_module/cmd/limactl@$lima_version" >&2
    start=$SECONDS
    GOBIN="$tools/lima/bin" go install -trimpath -ldflags "$ldflags" "$lima_module/cmd/limactl@$lima_version"
    for goarch in amd64 arm64; do
        case $goarch in amd64) guest=x86_64 ;; arm64) guest=aarch64 ;; esac
        out=$(mktemp -d)
        # go build, not go install: a cross-compiled install refuses GOBIN and lands in GOPATH/bin/linux_ARCH
        (cd "$out" && GOOS=linux GOARCH=$goarch go mod init agentbuild >/dev/null 2>&1 &&
            go get "$lima_module@$lima_version" >/dev/null 2>&1 &&
            GOOS=linux GOARCH=$goarch go build -trimpath -ldflags "$ldflags" -o "$out/agent" "$lima_module/cmd/lima-guestagent")
        gzip -9 -c "$out/agent" >"$tools/lima/share/lima/lima-guestagent.Linux-$guest.gz"
        rm -rf "$out"
    done
    echo "$lima_version" >"$tools/lima/bin/limactl.version"
    echo "  limactl and guest agents built in $((SECONDS - start)) s" >&2
fi
echo "Go tools in $tools/bin and $tools/lima/bin" >&2
