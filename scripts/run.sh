#!/usr/bin/env bash
# Runs Flotilla's main job end to end on this machine (see the status table in README.md):
#  1. the hub with its embedded defaults (store, API, embedded MQTT broker) in a temporary data
#     directory: apply examples/hello.yaml and show what it stored;
#  2. a device: node credentials from the hub, the agent joined over MQTT, a busybox image
#     built from Debian's busybox-static imported for air-gapped use;
#  3. examples/node/hello-pod.yaml applied to the hub runs on the device as a real container
#     through libcontainer; its page is fetched, its status comes back to the hub; deleting it
#     on the hub stops it on the device.
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
"$bin/flotilla-hub" serve --listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 2> "$data/hub.log" &
hub_pid=$!
for _ in $(seq 100); do
  [ -f "$FLOTILLA_DATA_DIR/client.json" ] && "$bin/flotilla-hub" get ns >/dev/null 2>&1 && break
  sleep 0.1
done

run() { echo; echo "\$ flotilla-hub $*"; "$bin/flotilla-hub" "$@"; }
run validate -f examples/hello.yaml examples/node/
run apply -f examples/hello.yaml
run apply -f examples/hello.yaml
run get deployments
run get configmaps
run describe deployment hello
run status
# The example's pod template mounts a ConfigMap, which the agent serves once pod volumes land;
# until then it stays a stored example.
run delete -f examples/hello.yaml

echo
echo "==> a device: the agent, joined to the hub over MQTT (the hub's embedded broker)"
state=$data/agent
bash scripts/busybox-image.sh "$data/busybox.tar"
agent() { echo; echo "\$ flotilla-agent $*"; "$bin/flotilla-agent" --state-dir "$state" "$@"; }
agent image import "$data/busybox.tar"
run node add demo-node -o "$data/demo-node.json"
"$bin/flotilla-agent" --state-dir "$state" run --config "$data/demo-node.json" --run-dir "$data/run" 2> "$data/agent.log" &
agent_pid=$!
for _ in $(seq 150); do
  "$bin/flotilla-hub" get nodes 2>/dev/null | grep -q "demo-node *Ready" && break
  sleep 0.2
done
run get nodes

echo
echo "==> a pod and a Deployment applied to the hub run on the device as real containers"
run apply -f examples/node/hello-pod.yaml -f examples/node/ticker-deployment.yaml
for _ in $(seq 150); do
  [ "$("$bin/flotilla-hub" get pods 2>/dev/null | grep -c Running)" = 3 ] && break
  sleep 0.2
done
run get pods -o wide
run get deployments
ticker=$("$bin/flotilla-hub" get pods -o json | grep -o '"name": *"ticker-[^"]*"' | head -1 | sed 's/.*"\(ticker-[^"]*\)"/\1/')
sleep 3
run logs "$ticker" --tail 3
echo; echo "\$ curl http://127.0.0.1:18080/"
curl -fsS --retry 10 --retry-connrefused --retry-delay 1 http://127.0.0.1:18080/
agent ps
agent logs hello
run describe pod hello

echo
echo "==> deleting on the hub stops the containers on the device"
run delete pod hello
run delete deployment ticker
# httpd is PID 1 in its namespace and ignores SIGTERM, so the agent SIGKILLs it after the pod's
# 5 s grace period, as the kubelet would.
for _ in $(seq 100); do
  "$bin/flotilla-agent" --state-dir "$state" ps 2>/dev/null | grep -qE "hello|ticker" || break
  sleep 0.2
done
agent ps
