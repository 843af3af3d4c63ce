#!/usr/bin/env bash
# hubflow vs Mosquitto, side by side in one run: the same hubflow-bench
# scenarios against a mosquitto and a hubflow this script starts on free
# loopback ports, alternating which broker goes first. Prints delivered
# msg/s (unpaced run), p50/p99 latency (paced run), broker CPU time per
# delivered message (from /proc/<pid>/stat) and the ratios hubflow/mosquitto.
# It builds nothing: build first (cmake --build build), then
#
#   bench/compare.sh [BIN_DIR]         # BIN_DIR defaults to build/bin
#
# Environment knobs:
#   SCALE=2        multiply every message count (default 1: a few seconds
#                  each; 0.1 for a quick check of the script)
#   RATE=5000      msg/s per publisher for the paced latency runs
#   REPEAT=3       runs of every scenario per broker; the table shows medians
#   PLUGIN_DIR=..  where sayhi.so is (default BIN_DIR/../plugins)
#   RESULTS=f.jsonl  also keep every raw hubflow-bench result there
#   STANDIN=mosquitto  run a second mosquitto in hubflow's place: tests this
#                  script itself when hubflow cannot serve yet (every ratio
#                  is then mosquitto/mosquitto, and the table says so)
#   TLS=1          both brokers listen with TLS only, on the same certificates
#                  (an EC P-256 test CA made here with openssl); scenarios:
#                  1->1 QoS 0 and 1, fan-out 1->4, and handshakes (new TLS
#                  connections one after another: connections/s, time to
#                  CONNACK)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(cd "${1:-$repo/build/bin}" && pwd)
plugin_dir=${PLUGIN_DIR:-$bin/../plugins}
scale=${SCALE:-1}
rate=${RATE:-5000}
repeat=${REPEAT:-3}
queue_bound=1000000 # QoS 1/2 messages queued per subscriber, both brokers
standin=${STANDIN:-}
python=/usr/bin/python3 # Debian's, not whatever python3 is first on PATH
bench=$bin/hubflow-bench

for tool in "$bench" "$python"; do
  [[ -x $tool ]] || { echo "compare.sh: $tool not found or not executable" >&2; exit 2; }
done
command -v mosquitto >/dev/null || { echo "compare.sh: mosquitto not installed (apt-get install mosquitto)" >&2; exit 2; }
if [[ -z $standin ]]; then
  [[ -x $bin/hubflow ]] || { echo "compare.sh: $bin/hubflow not built" >&2; exit 2; }
  [[ -f $plugin_dir/sayhi.so ]] || { echo "compare.sh: $plugin_dir/sayhi.so not built" >&2; exit 2; }
fi

work=$(mktemp -d /tmp/hubflow-compare.XXXXXX)
results=$work/results.jsonl
tls=${TLS:-0}
bench_tls=() # hubflow-bench's arguments for TLS
mosquitto_tls=''
hubflow_tls=''
if [[ $tls == 1 ]]; then
  key_args=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${key_args[@]}" -days 2 -subj '/CN=compare CA' \
    -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
  openssl req "${key_args[@]}" -subj '/CN=localhost' \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
  echo 'subjectAltName=DNS:localhost,IP:127.0.0.1' >"$work/server.ext"
  openssl x509 -req -days 2 -in "$work/server.csr" -CA "$work/ca.crt" \
    -CAkey "$work/ca.key" -CAcreateserial -extfile "$work/server.ext" \
    -out "$work/server.crt" 2>/dev/null
  # Mosquitto run as root reads its files as user mosquitto: a throwaway
  # test key may be readable by all.
  chmod a+rx "$work" && chmod a+r "$work"/ca.crt "$work"/server.*
  bench_tls=(--cafile "$work/ca.crt")
  mosquitto_tls="cafile $work/ca.crt
certfile $work/server.crt
keyfile $work/server.key"
  hubflow_tls="  certificate: {cert: $work/server.crt, key: $work/server.key}"
fi
script=compare.sh
source "$(dirname "$0")/lib.sh"
declare -A broker_down=() # label -> 1 once it stopped serving

start_mosquitto() { # name port -> pid in $broker_pid
  local name=$1 port=$2
  # set_tcp_nodelay: Mosquitto's default leaves Nagle on, which adds tens of
  # ms to paced latencies; hubflow sets TCP_NODELAY, so both get it.
  # max_queued_messages: both brokers drop QoS 1/2 messages for a
  # subscriber that is more than 1000 (their default) behind, which unpaced
  # runs turn into "lost"; both get the same larger bound instead.
  cat >"$work/$name.conf" <<EOF
listener $port 127.0.0.1
$mosquitto_tls
allow_anonymous true
set_tcp_nodelay true
max_queued_messages $queue_bound
persistence false
log_type error
log_type warning
EOF
  mosquitto -c "$work/$name.conf" >"$work/$name.log" 2>&1 &
  broker_pid=$!
  started+=("$broker_pid")
  wait_port "$port" "$broker_pid" "$work/$name.log"
}

