#!/usr/bin/env bash
# The price of persistence (issue 14), side by side in one run: QoS 1 with
# persistent sessions (subscribers with clean session off, so a broker with
# persistence stores what it owes them) against
#
#   mosquitto         Mosquitto with `persistence true` (acknowledges from
#                     memory, writes its file at autosave and at stop)
#   hubflow-batch     hubflow `persistence: {sync: batch}` (acknowledges
#                     once the records are committed: group commit + fsync)
#   hubflow-always    `sync: always` (one commit and fsync per record)
#   hubflow-off       `sync: off` (written behind, no fsync)
#   hubflow-memory    hubflow without `persistence`
#
# all started here on free loopback ports, stores under $STORE_DIR. Per
# scenario (QoS 1 1->1 and fan-out 1->4, 64-byte payloads) the brokers take
# turns, who goes first rotating, REPEAT rounds; the table shows medians of
# delivered msg/s (unpaced runs), latency p50/p99 (paced runs), broker CPU
# time per delivered message, and the ratios to mosquitto and to
# hubflow-memory. sync: always commits once per record, so it gets a tenth
# of the messages and of the paced rate (its row says so).
#
# Then the restart: an offline persistent subscriber (mosquitto_sub -c),
# RESTART_MESSAGES (1 million) QoS 1 messages queued for it, the broker
# stopped (SIGTERM; Mosquitto writes its file then) and started again
# RESTART_REPEAT times on the same store: time to stop, time until the
# listener accepts, hubflow's "store: restored ... in N ms", the store's
# files per queued message, the RSS after the restore, and how many of the
# queued messages the subscriber gets afterwards.
#
# It builds nothing: build hubflow and hubflow-bench first, then
#
#   bench/persistence_compare.sh [BIN_DIR]    # BIN_DIR defaults to build/bin
#
# Environment knobs:
#   SCALE=1            multiply every message count (0.1: a quick check)
#   RATE=2000          msg/s of the publisher in the paced runs
#   REPEAT=3           rounds; the table shows medians
#   RESTART_MESSAGES=1000000   queued messages for the restart (0: skip it)
#   RESTART_REPEAT=3   restarts on the same store
#   STORE_DIR=dir      where the stores go (default: a temp dir under
#                      /var/tmp, on disk; not tmpfs, where fsync is free)
#   RESULTS=f.jsonl    also keep every raw result there
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(cd "${1:-$repo/build/bin}" && pwd)
scale=${SCALE:-1}
rate=${RATE:-2000}
repeat=${REPEAT:-3}
restart_messages=${RESTART_MESSAGES:-1000000}
restart_repeat=${RESTART_REPEAT:-3}
python=/usr/bin/python3
bench=$bin/hubflow-bench
queue_bound=2000000 # QoS 1 messages queued per session, both brokers

for tool in "$bench" "$bin/hubflow" "$python"; do
  [[ -x $tool ]] || { echo "persistence_compare.sh: $tool not found or not executable" >&2; exit 2; }
done
for tool in mosquitto mosquitto_sub; do
  command -v $tool >/dev/null || { echo "persistence_compare.sh: $tool not installed (apt-get install mosquitto mosquitto-clients)" >&2; exit 2; }
done

work=$(mktemp -d "${STORE_DIR:-/var/tmp}/hubflow-persistence.XXXXXX")
results=$work/results.jsonl
script=persistence_compare.sh
source "$(dirname "$0")/lib.sh"
# Mosquitto run as root writes its store as user mosquitto.
chmod a+rwx "$work"

declare -A pid_of port_of
brokers=(mosquitto hubflow-batch hubflow-always hubflow-off hubflow-memory)

