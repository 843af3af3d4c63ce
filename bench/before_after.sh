#!/usr/bin/env bash
# Two builds of hubflow measured in one run: bench/compare.sh and kafka-bench
# for a BEFORE and an AFTER build, alternately (round 0 before first, round 1
# after first, ...), so that load from elsewhere on the machine hits both
# alike. Prints, per scenario, the medians over the rounds for each build and
# the ratio after/before; Mosquitto, which compare.sh runs beside every
# hubflow, is the same binary in both halves, so its after/before ratio shows
# how much of a difference the machine's noise alone makes.
#
#   bench/before_after.sh BEFORE_BIN_DIR AFTER_BIN_DIR
#   REPORT=f.jsonl bench/before_after.sh   # only the tables, of kept RESULTS
#                                          # (several runs' files concatenated)
#
# Each BIN_DIR holds hubflow and kafka-bench, its ../plugins sayhi.so (what
# `cmake --build build --target hubflow hubflow-bench kafka-bench sayhi`
# makes). Both halves use one load generator, AFTER_BIN_DIR's hubflow-bench,
# so that only the broker differs; kafka-bench is each build's own, since
# its endpoint mode runs the Kafka endpoint compiled into it.
#
# Environment knobs:
#   REPEAT=3        rounds; each runs compare.sh (with REPEAT=1) and
#                   kafka-bench once per build
#   SCALE=0.5       compare.sh's message counts (RATE is passed on as well)
#   KAFKA_MESSAGES=200000 KAFKA_INFLIGHT=1000   kafka-bench's --messages and
#                   --inflight
#   RESULTS=f.jsonl keep every raw result, tagged with the run, build and
#                   round
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=/usr/bin/python3 # Debian's, as in compare.sh
work=$(mktemp -d /tmp/hubflow-before-after.XXXXXX)
results=$work/results.jsonl
script=before_after.sh
source "$(dirname "$0")/lib.sh"

if [[ -n ${REPORT:-} ]]; then
  cp "$REPORT" "$results"
