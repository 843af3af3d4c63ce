#!/usr/bin/env bash
# The four function runtimes side by side in one run (issue 6): ONE hubflow
# (embedded hub and stats on free loopback ports) with four rules, each from
# its own topic through an identity function in one runtime to its own
# output topic:
#
#   bench/native -> native-identity (identity.so)        -> bench/native/out
#   bench/sql    -> sql-identity    (select *)           -> bench/sql/out
#   bench/python -> python-identity (identity-py/index)  -> bench/python/out
#   bench/node   -> node-identity   (identity-js/index)  -> bench/node/out
#   bench/wasm   -> wasm-identity   (identity.wasm)      -> bench/wasm/out
#
# For each runtime hubflow-bench runs unpaced (delivered msg/s, CPU of
# hubflow plus that function's worker processes per message) and paced (p50/p99
# end to end at a rate every runtime sustains); after each run the function's
# and the rule's own latency percentiles are read from
# `hubflowctl stats --json`. The order of the runtimes rotates from round to
# round; the table shows medians and each runtime's ratio to native.
# It builds nothing: build first, then
#
#   cmake --build build --target hubflow hubflowctl hubflow-bench identity identity_wasm
#   bench/runtimes_compare.sh [BIN_DIR]      # BIN_DIR defaults to build/bin
#
# Environment knobs:
#   SCALE=2        multiply every message count (default 1: a few seconds per
#                  run; 0.1 for a quick check of the script)
#   RATE=1000      msg/s of the paced latency runs, the same for every runtime
#   REPEAT=3       rounds; every round runs every runtime once, unpaced and paced
#   INSTANCES=1:2  instance.min:instance.max of every function
#   RUNTIMES="native sql python node wasm"   which runtimes (native must stay in
#                  for the ratios)
#   PLUGIN_DIR=..  where identity.so is (default BIN_DIR/../plugins)
#   RESULTS=f.jsonl  also keep every raw result there
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(cd "${1:-$repo/build/bin}" && pwd)
plugin_dir=${PLUGIN_DIR:-$bin/../plugins}
scale=${SCALE:-1}
rate=${RATE:-1000}
repeat=${REPEAT:-3}
instances=${INSTANCES:-1:2}
read -r -a runtimes <<<"${RUNTIMES:-native sql python node wasm}"
python=/usr/bin/python3 # Debian's (with msgpack), not whatever python3 is first on PATH
bench=$bin/hubflow-bench
ctl=$bin/hubflowctl
# Function and rule latencies in `hubflowctl stats` cover the most recent
# 8192 samples: a paced run at least this long is all that the function-side
# percentiles read after it describe.
stats_window=8192

for tool in "$bench" "$ctl" "$bin/hubflow" "$python"; do
  [[ -x $tool ]] || { echo "runtimes_compare.sh: $tool not found or not executable" >&2; exit 2; }
done
[[ -f $plugin_dir/identity.so ]] ||
  { echo "runtimes_compare.sh: $plugin_dir/identity.so not built (target identity)" >&2; exit 2; }
command -v node >/dev/null || { echo "runtimes_compare.sh: node not on PATH" >&2; exit 2; }
if [[ " ${runtimes[*]} " == *" wasm "* && ! -f $plugin_dir/identity.wasm ]]; then
  echo "runtimes_compare.sh: $plugin_dir/identity.wasm not built (target identity_wasm)" >&2; exit 2
fi
[[ $instances =~ ^([0-9]+):([0-9]+)$ ]] ||
  { echo "runtimes_compare.sh: INSTANCES must be min:max, not '$instances'" >&2; exit 2; }
instance_min=${BASH_REMATCH[1]} instance_max=${BASH_REMATCH[2]}

work=$(mktemp -d /tmp/hubflow-runtimes.XXXXXX)
results=$work/results.jsonl
script=runtimes_compare.sh
source "$(dirname "$0")/lib.sh"

port=$(free_port)
stats_port=$(free_port)

