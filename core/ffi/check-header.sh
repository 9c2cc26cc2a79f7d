#!/usr/bin/env bash
# include/mpagent.h is generated from src/ by cbindgen and checked in. This script regenerates
# it into a temporary file and fails when the checked-in header differs (CI, tests/run-all.sh);
# with --write it replaces the checked-in header instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if ! command -v cbindgen >/dev/null 2>&1; then
    echo "check-header: cbindgen is not installed; install it with: cargo install cbindgen --locked" >&2
    exit 2
fi
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
cbindgen --quiet --config cbindgen.toml --crate mpagent-ffi --output "$out"
if [[ "${1:-}" == "--write" ]]; then
    cp "$out" include/mpagent.h
    echo "check-header: include/mpagent.h written"
    exit 0
fi
if ! diff -u include/mpagent.h "$out"; then
    echo "check-header: core/ffi/include/mpagent.h is stale: run core/ffi/check-header.sh --write and commit it" >&2
    exit 1
fi
echo "check-header: core/ffi/include/mpagent.h matches src/"
