#!/usr/bin/env bash
# MQTT over WebSocket, hubflow next to plain TCP and next to Mosquitto, in one
# run (issue 15). It starts a hubflow listening on tcp://127.0.0.1:P1 and
# ws://127.0.0.1:P2/mqtt, a Mosquitto on TCP, and tries a second Mosquitto
# with a websockets listener (Debian 12's mosquitto 2.0.11 is built without
# websockets and exits: that row then says n/a and why; nothing is faked).
# All on free loopback ports; it kills what it started on exit (also Ctrl-C).
#
# The load client is bench/ws_load.py (Eclipse Paho, Debian's
# python3-paho-mqtt; hubflow-bench's libmosquitto speaks no WebSocket): one
# publisher and N subscribers, each its own process. Scenarios: 1->1 QoS 0,
# 1->1 QoS 1, fan-out 1->4 QoS 0, 64-byte payloads, unpaced. For each, the
# targets hubflow-ws, hubflow-tcp, mosquitto-tcp (and mosquitto-ws if it
# started) take turns, who goes first rotating, REPEAT rounds; the table
# shows medians of delivered msg/s, latency p50/p99, broker CPU time per
# delivered message (utime+stime of the broker process, all threads, from
# /proc/<pid>/stat before and after the run) and the client's CPU per
# message, with the ratios hubflow-ws/hubflow-tcp and
# hubflow-ws/mosquitto-tcp.
#
# The Python client is the bottleneck: msg/s is what paho manages, not what
# the brokers can do, and unpaced latency is the depth of the queues in
# front of the slow subscriber. Broker CPU per message is the figure to
# compare. It builds nothing: build hubflow first, then
#
#   bench/ws_compare.sh
#
# Environment knobs:
#   HUBFLOW=path   the hubflow binary (default: build/bin/hubflow of this repo)
#   HUBFLOWCTL=path  for the listener counters printed at the end (default:
#                  hubflowctl next to HUBFLOW; skipped when missing)
#   REPEAT=3       rounds of every scenario per target; the table shows medians
#   SCALE=1        multiply every message count (default: a few seconds per
#                  run, the whole script 1.5-2 minutes on 2 cores; 0.1 for
#                  a quick check of the script)
#   RATE=0         msg/s of the publisher; 0 (default): unpaced. A rate every
#                  target sustains (e.g. 5000) gives every broker the same
#                  load, for latencies and CPU per message at equal load
#                  (RATE=5000 SCALE=0.4: about 2.5 minutes)
#   RESULTS=f.jsonl  also keep every raw ws_load.py result there
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
hubflow=${HUBFLOW:-$repo/build/bin/hubflow}
scale=${SCALE:-1}
repeat=${REPEAT:-3}
rate=${RATE:-0}
queue_bound=1000000 # QoS 1/2 messages queued per subscriber, both brokers
python=/usr/bin/python3 # Debian's, the one with python3-paho-mqtt
load=$repo/bench/ws_load.py

[[ -x $hubflow ]] || { echo "ws_compare.sh: $hubflow not built (or set HUBFLOW=)" >&2; exit 2; }
[[ -x $python ]] || { echo "ws_compare.sh: $python not found" >&2; exit 2; }
"$python" -c 'import paho.mqtt.client' 2>/dev/null ||
  { echo "ws_compare.sh: python3-paho-mqtt missing (apt-get install python3-paho-mqtt)" >&2; exit 2; }
command -v mosquitto >/dev/null ||
  { echo "ws_compare.sh: mosquitto not installed (apt-get install mosquitto)" >&2; exit 2; }

work=$(mktemp -d /tmp/hubflow-ws-compare.XXXXXX)
results=$work/results.jsonl
: >"$results"
script=ws_compare.sh
source "$(dirname "$0")/lib.sh"
declare -A target_pid=() target_port=() target_log=() target_args=() target_na=()

