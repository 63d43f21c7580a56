#!/usr/bin/env bash
# Runs Flotilla's main job as far as it is built today (see the status table in README.md):
# builds the binaries and checks the example manifests with the same rules the hub applies.
# As the hub, the agent and the MQTT link land, this script grows into the whole flow: hub with
# its embedded broker, an agent, and a real container running from examples/hello.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bins
bin=target/release

echo "==> flotilla-hub validate -f examples/"
"$bin/flotilla-hub" validate -f examples/
