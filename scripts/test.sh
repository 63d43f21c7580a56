#!/usr/bin/env bash
# Runs Flotilla's whole test suite: formatting, lints, unit and property tests, golden vectors,
# end-to-end tests against the real binaries, a bounded fuzzing run of every fuzz target, and
# the static (musl) agent builds for x86_64, aarch64 and armv7 (cross/build.sh, docs/cross.md).
# Installs what it needs (Debian packages, cargo-fuzz, zig) by itself. Run as root on Debian 12.
#
#   bash scripts/test.sh            # everything
#   FUZZ_SECONDS=0 bash scripts/test.sh   # skip fuzzing (quick local runs)
#   CROSS=0 bash scripts/test.sh    # skip the static cross builds (quick local runs)
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
# systemd: systemd-analyze verify for the unit files.
for p in build-essential pkg-config libseccomp-dev busybox-static openssl docker-registry skopeo \
  mosquitto mosquitto-clients iproute2 systemd; do
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

# Last: the longest single step, and the rest of the suite reports first. Cheap profile
# (unoptimised, stripped): it checks that the agent builds and links statically for each
# target, runs the ARM binaries under qemu-user and a real container on x86_64.
if [ "$CROSS" != 0 ]; then
  step "static cross builds (cross/build.sh --profile cross-ci)"
  bash cross/build.sh --profile cross-ci
fi
