# Shared by the bench scripts, which source it once they have set `script`
# (their name, for messages), `work` (their temp dir, removed at exit),
# `results` (copied to $RESULTS at exit when set) and `python`: the
# servers a script started and their cleanup, free ports, waiting for a
# listener, the CPU time of processes, and recording a run's result.

started=() # pids of the servers the script started, and nothing else

cleanup() {
  local pid
  for pid in "${started[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${started[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  [[ -n ${RESULTS:-} && -f $results ]] && cp "$results" "$RESULTS"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs the report step (python on standard input, its arguments given)
# with bench_report.py importable.
render_report() {
  PYTHONPATH="$(dirname "${BASH_SOURCE[0]}")${PYTHONPATH:+:$PYTHONPATH}" \
    "$python" - "$@"
}

# record_result broker scenario mode cpu_ticks: the hubflow-bench JSON result
# on standard input, with who/what and the broker's CPU ticks added, appended
# to $results (one line a run, for the report step).
record_result() {
  "$python" -c '
import json, sys
r = json.loads(sys.stdin.read())
r.update(broker=sys.argv[1], scenario=sys.argv[2], mode=sys.argv[3],
         broker_cpu_ticks=int(sys.argv[4]))
print(json.dumps(r))' "$@" >>"$results"
}

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port pid log: true once something accepts on the port
  local port=$1 pid=$2 log=$3 i
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$script: the server (pid $pid) exited; its log:" >&2
      tail -20 "$log" >&2
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$script: nothing listens on 127.0.0.1:$port after 10 s; log:" >&2
  tail -20 "$log" >&2
  return 1
}

# utime + stime (all threads) of each pid, summed, in clock ticks; a pid
# that is gone counts 0. The command name in field 2 may hold spaces, so
# fields are counted after its ')'.
cpu_ticks() {
  local total=0 pid stat
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }
    set -- $stat
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