start_mosquitto() { # name port protocol -> pid in $broker_pid, or false
  local name=$1 port=$2 protocol=$3
  # set_tcp_nodelay and max_queued_messages as in compare.sh: Nagle off
  # (hubflow sets TCP_NODELAY) and the same QoS 1 queue bound as hubflow.
  cat >"$work/$name.conf" <<EOF
listener $port 127.0.0.1
protocol $protocol
allow_anonymous true
set_tcp_nodelay true
max_queued_messages $queue_bound
persistence false
log_type error
log_type warning
log_type notice
$([[ $protocol == websockets ]] && echo 'log_type information')
EOF
  mosquitto -c "$work/$name.conf" >"$work/$name.log" 2>&1 &
  broker_pid=$!
  started+=("$broker_pid")
  wait_port "$port" "$broker_pid" "$work/$name.log"
}

start_hubflow() { # tcp-port ws-port -> pid in $broker_pid
  local tcp_port=$1 ws_port=$2 stats_port
  stats_port=$(free_port)
  cat >"$work/hubflow.yaml" <<EOF
hub:
  listen:
    - tcp://127.0.0.1:$tcp_port
    - ws://127.0.0.1:$ws_port/mqtt
  anonymous: loopback
  message:
    queued: $queue_bound
stats:
  host: 127.0.0.1
  port: $stats_port
  token_file: $work/stats.token
logger:
  level: warn
EOF
  "$hubflow" --config "$work/hubflow.yaml" >"$work/hubflow.log" 2>&1 &
  broker_pid=$!
  started+=("$broker_pid")
  wait_port "$tcp_port" "$broker_pid" "$work/hubflow.log" &&
    wait_port "$ws_port" "$broker_pid" "$work/hubflow.log"
}

# ---- the brokers

tcp_port=$(free_port) ws_port=$(free_port)
if start_hubflow "$tcp_port" "$ws_port"; then
  target_pid[hubflow-ws]=$broker_pid target_pid[hubflow-tcp]=$broker_pid
else
  echo "ws_compare.sh: hubflow did not start; its log:" >&2
  tail -20 "$work/hubflow.log" >&2
  target_na[hubflow-ws]="hubflow did not start" target_na[hubflow-tcp]="hubflow did not start"
fi
target_port[hubflow-ws]=$ws_port target_args[hubflow-ws]="--transport websockets --path /mqtt"
target_port[hubflow-tcp]=$tcp_port target_args[hubflow-tcp]="--transport tcp"
target_log[hubflow-ws]=$work/hubflow.log target_log[hubflow-tcp]=$work/hubflow.log

port=$(free_port)
if start_mosquitto mosquitto-tcp "$port" mqtt; then
  target_pid[mosquitto-tcp]=$broker_pid
else
  echo "ws_compare.sh: mosquitto (TCP) did not start; its log:" >&2
  tail -20 "$work/mosquitto-tcp.log" >&2
  target_na[mosquitto-tcp]="mosquitto did not start"
fi
target_port[mosquitto-tcp]=$port target_args[mosquitto-tcp]="--transport tcp"
target_log[mosquitto-tcp]=$work/mosquitto-tcp.log

# Mosquitto's websockets listener in a broker of its own: a build without
# libwebsockets refuses it and exits, which must not take the TCP one along.
port=$(free_port)
if start_mosquitto mosquitto-ws "$port" websockets; then
  target_pid[mosquitto-ws]=$broker_pid
else
  # Such a build logs "Opening websockets listen socket" and then "Unable
  # to start any listening sockets"; its binary links no libwebsockets.
  if grep -q 'Unable to start any listening sockets' "$work/mosquitto-ws.log" &&
     ! ldd "$(command -v mosquitto)" 2>/dev/null | grep -q libwebsockets; then
    target_na[mosquitto-ws]="n/a: Debian's mosquitto is built without websockets"
  else
    target_na[mosquitto-ws]="n/a: mosquitto's websockets listener did not start"
  fi
  echo "ws_compare.sh: mosquitto-ws: ${target_na[mosquitto-ws]}; its log:" >&2
  sed 's/^/    /' "$work/mosquitto-ws.log" >&2
fi
target_port[mosquitto-ws]=$port target_args[mosquitto-ws]="--transport websockets --path /mqtt"
target_log[mosquitto-ws]=$work/mosquitto-ws.log

targets=()
for t in hubflow-ws hubflow-tcp mosquitto-tcp mosquitto-ws; do
  [[ -z ${target_na[$t]:-} ]] && targets+=("$t")
done