# ---- the config: one function and one rule per runtime
function_config() { # runtime: the lines of its function entry
  case $1 in
    native) echo "    runtime: native"
            echo "    plugin: $plugin_dir/identity.so" ;;
    sql)    echo "    runtime: sql"
            echo "    handler: 'select *'" ;;
    python) echo "    runtime: python"
            echo "    handler: index.handler"
            echo "    codedir: $repo/config/examples/functions/identity-py" ;;
    node)   echo "    runtime: node"
            echo "    handler: index.handler"
            echo "    codedir: $repo/config/examples/functions/identity-js" ;;
    wasm)   echo "    runtime: wasm"
            echo "    module: $plugin_dir/identity.wasm" ;;
    *) echo "runtimes_compare.sh: unknown runtime '$1'" >&2; exit 2 ;;
  esac
}
{
  # Log level error: at warn, hubflow logs a line for every invocation that
  # overflows a function's queue, and unpaced runs overflow by the thousand
  # (they are counted in stats and shown in the table instead).
  # stats.interval 100ms: counters reach hubflowctl soon after a run.
  cat <<EOF
hub:
  listen:
    - tcp://127.0.0.1:$port
  anonymous: loopback
  message:
    queued: 1000000
stats:
  host: 127.0.0.1
  port: $stats_port
  interval: 100ms
logger:
  level: error
functions:
EOF
  for runtime in "${runtimes[@]}"; do
    echo "  - name: $runtime-identity"
    function_config "$runtime"
    # idletime far beyond the run: no instance retires between runs.
    echo "    instance: {min: $instance_min, max: $instance_max, idletime: 1h, timeout: 30s, queue: 1000}"
  done
  echo "rules:"
  for runtime in "${runtimes[@]}"; do
    cat <<EOF
  - name: bench-$runtime
    from: {topic: bench/$runtime, qos: 0}
    function: {name: $runtime-identity}
    to: {topic: bench/$runtime/out, qos: 0}
EOF
  done
} >"$work/hubflow.yaml"

"$bin/hubflow" --config "$work/hubflow.yaml" --check >/dev/null ||
  { "$bin/hubflow" --config "$work/hubflow.yaml" --check >&2; exit 2; }
"$bin/hubflow" --config "$work/hubflow.yaml" >"$work/hubflow.log" 2>&1 &
hubflow_pid=$! # the one server this script starts (it owns the workers)
started+=("$hubflow_pid")

wait_port "$port" "$hubflow_pid" "$work/hubflow.log"
wait_port "$stats_port" "$hubflow_pid" "$work/hubflow.log"

# ---- stats and CPU

# stats_of runtime: one JSON object {function: counters+labels, rule: counters}
stats_of() {
  "$ctl" stats --json --stats-port "$stats_port" | "$python" -c '
import json, sys
runtime = sys.argv[1]
out = {}
for c in json.load(sys.stdin)["components"]:
    if c["kind"] == "function" and c["name"] == runtime + "-identity":
        out["function"] = dict(c["counters"], pids=c["labels"].get("pids", ""))
    elif c["kind"] == "rule" and c["name"] == "bench-" + runtime:
        out["rule"] = c["counters"]
print(json.dumps(out))' "$1"
}

# settled_stats runtime received: the runtime's stats once its rule counted
# `received` messages in and out and its function `received` outputs, or
# after 5 s whatever they are then. Each actor reports every stats.interval
# on its own timer: a function snapshot even 100 ms stale would still hold
# the previous run's samples in its latency window, and at 1% of the window
# they are its p99.
settled_stats() {
  local runtime=$1 received=$2 snapshot i
  for ((i = 0; i < 50; i++)); do
    snapshot=$(stats_of "$runtime")
    "$python" -c 'import json, sys; s, n = json.loads(sys.argv[1]), int(sys.argv[2])
rule, function = s.get("rule", {}), s.get("function", {})
sys.exit(0 if min(rule.get("in", 0), rule.get("out", 0), function.get("outputs", 0)) >= n else 1)' \
      "$snapshot" "$received" && break
    sleep 0.1
  done
  echo "$snapshot"
}

