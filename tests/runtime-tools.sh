#!/usr/bin/env bash
# The OCI runtime-tools validation suite (opencontainers/runtime-tools at 408c51e, the
# commit youki's CI pins; source with vendored Go deps in ../shared/peers) against
# `locker-runtime`. Builds the suite once into a cache directory with Debian's Go,
# offline, then runs each validation test from the suite's root inside a private
# mount namespace (some tests leave mounts under /tmp). A test passes when it exits 0
# and prints no `not ok` (youki's rule, which the peers' figures use). A pass that
# printed no `ok` line asserted nothing it could report (a lifecycle test whose check
# failed prints only a diagnostic): it is shown as `ok?` and named in the summary.
#
#   tests/runtime-tools.sh               the fixed fast subset (what tests/run.sh runs)
#   tests/runtime-tools.sh --all         all 58 tests (README lists why each failure fails)
#   tests/runtime-tools.sh TEST..        the named tests (e.g. default hooks_stdin)
#
# Environment: LOCKER (the binary; default target/debug/locker), RUNTIME_TOOLS_CACHE
# (default /var/cache/locker-tests/runtime-tools), RUNTIME_TOOLS_SRC (the tarball).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

src=${RUNTIME_TOOLS_SRC:-$repo/../shared/peers/runtime-tools-408c51e.tar.gz}
cache=${RUNTIME_TOOLS_CACHE:-/var/cache/locker-tests/runtime-tools}
locker=${LOCKER:-${CARGO_TARGET_DIR:-$repo/target}/debug/locker}

# The subset the default test command runs (every one passes here): the lifecycle,
# hooks, the process, the security fields, namespaces (by path, new, the user
# namespace), cgroups.
subset=(create state kill delete delete_resources default hostname hooks_stdin poststart
    poststop prestart process process_user linux_masked_paths linux_readonly_paths linux_sysctl
    linux_devices linux_seccomp linux_ns_path linux_ns_nopath linux_uid_mappings
    linux_cgroups_pids linux_cgroups_devices mounts misc_props root_readonly_true)

if [ ! -f "$src" ]; then
    echo "runtime-tools.sh: no suite source at $src" >&2
    exit 1
fi
if [ ! -x "$cache/runtime-tools/validation/default/default.t" ]; then
    command -v go >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go make >/dev/null
    }
    rm -rf "$cache"
    mkdir -p "$cache"
    tar -xzf "$src" -C "$cache"
    (cd "$cache/runtime-tools" &&
        GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local make runtimetest validation-executables >/dev/null)
fi

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
ln -s "$(readlink -f "$locker")" "$bin/locker-runtime"

case "${1:-}" in
--all) mapfile -t tests < <(cd "$cache/runtime-tools" && ls validation/*/*.t | sed 's,validation/\([^/]*\)/.*,\1,') ;;
"") tests=("${subset[@]}") ;;
*) tests=("$@") ;;
esac

cd "$cache/runtime-tools"
pass=0
fail=()
silent=()
for t in "${tests[@]}"; do
    out=$(RUNTIME="$bin/locker-runtime" timeout 120 unshare --mount --propagation private \
        "./validation/$t/$t.t" 2>&1) && rc=0 || rc=$?
    if [ "$rc" = 0 ] && ! grep -q "^not ok" <<<"$out"; then
        pass=$((pass + 1))
        if grep -q "^ok" <<<"$out"; then
            echo "ok   $t"
        else
            silent+=("$t")
            echo "ok?  $t"
        fi
    else
        fail+=("$t")
        echo "FAIL $t (exit $rc)"
        if [ -n "${VERBOSE:-}" ]; then sed 's/^/    /' <<<"$out" | head -40; fi
    fi
done
echo "runtime-tools: $pass of ${#tests[@]} passed (without an ok line: ${silent[*]:-none})"
[ ${#fail[@]} = 0 ] || { echo "failed: ${fail[*]}"; exit 1; }
