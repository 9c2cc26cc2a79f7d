#!/usr/bin/env bash
# Longer fuzzing runs: every target (or those named) for SECONDS each (default 1800), growing the
# gitignored corpus/<target> of each fuzz project so that later runs start where this one ended.
#
#   tests/fuzz-long.sh [SECONDS] [TARGET...]
#
# Crashes land in core/fuzz/artifacts/<target>/ or host-sim/fuzz/artifacts/<target>/; replay one
# with `cd <project> && cargo +nightly fuzz run <target> <file>`. Minimise a grown corpus with
# `cargo +nightly fuzz cmin <target>`.
set -euo pipefail
secs=${1:-1800}
shift || true
FUZZ_KEEP_CORPUS=1 exec "$(dirname "$0")/fuzz-smoke.sh" "$secs" "$@"