# pids of hubflow and of the runtime's workers (python, node, wasm) in a
# snapshot; wasm workers are found as hubflow's children when the stats carry
# no pids for them.
process_pids() {
  local workers
  workers=$("$python" -c 'import json, sys
print(json.loads(sys.argv[1]).get("function", {}).get("pids", "").replace(",", " "))' "$1")
  if [[ -z ${workers// /} && $2 == wasm ]]; then
    workers=$(pgrep -P "$hubflow_pid" -f hubflow_wasm_worker.js | tr '\n' ' ' || true)
  fi
  echo "$hubflow_pid $workers"
}

declare -A received_total=() # runtime -> messages its rule took in so far

# run_bench runtime mode messages args...: one hubflow-bench run through the
# runtime's rule; appends its JSON result, extended with the runtime's stats
# before and after and the CPU ticks of hubflow + the runtime's workers.
run_bench() {
  local runtime=$1 mode=$2 messages=$3
  shift 3
  local before after pids cpu_before cpu_after out='' status=0
  before=$(stats_of "$runtime")
  pids=$(process_pids "$before" "$runtime")
  # shellcheck disable=SC2086 # pids is a list
  cpu_before=$(cpu_ticks $pids)
  out=$("$bench" --port "$port" --json --timeout 60 --idle-timeout 2 \
        --publish-topic "bench/$runtime" --expect-topic "bench/$runtime/out" \
        --payload-format json --payload-size 64 --messages "$messages" "$@") || status=$?
  received_total[$runtime]=$((${received_total[$runtime]:-0} + messages))
  after=$(settled_stats "$runtime" "${received_total[$runtime]}")
  # Workers started during the run count from 0: union of both pid lists.
  pids=$(printf '%s\n' $pids $(process_pids "$after" "$runtime") | sort -u)
  # shellcheck disable=SC2086
  cpu_after=$(cpu_ticks $pids)
  if [[ $status -ge 2 || -z $out ]]; then
    echo "runtimes_compare.sh: $runtime ($mode) failed to run (status $status)" >&2
    kill -0 "$hubflow_pid" 2>/dev/null || { echo "hubflow exited; log:" >&2; tail -20 "$work/hubflow.log" >&2; exit 1; }
    out='{"error": true}'
  fi
  printf '%s\n' "$out" | "$python" -c '
import json, sys
r = json.loads(sys.stdin.read())
r.update(runtime=sys.argv[1], mode=sys.argv[2], cpu_ticks=int(sys.argv[3]),
         stats_before=json.loads(sys.argv[4]), stats_after=json.loads(sys.argv[5]))
print(json.dumps(r))' "$runtime" "$mode" "$((cpu_after - cpu_before))" "$before" "$after" >>"$results"
  printf '  %-7s %-8s' "$runtime" "$mode" >&2
  tail -1 "$results" | "$python" -c '
import json, sys
r = json.loads(sys.stdin.read())
if r.get("error"): print("  failed"); sys.exit()
f, b = r["stats_after"].get("function", {}), r["stats_before"].get("function", {})
print("  %7.0f msg/s  p50 %8.1f us  p99 %9.1f us  lost %5d  function p99 %7s us  overflows %d" % (
      r["delivered_per_s"], r["latency_us"]["p50"], r["latency_us"]["p99"], r["lost"],
      f.get("latency_p99_us", "n/a"), f.get("overflows", 0) - b.get("overflows", 0)))' >&2
}

n() { awk -v count="$1" -v scale="$scale" 'BEGIN { printf "%d", count * scale < 1 ? 1 : count * scale }'; }
unpaced_messages=$(n 20000)
# Two seconds at the paced rate, and at least the stats window (see above).
paced_messages=$(n $((2 * rate > stats_window ? 2 * rate : stats_window)))

{
  echo "function runtimes through one hubflow — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,"
  echo "  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg),"
  echo "  $("$bin/hubflow" --version | head -1), $("$python" --version), node $(node --version)"
  echo "  instances min $instance_min max $instance_max, queue 1000; unpaced $unpaced_messages messages,"
  echo "  paced $paced_messages messages at $rate msg/s; scale $scale; $repeat rounds (medians shown)"
} >&2

# Warm-up, not recorded: start every function's instances up to max (a
# worker starting in the middle of a measured run shows as a latency spike)
# and let the interpreters load their code.
for runtime in "${runtimes[@]}"; do
  "$bench" --port "$port" --json --timeout 30 --idle-timeout 2 \
    --publish-topic "bench/$runtime" --expect-topic "bench/$runtime/out" \
    --payload-format json --messages "$(n 5000)" >/dev/null || true
  received_total[$runtime]=$(n 5000)
done

# Every round runs every runtime once, unpaced then paced; the order rotates
# by one per round, so that a burst of load from elsewhere on the machine
# lands on different runtimes in different rounds.
count=${#runtimes[@]}
for ((round = 0; round < repeat; round++)); do
  echo "round $((round + 1)) of $repeat" >&2
  for ((i = 0; i < count; i++)); do
    runtime=${runtimes[$(((i + round) % count))]}
    run_bench "$runtime" unpaced "$unpaced_messages"
    run_bench "$runtime" paced "$paced_messages" --rate "$rate"
  done
done

# ---- the table
render_report "$results" "$(getconf CLK_TCK)" "$paced_messages" "$stats_window" "${runtimes[@]}" <<'EOF'
import json, sys
from bench_report import fmt, median, ratio
path, ticks_per_s, paced_messages, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runtimes = sys.argv[5:]
rows = [json.loads(line) for line in open(path)]
def runs(runtime, mode):
    return [r for r in rows if r["runtime"] == runtime and r["mode"] == mode and not r.get("error")]
def after(r, kind, counter):
    return r["stats_after"].get(kind, {}).get(counter)
def delta(r, kind, counter):
    return (r["stats_after"].get(kind, {}).get(counter, 0)
            - r["stats_before"].get(kind, {}).get(counter, 0))
def cpu_us_per_msg(r):
    return r["cpu_ticks"] * 1e6 / ticks_per_s / r["delivered"] if r["delivered"] else None

columns = ("runtime", "msg/s", "p50 us", "p99 us", "fn p50", "fn p99", "rule p99",
           "cpu us/msg", "overflows", "lost")
line = "%-10s %9s %9s %9s %8s %8s %9s %10s %10s %6s"
print()
print(line % columns)
print("-" * 100)
values = {}
for rt in runtimes:
    u, p = runs(rt, "unpaced"), runs(rt, "paced")
    values[rt] = v = dict(
        msgs=median(r["delivered_per_s"] for r in u),
        p50=median(r["latency_us"]["p50"] for r in p),
        p99=median(r["latency_us"]["p99"] for r in p),
        fn_p50=median(after(r, "function", "latency_p50_us") for r in p),
        fn_p99=median(after(r, "function", "latency_p99_us") for r in p),
        rule_p99=median(after(r, "rule", "latency_p99_us") for r in p),
        cpu=median(cpu_us_per_msg(r) for r in u),
        overflows=sum(delta(r, "function", "overflows") for r in u + p),
        lost=sum(r["lost"] for r in u + p))
    print(line % (rt, fmt(v["msgs"], ".0f"), fmt(v["p50"], ".1f"), fmt(v["p99"], ".1f"),
                  fmt(v["fn_p50"], "d"), fmt(v["fn_p99"], "d"), fmt(v["rule_p99"], "d"),
                  fmt(v["cpu"], ".1f"), v["overflows"], v["lost"]))
if "native" in values:
    print()
    print("ratio to native (msg/s: above 1 is better; the others: below 1 is better)")
    base = values["native"]
    for rt in runtimes:
        if rt == "native":
            continue
        v = values[rt]
        print(line % (rt + "/nat", ratio(v["msgs"], base["msgs"]), ratio(v["p50"], base["p50"]),
                      ratio(v["p99"], base["p99"]), ratio(v["fn_p50"], base["fn_p50"]),
                      ratio(v["fn_p99"], base["fn_p99"]), ratio(v["rule_p99"], base["rule_p99"]),
                      ratio(v["cpu"], base["cpu"]), "", ""))
print()
print("msg/s: delivered per second, unpaced runs; p50/p99: end to end (publish on")
print("bench/<runtime> to delivery on bench/<runtime>/out), paced runs; fn p50/p99:")
print("the function's own latency (queue + invocation) and rule p99 (rule receive to")
print("delivered), both from `hubflowctl stats` after each paced run, in us;")
print("cpu us/msg: CPU time of hubflow plus the runtime's worker processes per")
print("delivered message, unpaced runs. Medians of the rounds; overflows (invocations")
print("refused by a full function queue, then retried by the rule) and lost: sums.")
if paced_messages < window:
    print("Paced runs were shorter than the %d-sample stats window: fn/rule percentiles" % window)
    print("also include the end of the unpaced run before them.")
failed = sum(1 for r in rows if r.get("error"))
if failed:
    print("%d runs failed (n/a above); see the messages before the table." % failed)
    sys.exit(1)
EOF