write_config() { # broker port: its config file, fresh store directory
  local name=$1 port=$2 store=$work/$1.store
  rm -rf "$store" && mkdir -p "$store" && chmod a+rwx "$store"
  if [[ $name == mosquitto ]]; then
    cat >"$work/$name.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages $queue_bound
max_queued_bytes 0
persistence true
persistence_location $store/
log_type error
log_type warning
EOF
    return
  fi
  local sync=${name#hubflow-}
  cat >"$work/$name.yaml" <<EOF
hub:
  listen: [tcp://127.0.0.1:$port]
  anonymous: loopback
  message:
    queued: $queue_bound
  max_queued_bytes: 4g
stats:
  host: 127.0.0.1
  port: $(free_port)
logger:
  level: info
EOF
  [[ $sync != memory ]] && cat >>"$work/$name.yaml" <<EOF
persistence:
  path: $store
  sync: $sync
EOF
  return 0
}

start_broker() { # broker: started on port_of[broker]; false if it did not come up
  local name=$1
  if [[ $name == mosquitto ]]; then
    mosquitto -c "$work/$name.conf" >>"$work/$name.log" 2>&1 &
  else
    "$bin/hubflow" --config "$work/$name.yaml" >>"$work/$name.log" 2>&1 &
  fi
  pid_of[$name]=$!
  started+=("${pid_of[$name]}")
}

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_broker() { # broker: SIGTERM and wait
  kill "${pid_of[$1]}" 2>/dev/null || true
  wait "${pid_of[$1]}" 2>/dev/null || true
}

now_ms() { date +%s%3N; }

# run_bench broker scenario mode args...: one hubflow-bench run, its JSON
# result extended with who/what and the broker's CPU ticks.
run_bench() {
  local name=$1 scenario=$2 mode=$3 pid=${pid_of[$1]} port=${port_of[$1]}
  shift 3
  local before after out status=0
  before=$(cpu_ticks "$pid")
  out=$("$bench" --port "$port" --json --timeout 120 --idle-timeout 3 \
        --qos 1 --persistent "$@") || status=$?
  after=$(cpu_ticks "$pid")
  if [[ $status -ge 2 || -z $out ]]; then
    echo "$script: $scenario ($mode) against $name failed to run (status $status)" >&2
    out='{"error": true}'
  fi
  printf '%s\n' "$out" | record_result "$name" "$scenario" "$mode" "$((after - before))"
  tail -1 "$results" | "$python" -c '
import json, sys
r = json.loads(sys.stdin.read())
if not r.get("error"):
    print("  %-15s %-8s %-15s %8.0f msg/s  p50 %8.1f us  p99 %9.1f us  lost %d" % (
          r["scenario"], r["mode"], r["broker"], r["delivered_per_s"],
          r["latency_us"]["p50"], r["latency_us"]["p99"], r["lost"]), file=sys.stderr)'
}

n() { awk -v count="$1" -v scale="$scale" 'BEGIN { printf "%d", count * scale < 1 ? 1 : count * scale }'; }

{
  echo "persistence: hubflow vs mosquitto — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,"
  echo "  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr),"
  echo "  $(mosquitto -h 2>/dev/null | head -1), $("$bin/hubflow" --version 2>/dev/null | head -1)"
  echo "  stores in $work ($(df -T "$work" | awk 'NR == 2 { print $2 " on " $1 }'));" \
       "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "  paced runs: $rate msg/s; scale $scale; $repeat repeats (medians shown)"
} >&2

# ---- throughput and latency
for name in "${brokers[@]}"; do
  port_of[$name]=$(free_port)
  write_config "$name" "${port_of[$name]}"
  start_broker "$name"
  wait_port "${port_of[$name]}" "${pid_of[$name]}" "$work/$name.log"
done

scenarios=(
  "qos1 1->1 64B|$(n 50000)|--payload-size 64"
  "qos1 1->4 64B|$(n 20000)|--subscribers 4 --payload-size 64"
)
paced_messages=$(n $((rate * 3))) # three seconds at the paced rate
index=0
for ((round = 0; round < repeat; round++)); do
  for entry in "${scenarios[@]}"; do
    IFS='|' read -r scenario messages args <<<"$entry"
    read -r -a split_args <<<"$args"
    for ((k = 0; k < ${#brokers[@]}; k++)); do
      name=${brokers[(k + index) % ${#brokers[@]}]}
      m=$messages p=$paced_messages r=$rate
      if [[ $name == hubflow-always ]]; then
        m=$((messages / 10)) p=$((paced_messages / 10)) r=$((rate / 10))
      fi
      run_bench "$name" "$scenario" unpaced --messages "$m" "${split_args[@]}"
      run_bench "$name" "$scenario" paced --messages "$p" --rate "$r" "${split_args[@]}"
    done
    index=$((index + 1))
  done
done
for name in "${brokers[@]}"; do
  stop_broker "$name"
done

# ---- restart with a large queue
restart() { # broker: fill, then RESTART_REPEAT stop/start cycles, then drain
  local name=$1 port i out start fill_ms stopped accepted restored rss delivered
  port=$(free_port)
  port_of[$name]=$port
  write_config "$name" "$port"
  : >"$work/$name.log"
  start_broker "$name"
  wait_port "$port" "${pid_of[$name]}" "$work/$name.log"
  mosquitto_sub -p "$port" -c -i hfb-offline -q 1 -t hubflow-bench/t -E
  # Nobody subscribes to hubflow-bench/none: the publisher's run counts
  # everything as lost; only its acknowledgements matter here.
  # Its run ends 1 s (--idle-timeout) after the last acknowledgement.
  start=$(now_ms)
  out=$("$bench" --port "$port" --json --qos 1 --messages "$restart_messages" \
        --publish-topic hubflow-bench/t --expect-topic hubflow-bench/none \
        --timeout 900 --idle-timeout 1) || true
  fill_ms=$(($(now_ms) - start - 1000))
  for ((i = 0; i < restart_repeat; i++)); do
    start=$(now_ms)
    stop_broker "$name"
    stopped=$(($(now_ms) - start))
    start_broker "$name"
    start=$(now_ms)
    until accepts "$port"; do
      kill -0 "${pid_of[$name]}" 2>/dev/null || { echo "$script: $name did not restart" >&2; tail "$work/$name.log" >&2; return 1; }
      sleep 0.005
    done
    accepted=$(($(now_ms) - start))
    restored=$(grep -o 'store: restored.* in [0-9]* ms' "$work/$name.log" | tail -1 | grep -o '[0-9]* ms$' | cut -d' ' -f1 || true)
    rss=$(awk '/VmRSS/ { print $2 }' "/proc/${pid_of[$name]}/status")
    printf '%s\n' "$out" | "$python" -c '
import json, os, sys
r = json.loads(sys.stdin.read())
store = sys.argv[8]
files = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(store) for f in fs)
print(json.dumps(dict(broker=sys.argv[1], scenario="restart", acknowledged=r["acknowledged"],
      fill_s=int(sys.argv[9]) / 1000,
      stop_ms=int(sys.argv[2]), accept_ms=int(sys.argv[3]),
      restored_ms=int(sys.argv[4]) if sys.argv[4] else None, rss_kb=int(sys.argv[5]),
      store_bytes=files, cycle=int(sys.argv[6]), messages=int(sys.argv[7]))))
print("  restart %-15s stop %6s ms  accepts after %6s ms  restored in %s ms  rss %s kB  store %d B" % (
      sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] or "?", sys.argv[5], files), file=sys.stderr)
' "$name" "$stopped" "$accepted" "$restored" "$rss" "$i" "$restart_messages" "$work/$name.store" "$fill_ms" >>"$results"
  done
  delivered=$(timeout 600 mosquitto_sub -p "$port" -c -i hfb-offline -q 1 -t hubflow-bench/t \
              -C "$restart_messages" -W 300 -F '%m' 2>/dev/null | wc -l || true)
  echo "  restart $name: the subscriber got $delivered of $restart_messages after the restarts" >&2
  printf '{"broker": "%s", "scenario": "drain", "delivered": %d}\n' "$name" "$delivered" >>"$results"
  stop_broker "$name"
  rm -rf "$work/$name.store"
}
if [[ $restart_messages -gt 0 ]]; then
  echo "restart with $restart_messages queued messages" >&2
  restart mosquitto
  restart hubflow-batch
fi

# ---- the table
render_report "$results" "$(getconf CLK_TCK)" "$rate" <<'EOF'
import json, sys
from bench_report import exit_if_failed, fmt, median, ratio
path, ticks_per_s, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(line) for line in open(path)]
def runs(scenario, broker, mode):
    return [r for r in rows if r["scenario"] == scenario and r["broker"] == broker
            and r.get("mode") == mode and not r.get("error")]
def cpu_us_per_msg(r):
    return r["broker_cpu_ticks"] * 1e6 / ticks_per_s / r["delivered"] if r["delivered"] else None
brokers = ["mosquitto", "hubflow-batch", "hubflow-always", "hubflow-off", "hubflow-memory"]
scenarios = []
for r in rows:
    if r.get("mode") and r["scenario"] not in scenarios:
        scenarios.append(r["scenario"])
print()
print("%-15s %-16s %9s %7s %7s %9s %9s %10s %6s" % ("scenario", "broker", "msg/s",
      "x mosq", "x mem", "p50 us", "p99 us", "cpu us/msg", "lost"))
print("-" * 96)
for s in scenarios:
    values = {}
    for b in brokers:
        u, p = runs(s, b, "unpaced"), runs(s, b, "paced")
        values[b] = (median(r["delivered_per_s"] for r in u),
                     median(r["latency_us"]["p50"] for r in p),
                     median(r["latency_us"]["p99"] for r in p),
                     median(cpu_us_per_msg(r) for r in u),
                     sum(r["lost"] for r in u + p))
    for b in brokers:
        v = values[b]
        print("%-15s %-16s %9s %7s %7s %9s %9s %10s %6s" % (s, b, fmt(v[0], ".0f"),
              ratio(v[0], values["mosquitto"][0]), ratio(v[0], values["hubflow-memory"][0]),
              fmt(v[1], ".1f"), fmt(v[2], ".1f"), fmt(v[3], ".2f"), v[4]))
restarts = [r for r in rows if r["scenario"] == "restart"]
if restarts:
    print()
    print("%-15s %9s %8s %9s %10s %11s %9s %10s %9s" % ("restart", "queued", "fill s",
          "stop ms", "accept ms", "restored ms", "rss MB", "B/message", "drained"))
    print("-" * 98)
    for b in brokers:
        rs = [r for r in restarts if r["broker"] == b]
        if not rs:
            continue
        drained = [r["delivered"] for r in rows if r["scenario"] == "drain" and r["broker"] == b]
        queued = rs[0]["acknowledged"]
        print("%-15s %9d %8s %9s %10s %11s %9s %10s %9s" % (b, queued,
              fmt(rs[0]["fill_s"], ".1f"), fmt(median(r["stop_ms"] for r in rs), "d"),
              fmt(median(r["accept_ms"] for r in rs), "d"),
              fmt(median(r["restored_ms"] for r in rs), "d"),
              fmt(median(r["rss_kb"] / 1024 for r in rs), ".0f"),
              fmt(median(r["store_bytes"] for r in rs) / queued if queued else None, ".0f"),
              drained[0] if drained else "n/a"))
print()
print("msg/s: delivered messages per second, unpaced runs (x mosq, x mem: ratios to")
print("mosquitto and to hubflow-memory, above 1 is better); p50/p99: paced runs at %d msg/s" % rate)
print("(hubflow-always: a tenth of the messages and of the rate); cpu us/msg: broker CPU")
print("time (user+system, all threads) per delivered message, unpaced runs. Medians of")
print("the repeats; lost is the sum over all runs.")
if restarts:
    print("restart: queued = QoS 1 messages acknowledged into an offline session's queue;")
    print("fill s: the publisher's run (to its last PUBACK); stop: SIGTERM to exit; accept: start to the listener")
    print("accepting; restored: hubflow's own log line; B/message: the store's files once")
    print("restarted / queued; drained: what the subscriber got afterwards. Medians of the restarts.")
exit_if_failed(rows)
EOF