# run_load target scenario args...: one ws_load.py run, its JSON result
# extended with target/scenario and the broker's CPU ticks during the run.
run_load() {
  local target=$1 scenario=$2
  shift 2
  local pid=${target_pid[$target]} port=${target_port[$target]}
  local before after out='' status=0
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "ws_compare.sh: $target (pid $pid) has exited; log tail:" >&2
    tail -20 "${target_log[$target]}" >&2
    target_na[$target]="n/a: the broker exited during the run"
    return
  fi
  read -r -a transport_args <<<"${target_args[$target]}"
  before=$(cpu_ticks "$pid")
  out=$("$python" "$load" --port "$port" "${transport_args[@]}" --rate "$rate" "$@") || status=$?
  after=$(cpu_ticks "$pid" 2>/dev/null || echo "$before")
  if [[ $status -ge 2 || -z $out ]]; then
    echo "ws_compare.sh: $scenario against $target failed to run (status $status)" >&2
    out='{"error": true}'
  fi
  printf '%s\n' "$out" | "$python" -c '
import json, sys
r = json.loads(sys.stdin.read())
r.update(target=sys.argv[1], scenario=sys.argv[2], broker_cpu_ticks=int(sys.argv[3]))
print(json.dumps(r))' "$target" "$scenario" "$((after - before))" >>"$results"
  printf '  %-20s %-14s' "$scenario" "$target" >&2
  printf '%s\n' "$out" | "$python" -c '
import json, sys
r = json.loads(sys.stdin.read())
if r.get("error"): print("  failed"); sys.exit()
print("  %7.0f msg/s  p50 %9.1f us  p99 %9.1f us  lost %d%s" % (r["delivered_per_s"],
      r["latency_us"]["p50"] or 0, r["latency_us"]["p99"] or 0, r["lost"],
      "  lost connections: %s" % r["lost_connections"] if r["lost_connections"] else ""))' >&2
}

# ---- the scenarios: name | messages the publisher sends | arguments
n() { awk -v count="$1" -v scale="$scale" 'BEGIN { printf "%d", count * scale < 1 ? 1 : count * scale }'; }
scenarios=(
  "qos0 1->1 64B|$(n 100000)|--qos 0 --subscribers 1"
  "qos1 1->1 64B|$(n 50000)|--qos 1 --subscribers 1"
  "fan-out 1->4 qos0|$(n 30000)|--qos 0 --subscribers 4"
)

{
  echo "MQTT over WebSocket: hubflow ws vs tcp vs mosquitto — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,"
  echo "  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg),"
  echo "  $(mosquitto -h 2>/dev/null | head -1), $("$hubflow" --version 2>/dev/null | head -1),"
  echo "  client: bench/ws_load.py, paho-mqtt $("$python" -c 'import paho.mqtt; print(paho.mqtt.__version__)'), MQTT 3.1.1;"
  echo "  $([[ $rate == 0 ]] && echo unpaced || echo "paced at $rate msg/s"); scale $scale; $repeat rounds (medians shown)"
} >&2