start_hubflow() { # port -> pid in $broker_pid
  local port=$1 stats_port
  stats_port=$(free_port)
  # The rule serves only the rule scenario (topic t); the other scenarios
  # publish on hubflow-bench/t, which no rule subscribes to.
  cat >"$work/hubflow.yaml" <<EOF
hub:
  listen:
    - $([[ $tls == 1 ]] && echo ssl || echo tcp)://127.0.0.1:$port
$hubflow_tls
  anonymous: loopback
  message:
    queued: $queue_bound
functions:
  - name: sayhi
    runtime: native
    plugin: $plugin_dir/sayhi.so
    instance:
      min: 1
      max: 2
rules:
  - name: bench-sayhi
    from: {topic: t, qos: 0}
    function: {name: sayhi}
    to: {topic: t/hi, qos: 0}
stats:
  host: 127.0.0.1
  port: $stats_port
logger:
  level: warn
EOF
  "$bin/hubflow" --config "$work/hubflow.yaml" >"$work/hubflow.log" 2>&1 &
  broker_pid=$!
  started+=("$broker_pid")
  wait_port "$port" "$broker_pid" "$work/hubflow.log"
}

# run_bench broker-label pid port scenario mode args...: one hubflow-bench
# run, its JSON result extended with who/what and the broker's CPU ticks.
run_bench() {
  local label=$1 pid=$2 port=$3 scenario=$4 mode=$5
  shift 5
  local before=0 after=0 out='' status=0
  if [[ -z ${broker_down[$label]:-} ]] && ! { kill -0 "$pid" 2>/dev/null \
       && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }; then
    broker_down[$label]=1
    echo "compare.sh: $label (pid $pid) no longer accepts on port $port;" \
         "its runs are skipped. Log tail:" >&2
    tail -20 "$work/$label.log" >&2
  fi
  if [[ -z ${broker_down[$label]:-} ]]; then
    before=$(cpu_ticks "$pid")
    out=$("$bench" --port "$port" --json --timeout 30 --idle-timeout 2 \
          ${bench_tls[@]+"${bench_tls[@]}"} "$@") || status=$?
    after=$(cpu_ticks "$pid" 2>/dev/null || echo "$before")
  fi
  if [[ $status -ge 2 || -z $out ]]; then
    [[ -z ${broker_down[$label]:-} ]] &&
      echo "compare.sh: $scenario ($mode) against $label failed to run (status $status)" >&2
    out='{"error": true}'
  fi
  printf '%s\n' "$out" | record_result "$label" "$scenario" "$mode" "$((after - before))"
  printf '  %-26s %-9s %-10s' "$scenario" "$mode" "$label" >&2
  printf '%s\n' "$out" | "$python" -c '
import json, sys
r = json.loads(sys.stdin.read())
if r.get("error"): print("  failed"); sys.exit()
print("  %9.0f msg/s  p50 %8.1f us  p99 %9.1f us  lost %d" % (r["delivered_per_s"],
      r["latency_us"]["p50"], r["latency_us"]["p99"], r["lost"]))' >&2
}

# ---- the brokers

mosquitto_port=$(free_port)
start_mosquitto mosquitto "$mosquitto_port"
mosquitto_pid=$broker_pid

other_port=$(free_port)
if [[ -n $standin ]]; then
  other_label="standin"
  start_mosquitto standin "$other_port"
else
  other_label="hubflow"
  # A hubflow that does not come up still leaves the Mosquitto side to run;
  # its rows say n/a and the script exits 1.
  start_hubflow "$other_port" || broker_down[hubflow]=1
fi
other_pid=$broker_pid

# ---- the scenarios: name | messages per publisher (unpaced) | arguments
n() { awk -v count="$1" -v scale="$scale" 'BEGIN { printf "%d", count * scale < 1 ? 1 : count * scale }'; }
scenarios=(
  "qos0 1->1 64B|$(n 200000)|--qos 0 --payload-size 64"
  "qos1 1->1 64B|$(n 100000)|--qos 1 --payload-size 64"
  "fan-in 4->1 qos0|$(n 50000)|--publishers 4 --payload-size 64"
  "fan-out 1->4 qos0|$(n 50000)|--subscribers 4 --payload-size 64"
  "qos0 1->1 1KiB|$(n 100000)|--payload-size 1024"
  "rule t->sayhi->t/hi|$(n 50000)|RULE"
)
if [[ $tls == 1 ]]; then
  scenarios=(
    "tls qos0 1->1 64B|$(n 200000)|--qos 0 --payload-size 64"
    "tls qos1 1->1 64B|$(n 100000)|--qos 1 --payload-size 64"
    "tls fan-out 1->4 qos0|$(n 50000)|--subscribers 4 --payload-size 64"
    "tls handshakes|$(n 2000)|HANDSHAKES"
  )
