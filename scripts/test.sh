#!/usr/bin/env bash
# Runs Flotilla's whole test suite: formatting, lints, unit and property tests, golden vectors,
# end-to-end tests against the real binaries, a bounded fuzzing run of every fuzz target, and
# the static (musl) agent builds for x86_64, aarch64 and armv7 (cross/build.sh, docs/cross.md).
# Installs what it needs (Debian packages, cargo-fuzz, zig) by itself. Run as root on Debian 12.
#
#   bash scripts/test.sh            # everything
#   FUZZ_SECONDS=0 bash scripts/test.sh   # skip fuzzing (quick local runs)
#   CROSS=0 bash scripts/test.sh    # skip the static cross builds (quick local runs)
#
# The cross builds run in the background from the start (log: target/cross-ci.log).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
CROSS=${CROSS:-1}

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the build and tests need.
need_pkgs=()
# libseccomp-dev: libcontainer's seccomp support; busybox-static: the tests' container images;
# openssl: the TLS test's certificates; docker-registry and skopeo: a real registry to pull from;
# mosquitto and its clients: the external-broker tests; iproute2: network namespaces as hosts;
# iptables and faketime: the fault tests' half-open links and clock jumps;
# systemd: systemd-analyze verify for the unit files.
for p in build-essential pkg-config libseccomp-dev busybox-static openssl docker-registry skopeo \
  mosquitto mosquitto-clients iproute2 iptables faketime systemd; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  step "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

# The static cross builds (x86_64, aarch64, armv7 musl agents; docs/cross.md) are the longest
# single step. They start now, in the background at the lowest priority, so they take the CPU
# the rest of the suite leaves idle (links, build scripts, the end-to-end tests waiting on
# containers); their result is checked at the end. Their own target directory keeps cargo's
# build locks apart.
cross_pid=
if [ "$CROSS" != 0 ]; then
  mkdir -p target
  step "static cross builds started in the background (log: target/cross-ci.log)"
  # setsid: a process group of its own, so a failing suite stops all of it.
  CARGO_TARGET_DIR="$PWD/target/cross-ci" setsid nice -n 19 bash cross/build.sh --profile cross-ci \
    > target/cross-ci.log 2>&1 < /dev/null &
  cross_pid=$!
  trap 'if [ -n "$cross_pid" ]; then kill -- -"$cross_pid" 2>/dev/null || true; fi' EXIT
fi

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building binaries"
cargo build --workspace --bins --locked

if [ "$FUZZ_SECONDS" != 0 ]; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
  fi
  # cargo-fuzz wants nightly for sanitizers; without one, stable with RUSTC_BOOTSTRAP and no
  # sanitizer still gives coverage-guided fuzzing (panics and hangs are what we look for).
  # Seeds: the golden CBOR vectors and the manifest corpora.
  declare -A seeds=([envelope]="shared/tests/golden" [manifest]="tests/corpus/valid tests/corpus/invalid")
  for target in envelope manifest; do
    step "fuzzing $target for ${FUZZ_SECONDS}s"
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    # shellcheck disable=SC2086
    RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" "$corpus" ${seeds[$target]} -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 | tail -n 12
  done
fi

step "cargo test"
cargo test --workspace --locked

# The cross builds' result: the agent builds and links statically for each target, the ARM
# binaries run under qemu-user, a real container runs with the x86_64 one.
if [ -n "$cross_pid" ]; then
  step "static cross builds: waiting for the result"
  status=0
  wait "$cross_pid" || status=$?
  cross_pid=
  if [ "$status" != 0 ]; then
    tail -n 100 target/cross-ci.log
    echo "static cross builds failed (exit $status); full log: target/cross-ci.log" >&2
    exit 1
  fi
  sed -n '/==> summary/,$p' target/cross-ci.log
fi