index=0
for ((round = 0; round < repeat; round++)); do
  for entry in "${scenarios[@]}"; do
    IFS='|' read -r name messages args <<<"$entry"
    read -r -a split_args <<<"$args"
    count=${#targets[@]} shift_by=$(((index + round) % ${#targets[@]}))
    for ((i = 0; i < count; i++)); do
      who=${targets[$(((i + shift_by) % count))]}
      [[ -n ${target_na[$who]:-} ]] && continue
      run_load "$who" "$name" --messages "$messages" "${split_args[@]}"
    done
    index=$((index + 1))
  done
done

# Anything the hub's listeners counted as refused or broken (a healthy run
# shows zeros); printed, not judged.
hubflowctl=${HUBFLOWCTL:-$(dirname "$hubflow")/hubflowctl}
if [[ -z ${target_na[hubflow-ws]:-} && -x $hubflowctl ]]; then
  stats_port=$(awk '/^stats:/ { s = 1 } s && /port:/ { print $2; exit }' "$work/hubflow.yaml")
  sleep 1 # counters are reported every stats.interval (500 ms by default)
  echo "hubflow's listener counters (hubflowctl stats):" >&2
  "$hubflowctl" stats --stats-port "$stats_port" --token-file "$work/stats.token" 2>&1 |
    grep -E -i 'listener|websocket|handshake|protocol_errors|dropped' | sed 's/^/    /' >&2 || true
fi

# ---- the table
na_file=$work/na.json
{
  printf '{'
  sep=''
  for t in "${!target_na[@]}"; do
    printf '%s"%s": "%s"' "$sep" "$t" "${target_na[$t]//\"/\\\"}"
    sep=', '
  done
  printf '}\n'
} >"$na_file"
render_report "$results" "$na_file" "$(getconf CLK_TCK)" "$rate" <<'EOF'
import json, sys
from bench_report import fmt, median, ratio
path, na_path, ticks_per_s, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
rows = [json.loads(line) for line in open(path) if line.strip()]
na = json.load(open(na_path))
targets = ["hubflow-ws", "hubflow-tcp", "mosquitto-tcp", "mosquitto-ws"]
def per_msg_us(seconds, r):
    return seconds * 1e6 / r["delivered"] if r["delivered"] else None
scenarios = []
for r in rows:
    if r["scenario"] not in scenarios:
        scenarios.append(r["scenario"])
head = "%-20s %-26s %9s %10s %10s %10s %10s %6s"
print()
print(head % ("scenario", "target", "msg/s", "p50 ms", "p99 ms", "broker", "client", "lost"))
print(head % ("", "", "", "", "", "us/msg", "us/msg", ""))
print("-" * 108)
for s in scenarios:
    values = {}
    for t in targets:
        runs = [r for r in rows if r["scenario"] == s and r["target"] == t and not r.get("error")]
        if not runs:
            reason = na.get(t, "n/a: no successful run")
            print("%-20s %-26s %s" % (s, t, reason if reason.startswith("n/a") else "n/a: " + reason))
            values[t] = (None,) * 5
            continue
        v = values[t] = (
            median(r["delivered_per_s"] for r in runs),
            median(r["latency_us"]["p50"] / 1000 if r["latency_us"]["p50"] is not None else None for r in runs),
            median(r["latency_us"]["p99"] / 1000 if r["latency_us"]["p99"] is not None else None for r in runs),
            median(per_msg_us(r["broker_cpu_ticks"] / ticks_per_s, r) for r in runs),
            median(per_msg_us(r["client_cpu_s"], r) for r in runs))
        print(head % (s, t, fmt(v[0], ".0f"), fmt(v[1], ".2f"), fmt(v[2], ".2f"),
                      fmt(v[3], ".2f"), fmt(v[4], ".1f"), sum(r["lost"] for r in runs)))
    pairs = [("hubflow-ws", "hubflow-tcp"), ("hubflow-ws", "mosquitto-tcp")]
    if values["mosquitto-ws"][0] is not None:  # a mosquitto built with websockets
        pairs.append(("hubflow-ws", "mosquitto-ws"))
    for a, b in pairs:
        x, y = values[a], values[b]
        print("%-20s %-26s %9s %10s %10s %10s" % ("", a + "/" + b, ratio(x[0], y[0]),
              ratio(x[1], y[1]), ratio(x[2], y[2]), ratio(x[3], y[3])))
print()
print("msg/s: delivered messages per second at the subscribers (all of them), first")
print("publish to last delivery; p50/p99: end-to-end latency; broker us/msg: the")
print("broker's CPU time (user+system, all threads, /proc/<pid>/stat) during the run")
print("per delivered message; client us/msg: the same for ws_load.py's processes.")
print("Medians of the rounds; lost is the sum over all rounds. hubflow-ws and")
print("hubflow-tcp are one hubflow process with two listeners.")
if rate > 0:
    print("Paced at %g msg/s per publisher: every target gets the same load, so broker" % rate)
    print("us/msg and the latencies compare like for like (at this rate the broker wakes")
    print("for nearly every message: us/msg is mostly per-wakeup cost, not per-byte).")
else:
    print("The client (Python paho) is the bottleneck: its CPU per message is many times")
    print("the broker's, so msg/s is the client's limit and unpaced latency is queueing")
    print("in front of the slower subscriber. Compare the broker us/msg column; it")
    print("also depends on the rate (a slower client means less batching per wakeup).")
failed = sum(1 for r in rows if r.get("error"))
if failed:
    print("%d runs failed (see the messages before the table)." % failed)
    sys.exit(1)
EOF
