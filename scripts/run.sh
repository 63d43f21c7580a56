#!/usr/bin/env bash
# Runs Flotilla's main job as far as it is built today (see the status table in README.md):
#  1. the hub with its embedded defaults in a temporary data directory: apply
#     examples/hello.yaml and show what it stored;
#  2. the agent on this machine: import a busybox image built from Debian's busybox-static,
#     run the static pod examples/static/hello-pod.yaml as a real container through
#     libcontainer, fetch its page, show `ps` and `logs`, then stop it.
# Once the MQTT link lands the two halves join: the hub's manifest reaches the agent.
# Needs root (containers).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for p in build-essential pkg-config libseccomp-dev busybox-static curl; do
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
agent_pid=
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null
  [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$data"
}
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

echo
echo "==> the agent: a real container from a static pod manifest"
state=$data/agent
manifests=$data/manifests
mkdir -p "$manifests"
bash scripts/busybox-image.sh "$data/busybox.tar"
agent() { echo; echo "\$ flotilla-agent $*"; "$bin/flotilla-agent" --state-dir "$state" "$@"; }
agent image import "$data/busybox.tar"
agent image ls
cp examples/static/hello-pod.yaml "$manifests/"
"$bin/flotilla-agent" --state-dir "$state" run --manifests "$manifests" --run-dir "$data/run" 2> "$data/agent.log" &
agent_pid=$!
for _ in $(seq 150); do
  "$bin/flotilla-agent" --state-dir "$state" ps 2>/dev/null | grep -q "Running" && break
  sleep 0.2
done
agent ps
echo; echo "\$ curl http://127.0.0.1:18080/"
curl -fsS --retry 10 --retry-connrefused --retry-delay 1 http://127.0.0.1:18080/
agent logs hello
echo
echo "==> removing the manifest stops the pod"
rm "$manifests/hello-pod.yaml"
agent ps
# httpd is PID 1 in its namespace and ignores SIGTERM, so the agent SIGKILLs it after the pod's
# 5 s grace period, as the kubelet would.
for _ in $(seq 100); do
  "$bin/flotilla-agent" --state-dir "$state" ps 2>/dev/null | grep -q hello || break
  sleep 0.2
done
agent ps
