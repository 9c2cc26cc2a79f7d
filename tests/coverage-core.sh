#!/usr/bin/env bash
# Line coverage of core/ (mpagent-core) from every workspace test, with cargo-llvm-cov. Not part of
# CI (an instrumented build of the workspace plus every test: ~20 min on 2 busy cores). Figures and
# hot spots: docs/coverage.md.
#
#   rustup component add llvm-tools && cargo install --locked cargo-llvm-cov   # once
#   tests/coverage-core.sh            # summary per file of core/src, then the figure without tests
#   tests/coverage-core.sh --html     # also target/llvm-cov/html/index.html
set -euo pipefail
cd "$(dirname "$0")/.."
ignore='(host-sim|tests|boards)/|\.cargo/registry'
# qemu_board builds firmware with cargo, which would inherit the coverage flags: skipped.
cargo llvm-cov --workspace --no-report --no-fail-fast -- --skip firmware_registers_in_qemu
cargo llvm-cov report --summary-only --ignore-filename-regex "$ignore"
[ "${1:-}" = --html ] && cargo llvm-cov report --html --ignore-filename-regex "$ignore"
lcov=$(mktemp)
trap 'rm -f "$lcov"' EXIT
cargo llvm-cov report --lcov --output-path "$lcov" --ignore-filename-regex "$ignore"
# The same lines without the unit tests that live in the files (`#[cfg(test)] mod … {` to the end of
# the file, and `tests.rs` files): test code covers itself and would flatter the figure.
python3 - "$lcov" <<'PY'
import collections, re, sys
hits = collections.defaultdict(dict)
cur = None
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("SF:"):
        cur = line[3:]
    elif line.startswith("DA:"):
        n, c = (int(x) for x in line[3:].split(",")[:2])
        hits[cur][n] = max(hits[cur].get(n, 0), c)
rows, total, covered = [], 0, 0
for path, lines in sorted(hits.items()):
    if "/core/src/" not in path:
        continue
    rel = path.split("/core/src/")[1]
    src = open(path).read().split("\n")
    cut = len(src) + 1
    for i in range(len(src) - 1):
        if src[i] == "#[cfg(test)]" and re.match(r"^(pub(\(crate\))? )?mod \w+ \{", src[i + 1]):
            cut = i + 1
            break
    if rel == "tests.rs" or rel.endswith("/tests.rs"):
        cut = 0
    kept = {n: c for n, c in lines.items() if n < cut}
    missed = sorted(n for n, c in kept.items() if c == 0)
    total += len(kept)
    covered += len(kept) - len(missed)
    if kept:
        rows.append((len(missed), rel, len(kept), missed))
print("\ncore/src without in-file tests: uncovered lines per file")
for m, rel, n, missed in sorted(rows, reverse=True):
    if m:
        print(f"  {rel:26} {m:4} of {n:4}  lines {', '.join(map(str, missed[:12]))}{' …' if m > 12 else ''}")
print(f"core/src without tests: {covered}/{total} lines = {100.0 * covered / total:.2f} %")
PY
