#!/usr/bin/env bash
# The ecosystem's own tools, built from the Go module proxy at pinned versions, that the tests use as
# judges and peers: the real Lima (limactl and its guest agent), the ORAS CLI, cosign, actionlint, two
# more registries (distribution v3, olareg), syft, and a skopeo built with sigstore support (Debian's is
# built without it and refuses every sigstoreSigned policy: "Debian-local change: sigstore disabled"). Test tools only: the product stays Python.
# Installed under TOOLS (default /opt/bootc-pipeline-tools): TOOLS/bin/X, Lima as TOOLS/lima/bin/limactl
# with its agents in TOOLS/lima/share/lima (where limactl looks for them: <dir of limactl>/../share/lima).
# A tool already built at its pinned version is not built again (the version file beside it says which).
set -euo pipefail
tools=${TOOLS:-/opt/bootc-pipeline-tools}
export GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0
export GOTOOLCHAIN=local
# The checksum database answers 404 for this one module (seen 2026-12-02); its dependencies are
# still verified by its go.sum.
export GONOSUMDB=github.com/containers/skopeo

# name | module/cmd path | version [| build tags]
pinned=(
    "oras|oras.land/oras/cmd/oras|v1.3.6"
    "actionlint|github.com/rhysd/actionlint/cmd/actionlint|v1.7.12"
    "cosign|github.com/sigstore/cosign/v3/cmd/cosign|v3.1.2"
    "registry|github.com/distribution/distribution/v3/cmd/registry|v3.1.1"
    "olareg|github.com/olareg/olareg/cmd/olareg|v0.2.2"
    "syft|github.com/anchore/syft/cmd/syft|v1.57.1"
    # its own static build tags (no gpgme, no btrfs/devicemapper headers); v1.17, v1.18, v1.20
    # and v1.21 are refused by the Go module proxy
    "skopeo|github.com/containers/skopeo/cmd/skopeo|v1.19.0|containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
)
lima_version=v2.2.0
lima_module=github.com/lima-vm/lima/v2

mkdir -p "$tools/bin" "$tools/lima/bin" "$tools/lima/share/lima"
have() { [ -x "$1" ] && [ "$(cat "$1.version" 2>/dev/null)" = "$2" ]; }

# go build PACKAGE@VERSION -o OUT [GOOS/GOARCH from the environment] inside a throwaway module: the
# module's own go.mod decides the dependencies, as `go install PATH@VERSION` would. Used where
# `go install` cannot: cross-compiling (it refuses GOBIN), and a module whose version list the proxy
# refuses (`go install` reads it for the deprecation check; olareg: "reading .../@v/list: 403").
build_in_module() {
    local path=$1 version=$2 out=$3 ldflags=${4:-} tags=${5:-} dir rc=0
    dir=$(mktemp -d)
    (cd "$dir" && go mod init gotools.local >/dev/null 2>&1 &&
        GOOS= GOARCH= go get "$path@$version" >&2 &&
        go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out" "$path") || rc=$?
    rm -rf "$dir"
    return $rc
}

# install_tool NAME PATH VERSION DIR [LDFLAGS [TAGS]]: DIR/NAME, by go install, else from a throwaway
# module
install_tool() {
    local name=$1 path=$2 version=$3 dir=$4 ldflags=${5:-} tags=${6:-}
    if ! GOBIN="$dir" go install -trimpath -tags "$tags" -ldflags "$ldflags" "$path@$version"; then
        echo "  go install refused $path@$version (above); building it in a throwaway module" >&2
        build_in_module "$path" "$version" "$dir/$name" "$ldflags" "$tags"
    fi
}

for entry in "${pinned[@]}"; do
    IFS='|' read -r name path version tags <<<"$entry"
    if have "$tools/bin/$name" "$path@$version"; then continue; fi
    echo "go install $path@$version" >&2
    start=$SECONDS
    install_tool "$name" "$path" "$version" "$tools/bin" "" "$tags"
    echo "$path@$version" >"$tools/bin/$name.version"
    echo "  $name built in $((SECONDS - start)) s" >&2
done

# Lima: limactl for this host, its guest agent for each guest architecture the tests boot, the
# version stamped (else limactl reports "<unknown>" and templates' minimumLimaVersion checks fail).
ldflags="-X $lima_module/pkg/version.Version=$lima_version"
if ! have "$tools/lima/bin/limactl" "$lima_version"; then
    echo "go install $lima_module/cmd/limactl@$lima_version" >&2
    start=$SECONDS
    install_tool limactl "$lima_module/cmd/limactl" "$lima_version" "$tools/lima/bin" "$ldflags"
    for goarch in amd64 arm64; do
        case $goarch in amd64) guest=x86_64 ;; arm64) guest=aarch64 ;; esac
        agent=$(mktemp)
        GOOS=linux GOARCH=$goarch build_in_module "$lima_module/cmd/lima-guestagent" "$lima_version" "$agent" "$ldflags"
        gzip -9 -c "$agent" >"$tools/lima/share/lima/lima-guestagent.Linux-$guest.gz"
        rm -f "$agent"
    done
    echo "$lima_version" >"$tools/lima/bin/limactl.version"
    echo "  limactl and guest agents built in $((SECONDS - start)) s" >&2
fi
echo "Go tools in $tools/bin and $tools/lima/bin" >&2