fi
paced_messages=$(n $((rate * 2))) # two seconds at the paced rate

{
  echo "hubflow vs mosquitto — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,"
  echo "  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr),"
  echo "  $(mosquitto -h 2>/dev/null | head -1), $([[ -n $standin ]] && echo 'STANDIN: a second mosquitto plays hubflow' || "$bin/hubflow" --version 2>/dev/null | head -1)"
  echo "  paced runs: $rate msg/s per publisher; scale $scale; $repeat repeats (medians shown)$([[ $tls == 1 ]] && echo '; TLS (EC P-256 certificate)')"
} >&2

# Repeats go round all scenarios, so that a burst of load from elsewhere on
# the machine spreads over scenarios instead of spoiling one; who goes first
# alternates by scenario and by round.
index=0
for ((round = 0; round < repeat; round++)); do
for entry in "${scenarios[@]}"; do
  IFS='|' read -r name messages args <<<"$entry"
  order=("mosquitto" "$other_label")
  (((index + round) % 2 == 1)) && order=("$other_label" "mosquitto")
  for who in "${order[@]}"; do
    if [[ $who == mosquitto ]]; then
      pid=$mosquitto_pid port=$mosquitto_port
    else
      pid=$other_pid port=$other_port
    fi
    if [[ $args == HANDSHAKES ]]; then
      # One kind of run: connections/s unpaced, and the time to CONNACK of
      # each (the table takes it as the latency).
      run_bench "$who" "$pid" "$port" "$name" unpaced --messages "$messages" --handshakes
      continue
    fi
    if [[ $args == RULE ]]; then
      # Mosquitto has no rules: its number is the plain 1->1 path with the
      # same JSON payload, labelled so in the table.
      if [[ $who == hubflow ]]; then
        set -- --publish-topic t --expect-topic t/hi --payload-format json --payload-size 64
      else
        set -- --topic t --payload-format json --payload-size 64
      fi
    else
      read -r -a split_args <<<"$args"
      set -- "${split_args[@]}"
    fi
    run_bench "$who" "$pid" "$port" "$name" unpaced --messages "$messages" "$@"
    run_bench "$who" "$pid" "$port" "$name" paced --messages "$paced_messages" --rate "$rate" "$@"
  done
  index=$((index + 1))
done
done

# ---- the table
render_report "$results" "$other_label" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
from bench_report import fmt, median, ratio
path, other, ticks_per_s = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in open(path)]
def runs(scenario, broker, mode):
    return [r for r in rows if r["scenario"] == scenario and r["broker"] == broker
            and r["mode"] == mode and not r.get("error")]
def cpu_us_per_msg(r):
    return r["broker_cpu_ticks"] * 1e6 / ticks_per_s / r["delivered"] if r["delivered"] else None
scenarios = []
for r in rows:
    if r["scenario"] not in scenarios:
        scenarios.append(r["scenario"])
print()
print("%-24s %-22s %11s %9s %9s %11s %7s" % ("scenario", "broker", "msg/s", "p50 us",
      "p99 us", "cpu us/msg", "lost"))
print("-" * 99)
for s in scenarios:
    values = {}
    for broker in ("mosquitto", other):
        u, p = runs(s, broker, "unpaced"), runs(s, broker, "paced")
        p = p or u  # handshakes: latency from the unpaced run
        values[broker] = (median(r["delivered_per_s"] for r in u),
                          median(r["latency_us"]["p50"] for r in p),
                          median(r["latency_us"]["p99"] for r in p),
                          median(cpu_us_per_msg(r) for r in u),
                          sum(r["lost"] for r in u + p))
        label = broker
        if s.startswith("rule"):
            label = "mosquitto (plain 1->1)" if broker == "mosquitto" else broker + " (via rule)"
        v = values[broker]
        print("%-24s %-22s %11s %9s %9s %11s %7s" % (s, label, fmt(v[0], ".0f"),
              fmt(v[1], ".1f"), fmt(v[2], ".1f"), fmt(v[3], ".2f"), v[4]))
    m, o = values["mosquitto"], values[other]
    print("%-24s %-22s %11s %9s %9s %11s" % ("", other + "/mosquitto", ratio(o[0], m[0]),
          ratio(o[1], m[1]), ratio(o[2], m[2]), ratio(o[3], m[3])))
print()
print("msg/s: delivered messages per second, unpaced runs; p50/p99: paced runs;")
print("cpu us/msg: broker CPU time (user+system, all threads) per delivered message,")
print("unpaced runs. Each value is the median of the repeats; lost is the sum over all runs.")
print("Ratios are %s/mosquitto: above 1 is better for msg/s, below 1 for the rest." % other)
failed = sum(1 for r in rows if r.get("error"))
if failed:
    print("%d runs failed (n/a above); see the messages before the table." % failed)
    sys.exit(1)
EOF
