#!/usr/bin/env bash
# Runs Flotilla's main job as far as it is built today (see the status table in README.md):
# builds the release binaries, starts the hub with its embedded defaults in a temporary data
# directory, applies examples/hello.yaml and shows what the hub stored. As the agent and the
# MQTT link land, this grows into the whole flow: an agent and a real container running from
# the manifest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for p in build-essential pkg-config libseccomp-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

cargo build --release --locked --bins
bin=$PWD/target/release

data=$(mktemp -d /tmp/flotilla-run.XXXXXX)
export FLOTILLA_DATA_DIR=$data/hub
hub_pid=
cleanup() { [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT

echo "==> flotilla-hub serve (data in $FLOTILLA_DATA_DIR)"
"$bin/flotilla-hub" serve --listen 127.0.0.1:0 2> "$data/hub.log" &
hub_pid=$!
for _ in $(seq 100); do
  [ -f "$FLOTILLA_DATA_DIR/client.json" ] && "$bin/flotilla-hub" get ns >/dev/null 2>&1 && break
  sleep 0.1
done

run() { echo; echo "\$ flotilla-hub $*"; "$bin/flotilla-hub" "$@"; }
run validate -f examples/
run apply -f examples/hello.yaml
run apply -f examples/hello.yaml
run get deployments
run get configmaps
run describe deployment hello
run status
