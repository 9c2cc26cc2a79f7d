#!/usr/bin/env bash
# First runs under stress, against an MP emulator on loopback (slow: not in CI):
#  1. TRIALS_CONCURRENT times, 4 × `client register` started at once on one fresh state dir;
#     a trial is broken if a later `client register` on that dir does not exit 0.
#  2. TRIALS_KILL times, `client register` on a fresh state dir SIGKILLed after a random
#     0-300 ms; the device is stranded if a later `client register` does not exit 0.
# Usage: host-sim/tests/first_run_trials.sh [path/to/mpagent-sim]
set -u
BIN=${1:-target/debug/mpagent-sim}
TRIALS_CONCURRENT=${TRIALS_CONCURRENT:-50}
TRIALS_KILL=${TRIALS_KILL:-200}
WORK=$(mktemp -d)
PORT=${PORT:-18480}
MP=http://127.0.0.1:$PORT
"$BIN" mp serve --listen 127.0.0.1:$PORT --db "$WORK/site.db" --site-code PS1 >"$WORK/mp.log" 2>&1 &
MP_PID=$!
trap 'kill $MP_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  curl -s -o /dev/null "$MP/" 2>/dev/null && break
  sleep 0.1
done
register() { RUST_LOG=off "$BIN" client register --mp "$MP" --site-code PS1 --state "$1" --name "$2" >/dev/null 2>&1; }

broken=0; in_use=0
for i in $(seq "$TRIALS_CONCURRENT"); do
  d="$WORK/twin$i"
  pids=()
  for _ in 1 2 3 4; do register "$d" "TWIN-$i" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; rc=$?; [ "$rc" = 5 ] && in_use=$((in_use + 1)); done
  register "$d" "TWIN-$i" || broken=$((broken + 1))
done
echo "concurrent first runs: $TRIALS_CONCURRENT trials of 4, $broken broken identities, $in_use runs told 'in use' (exit 5)"

stranded=0
for i in $(seq "$TRIALS_KILL"); do
  d="$WORK/kill$i"
  RUST_LOG=off "$BIN" client register --mp "$MP" --site-code PS1 --state "$d" --name "KILL-$i" >/dev/null 2>&1 &
  p=$!
  sleep "0.$(printf "%03d" $((RANDOM % 80)))"
  kill -9 "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  register "$d" "KILL-$i" || { stranded=$((stranded + 1)); ls -la "$d" >&2; }
done
echo "random SIGKILLs during first runs: $TRIALS_KILL trials, $stranded stranded"
[ "$broken" = 0 ] && [ "$stranded" = 0 ]
