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
# The static cross builds and the fuzz targets' build run in the background, at the lowest
# priority, from the start (logs: target/cross-ci.log, target/fuzz-build.log); the fuzzing
# itself and the cross builds' result come after the tests. Each step's wall time is listed at
# the end, also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
CROSS=${CROSS:-1}

# A step lasts until the next one starts; `summary` (on exit) lists them with their wall times.
step_rows=(); step_name=; step_t0=
row() { step_rows+=("$(printf '%-64.64s %6ds' "$1" "$2")"); }
step_end() {
  [ -n "$step_name" ] || return 0
  row "$step_name" $((SECONDS - step_t0))
  step_name=
}
step() { step_end; printf '\n==> %s\n' "$*"; step_name=$*; step_t0=$SECONDS; }

# Background jobs: `background NAME COMMAND...` runs COMMAND in a session of its own (setsid:
# one process group, so a failing suite stops all of it) with output in target/NAME.log.
# A new session is also a new scheduler autogroup (sched_autogroup_enabled=1 on this kernel),
# and CFS shares the CPU fairly between autogroups whatever the nice values inside them: at
# plain `nice 19` the cross builds took half of both cores from clippy and the builds.
# Lowering the autogroup's own priority (/proc/self/autogroup) makes a job take only the CPU
# the suite leaves idle (single-threaded links, the end-to-end tests waiting on containers).
# `finish NAME` waits for it, shows the log's tail on failure and records its start-to-end
# time for the summary.
declare -A bg_pid=()
background() {
  local name=$1; shift
  mkdir -p target
  rm -f "target/$name.times"
  setsid bash -c '
    echo 19 > /proc/self/autogroup 2>/dev/null || true
    t0=$(date +%s); status=0
    nice -n 19 "$@" || status=$?
    echo "$t0 $(date +%s)" > "target/$0.times"
    exit "$status"' "$name" "$@" > "target/$name.log" 2>&1 < /dev/null &
  bg_pid[$name]=$!
}
finish() {
  local name=$1 status=0 t0 t1
  wait "${bg_pid[$name]}" || status=$?
  unset "bg_pid[$name]"
  if read -r t0 t1 < "target/$name.times" 2>/dev/null; then
    row "(background) $name, start to end" $((t1 - t0))
  fi
  if [ "$status" != 0 ]; then
    tail -n 100 "target/$name.log"
    echo "$name failed (exit $status); full log: target/$name.log" >&2
    exit 1
  fi
}
summary() {
  local status=$? name
  for name in "${!bg_pid[@]}"; do kill -- -"${bg_pid[$name]}" 2>/dev/null || true; done
  step_end
  printf '\n==> step times (wall)%s\n' "$([ "$status" = 0 ] || echo ", failed with exit $status")"
  printf '%s\n' "${step_rows[@]}"
  printf '%-64s %6ds\n' total "$SECONDS"
}
trap summary EXIT

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

# These targets are built with `test = false` (no test harness to compile and link: each would
# link the hub or the agent for nothing), which is right only while they hold no tests.
harnessless=(hub/src/main.rs agent/src/main.rs bench/src tests/src)
if found=$(grep -rlE '#\[(cfg\(test\)|test|tokio::test)' "${harnessless[@]}"); then
  echo "tests in a target built with test = false (set test = true in its Cargo.toml): $found" >&2
  exit 1
fi

# The static cross builds (x86_64, aarch64, armv7 musl agents; docs/cross.md) are the longest
# single step, and the fuzz targets' release build the second; both start now in the
# background (see `background`) and are waited for after the tests. Their own target
# directories (target/cross-ci, fuzz/target) keep cargo's build locks apart.
if [ "$CROSS" != 0 ]; then
  step "static cross builds: started (background, target/cross-ci.log)"
  CARGO_TARGET_DIR="$PWD/target/cross-ci" background cross-ci bash cross/build.sh --profile cross-ci
fi
if [ "$FUZZ_SECONDS" != 0 ]; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
  fi
  # cargo-fuzz wants nightly for sanitizers; without one, stable with RUSTC_BOOTSTRAP and no
  # sanitizer still gives coverage-guided fuzzing (panics and hangs are what we look for).
  step "fuzz targets' build: started (background, target/fuzz-build.log)"
  RUSTC_BOOTSTRAP=1 background fuzz-build cargo fuzz build --sanitizer none
fi

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building binaries"
cargo build --workspace --bins --locked

# The test binaries are built (and linked) first, so the step times tell building from running.
step "cargo test: building the test binaries"
cargo test --workspace --locked --no-run

step "cargo test: running"
cargo test --workspace --locked

if [ "$FUZZ_SECONDS" != 0 ]; then
  step "fuzz targets' build: waiting for it"
  finish fuzz-build
  # Seeds: the golden CBOR vectors and the manifest corpora. The targets are fuzzed at the same
  # time: libFuzzer runs one process, so each has a core of its own for FUZZ_SECONDS (as many
  # executions as one after the other, in half the time).
  declare -A seeds=([envelope]="shared/tests/golden" [manifest]="tests/corpus/valid tests/corpus/invalid")
  fuzz_targets=(envelope manifest)
  step "fuzzing ${fuzz_targets[*]} for ${FUZZ_SECONDS}s, in parallel"
  fuzz_pids=()
  for target in "${fuzz_targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    # shellcheck disable=SC2086
    RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" "$corpus" ${seeds[$target]} -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      > "target/fuzz-$target.log" 2>&1 &
    fuzz_pids+=($!)
  done
  fuzz_failed=0
  for i in "${!fuzz_targets[@]}"; do
    target=${fuzz_targets[$i]}
    fuzz_status=0
    wait "${fuzz_pids[$i]}" || fuzz_status=$?
    printf '\n--- fuzz %s (exit %s; log: target/fuzz-%s.log)\n' "$target" "$fuzz_status" "$target"
    tail -n 12 "target/fuzz-$target.log"
    [ "$fuzz_status" = 0 ] || fuzz_failed=1
  done
  [ "$fuzz_failed" = 0 ] || { echo "fuzzing found a failure (inputs under fuzz/artifacts/)" >&2; exit 1; }
fi

# The cross builds' result: the agent builds and links statically for each target, the ARM
# binaries run under qemu-user, a real container runs with the x86_64 one.
if [ "$CROSS" != 0 ]; then
  step "static cross builds: waiting for the result"
  finish cross-ci
  sed -n '/==> summary/,$p' target/cross-ci.log
fi
