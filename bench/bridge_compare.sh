#!/usr/bin/env bash
# A bridge to another MQTT broker: hubflow's `type: mqtt` endpoint (hub ->
# rule -> endpoint) against Mosquitto's own bridge, both forwarding
# bench/# at QoS 1 to one remote mosquitto that this script starts, as the
# subscribers see it there (hubflow-bench --subscribe-port). Prints
# delivered msg/s (unpaced run) and p50/p99 latency (paced run), medians of
# REPEAT runs, alternating which bridge goes first. What a publisher's
# PUBACK means differs: Mosquitto's bridge answers once it has the message,
# hubflow once the remote broker answered its PUBACK.
#
#   bench/bridge_compare.sh [BIN_DIR]     # BIN_DIR defaults to build/bin
#
# Environment knobs: MESSAGES=20000 (per unpaced run), RATE=2000 (msg/s of
# the paced runs, 5 s each), REPEAT=3.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(cd "${1:-$repo/build/bin}" && pwd)
messages=${MESSAGES:-20000}
rate=${RATE:-2000}
repeat=${REPEAT:-3}
python=/usr/bin/python3
script=bridge_compare.sh
for tool in "$bin/hubflow-bench" "$bin/hubflow" "$python"; do
  [[ -x $tool ]] || { echo "$script: $tool not built" >&2; exit 2; }
done
command -v mosquitto >/dev/null || { echo "$script: mosquitto not installed" >&2; exit 2; }

work=$(mktemp -d /tmp/hubflow-bridge.XXXXXX)
results=$work/results.jsonl
source "$repo/bench/lib.sh"

remote_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' \
  "$remote_port" >"$work/remote.conf"
mosquitto -c "$work/remote.conf" >"$work/remote.log" 2>&1 &
started+=($!)
wait_port "$remote_port" $! "$work/remote.log"

start_bridge() { # kind port: starts it, sets $bridge_pid
  local kind=$1 port=$2
  if [[ $kind == mosquitto ]]; then
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$port" >"$work/$kind.conf"
    printf 'connection remote\naddress 127.0.0.1:%s\ntopic bench/# out 1\n' "$remote_port" >>"$work/$kind.conf"
    mosquitto -c "$work/$kind.conf" >"$work/$kind.log" 2>&1 &
  else
    cat >"$work/$kind.yaml" <<YAML
hub:
  listen: [tcp://127.0.0.1:$port]
endpoints:
  - name: remote
    type: mqtt
    address: tcp://127.0.0.1:$remote_port
    max_inflight: 1000
rules:
  - name: bridge
    from: {topic: 'bench/#', qos: 1}
    to: {endpoint: remote, topic: '\${topic}', qos: 1}
YAML
    "$bin/hubflow" --config "$work/$kind.yaml" --stats-port "$(free_port)" >"$work/$kind.log" 2>&1 &
  fi
  bridge_pid=$!
  started+=($bridge_pid)
  wait_port "$port" "$bridge_pid" "$work/$kind.log"
  sleep 1 # the bridge connects to the remote
}

for ((run = 0; run < repeat; run++)); do
  order=(mosquitto hubflow)
  ((run % 2)) && order=(hubflow mosquitto)
  for kind in "${order[@]}"; do
    port=$(free_port)
    start_bridge "$kind" "$port"
    for mode in unpaced paced; do
      args=(-p "$port" --subscribe-port "$remote_port" -q 1 -t bench/t --json)
      if [[ $mode == unpaced ]]; then
        args+=(-c "$messages")
      else
        args+=(-c $((rate * 5)) -r "$rate")
      fi
      "$bin/hubflow-bench" "${args[@]}" | record_result "$kind" bridge "$mode" 0
    done
    kill "$bridge_pid"; wait "$bridge_pid" 2>/dev/null || true
  done
done

render_report "$results" <<'PY'
import json, sys
from bench_report import median, fmt, ratio
rows = [json.loads(l) for l in open(sys.argv[1])]
def m(kind, mode, key):
    def get(r):
        return r["latency_us"].get(key) if key in ("p50", "p99") else r.get(key)
    return median([get(r) for r in rows if r["broker"] == kind and r["mode"] == mode])
print("| QoS 1, 1 -> 1 | msg/s (unpaced) | p50 us (paced) | p99 us (paced) | lost |")
print("|---|---|---|---|---|")
for kind in ("mosquitto", "hubflow"):
    print("| %s | %s | %s | %s | %s |" % (
        kind, fmt(m(kind, "unpaced", "delivered_per_s"), ".0f"),
        fmt(m(kind, "paced", "p50"), ".0f"), fmt(m(kind, "paced", "p99"), ".0f"),
        sum(r.get("lost", 0) or 0 for r in rows if r["broker"] == kind)))
print("hubflow/mosquitto msg/s: %s" % ratio(m("hubflow", "unpaced", "delivered_per_s"),
                                          m("mosquitto", "unpaced", "delivered_per_s")))
PY
