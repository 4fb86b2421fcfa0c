#!/usr/bin/env bash
# The main job on an embedded default: a sandbox "cloud" (tether-agent as an
# SSH proxy machine on loopback, with private services reachable only
# through it) and the bundled sample Java app launched through it.
set -euo pipefail
cd "$(dirname "$0")/.."
ws=${DEMO_WORKSPACE:-$(mktemp -d /tmp/tether-demo-XXXXXX)}
mkdir -p "$ws/.tether-sandbox/classes"
javac --release 11 -d "$ws/.tether-sandbox/classes" examples/sample-app/Sample.java

log="$ws/.tether-sandbox/agent.log"
bin/tether-agent sandbox --workspace "$ws" >"$log" 2>&1 &
agent=$!
trap 'kill "$agent" 2>/dev/null; wait "$agent" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	grep -q "listening on" "$log" && break
	kill -0 "$agent" 2>/dev/null || { cat "$log"; exit 1; }
	sleep 0.05
done
echo "== $(grep 'listening on' "$log")"
echo "== tether launch --workspace $ws sample"
bin/tether launch --workspace "$ws" sample --log-connections --log-calls --har "$ws/calls.har"
