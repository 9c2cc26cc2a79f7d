#!/usr/bin/env bash
# Fuzz smoke: runs every cargo-fuzz target of core/fuzz and host-sim/fuzz for SECONDS each
# (default 10) from the committed seeds, with the committed dictionaries, and prints the
# executions per target. A crash fails the script (the input lands in <project>/artifacts/).
#
#   tests/fuzz-smoke.sh [SECONDS] [TARGET...]      # all targets, or only those named
#
# Needs the nightly toolchain and cargo-fuzz. In CI (CI set) a missing cargo-fuzz is installed;
# a missing nightly toolchain is reported as SKIPPED (it cannot be fetched on every machine).
# FUZZ_KEEP_CORPUS=1 grows <project>/corpus/<target> (gitignored) instead of a throw-away corpus
# (tests/fuzz-long.sh does that). FUZZ_KEEP_LOGS=1 keeps the libFuzzer logs (path printed).
# FUZZ_PROJECTS="core/fuzz" limits the projects (a cold build of host-sim/fuzz, sanitizers and all
# of mpagent-sim's dependencies, costs ~14 CPU-minutes: cache <project>/target in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
only=("$@")
read -r -a projects <<<"${FUZZ_PROJECTS:-core/fuzz host-sim/fuzz}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "!!!!!!!!!! fuzz smoke SKIPPED: no nightly toolchain (rustup toolchain install nightly) !!!!!!!!!!"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  if [ -n "${CI:-}" ]; then
    cargo install --locked cargo-fuzz
  else
    echo "!!!!!!!!!! fuzz smoke SKIPPED: cargo-fuzz missing (cargo install --locked cargo-fuzz) !!!!!!!!!!"
    exit 0
  fi
fi

# The dictionary of a target: <target>.dict, else the first *.dict whose name starts the target's
# name (http.dict for http_response, mp.dict for mp_*), else the last *.dict of the project.
dict_for() {
  local dir=$1 target=$2 d stem
  [ -f "$dir/$target.dict" ] && { echo "$target.dict"; return; }
  for d in "$dir"/*.dict; do
    stem=$(basename "$d" .dict)
    [[ $target == "$stem"* ]] && { basename "$d"; return; }
  done
  # shellcheck disable=SC2012
  ls "$dir"/*.dict 2>/dev/null | sort | tail -n 1 | xargs -r basename
}

summary=()
failed=0
scratch=$(mktemp -d)
trap '[ -n "${FUZZ_KEEP_LOGS:-}" ] || rm -rf "$scratch"' EXIT
for dir in "${projects[@]}"; do
  [ -f "$dir/Cargo.toml" ] || continue
  (cd "$dir" && cargo +nightly fuzz build 2>&1 | tail -n 3)
  for target in $(cd "$dir" && cargo +nightly fuzz list); do
    if [ ${#only[@]} -gt 0 ] && [[ " ${only[*]} " != *" $target "* ]]; then continue; fi
    if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
      corpus=corpus/$target
      mkdir -p "$dir/$corpus"
    else
      corpus=$scratch/$target
      mkdir -p "$corpus"
    fi
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    dict=$(dict_for "$dir" "$target")
    [ -n "$dict" ] && args+=(-dict="$dict")
    seeds=()
    if [ -d "$dir/seeds/$target" ]; then
      seeds=("seeds/$target")
      # Inputs may grow to the largest seed (libFuzzer's default cap is 4096 bytes).
      biggest=$(find "$dir/seeds/$target" -type f -printf '%s\n' | sort -n | tail -n 1)
      [ "${biggest:-0}" -gt 4096 ] && args+=(-max_len="$biggest")
    fi
    log=$scratch/$target.log
    printf '\n=== fuzz %s/%s for %ss ===\n' "$dir" "$target" "$secs"
    if (cd "$dir" && cargo +nightly fuzz run "$target" "$corpus" "${seeds[@]}" -- "${args[@]}") >"$log" 2>&1; then
      result=ok
    else
      result=CRASH
      failed=1
      grep -E 'ERROR|panicked|SUMMARY|Test unit written|artifact_prefix' "$log" | head -n 20 || true
    fi
    execs=$({ grep -o 'stat::number_of_executed_units: [0-9]*' "$log" || true; } | awk '{print $2}' | tail -n 1)
    cov=$({ grep -oE '#[0-9]+[[:space:]]+DONE[[:space:]]+cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" || true; } |
      tail -n 1 | sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+)/cov \1 ft \2 corp \3/')
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
    summary+=("$(printf '%-14s %-16s %10s execs  %-28s %s' "$dir" "$target" "${execs:-?}" "${cov:-}" "$result")")
  done
done

[ -n "${FUZZ_KEEP_LOGS:-}" ] && echo "logs: $scratch"
printf '\n=== fuzz summary (%ss per target) ===\n' "$secs"
printf '%s\n' "${summary[@]}"
exit $failed
