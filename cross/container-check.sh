#!/usr/bin/env bash
# Runs real containers with a (native, x86_64) static flotilla-agent and checks that the
# default seccomp profile is enforced: the container reports a seccomp filter (Seccomp: 2),
# and unshare(2) fails even with CAP_SYS_ADMIN added, which only the seccomp profile refuses;
# a privileged control pod (no profile) must be allowed the same call.
# Needs root and busybox-static. Called by cross/build.sh; usable alone:
#   bash cross/container-check.sh target/cross/x86_64-unknown-linux-musl/flotilla-agent
set -euo pipefail
agent_bin=$(realpath "$1")
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

work=$(mktemp -d /tmp/flotilla-cross-check.XXXXXX)
agent_pid=
cleanup() {
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -TERM "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

agent() { "$agent_bin" --state-dir "$work/state" "$@"; }
bash "$repo/scripts/busybox-image.sh" "$work/busybox.tar"
agent image import "$work/busybox.tar" >/dev/null

# Two pods: the default profile with CAP_SYS_ADMIN added (so only seccomp can refuse
# unshare(2)), and a privileged control pod (no profile) that must be allowed the same call.
pods=("flotilla-cross-seccomp-$$" "flotilla-cross-privileged-$$")
sec=("{capabilities: {add: [SYS_ADMIN]}}" "{privileged: true}")
mkdir -p "$work/manifests"
for i in 0 1; do
  cat > "$work/manifests/${pods[$i]}.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: ${pods[$i]}}
spec:
  restartPolicy: Never
  containers:
    - name: c
      image: flotilla.local/busybox:demo
      imagePullPolicy: IfNotPresent
      command: [sh, -c, 'grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status; busybox unshare -u true && echo UNSHARED || echo DENIED']
      securityContext: ${sec[$i]}
EOF
done

# The binary itself in the background, not the `agent` function: $! must be the agent's pid
# (a backgrounded function is a subshell, and TERM to it would leave the agent running).
"$agent_bin" --state-dir "$work/state" run --manifests "$work/manifests" --run-dir "$work/run" \
  --node-name cross-check 2> "$work/agent.log" &
agent_pid=$!
logs=("" "")
for _ in $(seq 300); do
  for i in 0 1; do logs[i]=$(agent logs "${pods[$i]}" 2>/dev/null || true); done
  grep -Eq 'DENIED|UNSHARED' <<< "${logs[0]}" && grep -Eq 'DENIED|UNSHARED' <<< "${logs[1]}" && break
  kill -0 "$agent_pid" 2>/dev/null || break
  sleep 0.2
done
for i in 0 1; do printf -- '--- %s\n%s\n' "${pods[$i]}" "${logs[$i]}"; done

# Stop the pods the way a user would (remove their manifests), then the agent.
rm -f "$work"/manifests/*.yaml
for _ in $(seq 150); do
  agent ps 2>/dev/null | grep -q flotilla-cross- || break
  sleep 0.2
done
kill -TERM "$agent_pid" 2>/dev/null || true
wait "$agent_pid" 2>/dev/null || true
agent_pid=

if grep -q $'Seccomp:\t2' <<< "${logs[0]}" && grep -q DENIED <<< "${logs[0]}" \
  && ! grep -q UNSHARED <<< "${logs[0]}" \
  && grep -q $'Seccomp:\t0' <<< "${logs[1]}" && grep -q UNSHARED <<< "${logs[1]}"; then
  echo "seccomp enforced: the default pod has a filter (Seccomp: 2) and is refused unshare(2)" \
    "despite CAP_SYS_ADMIN; the privileged control pod (Seccomp: 0) is allowed it"
else
  echo "seccomp NOT verified; agent log:" >&2
  tail -n 40 "$work/agent.log" >&2
  exit 1
fi