else
[[ $# == 2 ]] || { sed -n '10,12p' "$0" >&2; exit 2; }
rounds=${REPEAT:-3}
scale=${SCALE:-0.5}
kafka_messages=${KAFKA_MESSAGES:-200000}
kafka_inflight=${KAFKA_INFLIGHT:-1000}
run_id=$(date -u '+%Y-%m-%dT%H:%M:%SZ') # tells apart the rounds of concatenated runs
declare -A bin_dir=([before]=$(cd "$1" && pwd) [after]=$(cd "$2" && pwd))
for side in before after; do
  for file in "${bin_dir[$side]}"/{hubflow,kafka-bench,../plugins/sayhi.so}; do
    [[ -f $file ]] || { echo "before_after.sh: $file not built" >&2; exit 2; }
  done
done

# compare.sh finds hubflow, hubflow-bench and ../plugins/sayhi.so by one
# directory: each build gets one here, with the shared load generator.
for side in before after; do
  mkdir -p "$work/$side/bin" "$work/$side/plugins"
  ln -s "${bin_dir[$side]}/hubflow" "$work/$side/bin/hubflow"
  ln -s "${bin_dir[after]}/hubflow-bench" "$work/$side/bin/hubflow-bench"
  ln -s "${bin_dir[$side]}/../plugins/sayhi.so" "$work/$side/plugins/sayhi.so"
done

# tag tool side round: the JSON lines on standard input, with the tool, the
# run, the build and the round added, appended to $results.
tag() {
  "$python" -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    r.update(tool=sys.argv[1], run=sys.argv[2], side=sys.argv[3], round=int(sys.argv[4]))
    print(json.dumps(r))' "$1" "$run_id" "$2" "$3" >>"$results"
}

# kafka-bench's table as JSON lines: mode, msg/s, p50/p99/p99.9 us, and the
# CPU time of the whole run (kafka-bench and the hubflow it starts) and its
# records (all modes).
kafka_rows() { # cpu_seconds messages_per_mode < table
  "$python" -c '
import json, sys
rows = []
for line in sys.stdin:
    f = line.split()
    if len(f) < 6 or f[0] in ("kafka-bench:", "mode"):
        continue
    mode, (rate, p50, p99, p999) = " ".join(f[:-5]), map(float, f[-5:-1])
    rows.append(dict(mode=mode, delivered_per_s=rate,
                     latency_us=dict(p50=p50, p99=p99, p999=p999)))
for r in rows:
    r.update(run_cpu_s=float(sys.argv[1]), run_records=int(sys.argv[2]) * len(rows))
    print(json.dumps(r))' "$@"
}

run_compare() { # side round
  echo "-- round $2, $1: compare.sh (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  local raw=$work/compare.jsonl
  rm -f "$raw"
  REPEAT=1 SCALE=$scale RESULTS=$raw "$repo/bench/compare.sh" "$work/$1/bin" \
    >"$work/compare.$1.$2.txt" 2>&1 ||
    { echo "before_after.sh: compare.sh failed for $1:" >&2; tail -20 "$work/compare.$1.$2.txt" >&2; }
  [[ ! -f $raw ]] || tag compare "$1" "$2" <"$raw"
}

run_kafka() { # side round
  echo "-- round $2, $1: kafka-bench (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  local out=$work/kafka.$1.$2.txt
  /usr/bin/time -f '%U %S' -o "$work/kafka.time" "${bin_dir[$1]}/kafka-bench" \
    --messages "$kafka_messages" --inflight "$kafka_inflight" \
    --hubflow "${bin_dir[$1]}/hubflow" >"$out" 2>"$out.err" ||
    { echo "before_after.sh: kafka-bench failed for $1:" >&2; tail -20 "$out.err" >&2; return 0; }
  kafka_rows "$(awk '{ print $1 + $2 }' "$work/kafka.time")" "$kafka_messages" \
    <"$out" | tag kafka "$1" "$2"
}

echo "before_after.sh — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "  before: ${bin_dir[before]}" >&2
echo "  after:  ${bin_dir[after]}" >&2
echo "  $rounds rounds; compare.sh SCALE=$scale; kafka-bench --messages $kafka_messages --inflight $kafka_inflight" >&2
for ((round = 0; round < rounds; round++)); do
  order=(before after)
  ((round % 2 == 1)) && order=(after before)
  for side in "${order[@]}"; do run_compare "$side" "$round"; done
  for side in "${order[@]}"; do run_kafka "$side" "$round"; done
done
echo "  done $(date -u '+%H:%M UTC'); load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fi

# ---- the table
render_report "$results" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
from bench_report import exit_if_failed, fmt, median, ratio
path, ticks_per_s = sys.argv[1], int(sys.argv[2])
rows = [json.loads(line) for line in open(path)]
def runs(**match):
    return [r for r in rows if not r.get("error")
            and all(r.get(k) == v for k, v in match.items())]
def cpu_us_per_msg(r):
    return r["broker_cpu_ticks"] * 1e6 / ticks_per_s / r["delivered"] if r["delivered"] else None
def spread(values):
    """(max - min) / median of msg/s over the rounds, in percent."""
    values = [v for v in values if v is not None]
    return "%.0f%%" % (100 * (max(values) - min(values)) / median(values)) if values else "n/a"
def in_order(key, subset):
    seen = []
    for r in subset:
        if r[key] not in seen:
            seen.append(r[key])
    return seen

def print_block(name, label, medians):
    """Rows before, after and after/before of one scenario; `medians` maps a
    side to its cells (msg/s, p50, p99, cpu us/msg, spread, lost)."""
    b, a = medians["before"], medians["after"]
    for side, v in (("before", b), ("after", a)):
        print("%-22s %-20s %10s %9s %9s %9s %7s %6s" % (name, label + " " + side,
              fmt(v[0], ".0f"), fmt(v[1], ".1f"), fmt(v[2], ".1f"), fmt(v[3], ".2f"),
              v[4], v[5]))
        name = ""
    print("%-22s %-20s %10s %9s %9s %9s" % ("", label + " after/before", ratio(a[0], b[0]),
          ratio(a[1], b[1]), ratio(a[2], b[2]), ratio(a[3], b[3])))

header = "%-22s %-20s %10s %9s %9s %9s %7s %6s" % ("scenario", "build", "msg/s", "p50 us",
         "p99 us", "cpu us/msg", "spread", "lost")
compare = runs(tool="compare")
print()
print("compare.sh: hubflow, and the Mosquitto beside it (the same binary in both builds' runs)")
print(header)
print("-" * len(header))
for s in in_order("scenario", compare):
    for broker in ("hubflow", "mosquitto"):
        medians = {}
        for side in ("before", "after"):
            u = runs(tool="compare", scenario=s, broker=broker, side=side, mode="unpaced")
            p = runs(tool="compare", scenario=s, broker=broker, side=side, mode="paced") or u
            medians[side] = (median(r["delivered_per_s"] for r in u),
                             median(r["latency_us"]["p50"] for r in p),
                             median(r["latency_us"]["p99"] for r in p),
                             median(cpu_us_per_msg(r) for r in u),
                             spread(r["delivered_per_s"] for r in u),
                             sum(r["lost"] for r in u + p))
        print_block(s, broker, medians)
    # hubflow/mosquitto msg/s within each compare.sh run, where both brokers
    # took turns by scenario: what load that lasts a whole run does to both
    # cancels out here.
    paired = {}
    for side in ("before", "after"):
        per_run = []
        for h in runs(tool="compare", scenario=s, broker="hubflow", side=side, mode="unpaced"):
            m = runs(tool="compare", scenario=s, broker="mosquitto", side=side, mode="unpaced",
                     run=h["run"], round=h["round"])
            if m and m[0]["delivered_per_s"]:
                per_run.append(h["delivered_per_s"] / m[0]["delivered_per_s"])
        paired[side] = median(per_run)
    print("%-22s %-20s %10s %s" % ("", "hubflow/mosquitto", "", "median per run: before %s, after %s, after/before %s" % (
          ratio(paired["before"], 1), ratio(paired["after"], 1), ratio(paired["after"], paired["before"]))))
print()
print("kafka-bench: each build's own (its endpoint mode runs that build's endpoint code)")
print(header)
print("-" * len(header))
for m in in_order("mode", runs(tool="kafka")):
    medians = {}
    for side in ("before", "after"):
        k = runs(tool="kafka", mode=m, side=side)
        # CPU of the whole run (all modes, kafka-bench and its hubflow) per
        # record of the run: one figure, shown on every mode's row.
        medians[side] = (median(r["delivered_per_s"] for r in k),
                         median(r["latency_us"]["p50"] for r in k),
                         median(r["latency_us"]["p99"] for r in k),
                         median(r["run_cpu_s"] * 1e6 / r["run_records"] for r in k),
                         spread(r["delivered_per_s"] for r in k), "-")
    print_block(m[:22], "", medians)
print()
print("Medians over the rounds. msg/s: unpaced runs; p50/p99: compare.sh's paced runs,")
print("kafka-bench's own runs; cpu us/msg: compare.sh the broker's CPU time per delivered")
print("message (unpaced), kafka-bench the CPU time of the whole run per record (all modes);")
print("spread: (max - min) / median of msg/s over the rounds. after/before: above 1 is")
print("better for msg/s, below 1 for the rest; Mosquitto's after/before is noise alone.")
exit_if_failed(rows)
EOF
