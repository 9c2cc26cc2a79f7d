#!/usr/bin/env bash
# Records the MP emulator's replies that the Cortex-M image replays: runs c-host against
# `mpagent-sim mp serve` with the image's configuration, a fixed clock and the image's stand-in
# RNG seed (so that both send the same requests), and writes every connection's reply bytes
# into replies.h (checked in; re-run this after a change to what the agent sends).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --quiet -p mpagent-sim
bash core/ffi/examples/c-host/build.sh >/dev/null
work="$(mktemp -d)"
mp_pid=""
cleanup() { [ -n "$mp_pid" ] && kill "$mp_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# The address is part of every request (Host, TargetHost): the image names the same one.
"$target/debug/mpagent-sim" mp serve --listen 127.0.0.1:18480 --db "$work/site.db" --site-code PS1 \
    >"$work/mp.log" 2>&1 &
mp_pid=$!
for _ in $(seq 50); do grep -qs listening "$work/mp.log" && break; sleep 0.1; done
clock=$(date +%s)
seed=0x9E3779B97F4A7C15
mkdir -p "$work/replies"
"$target/ffi/c-host" --mp http://127.0.0.1:18480 --site-code PS1 --name CM4-C-1 \
    --state "$work/state" --clock "$clock" --seed "$seed" --record "$work/replies"
python3 - "$work/replies" "$clock" "$seed" >"$here/replies.h" <<'PY'
import os, sys
d, clock, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = sorted((f for f in os.listdir(d) if f.startswith("reply-")), key=lambda f: int(f[6:-4]))
print("/* Recorded by core/ffi/examples/cortex-m/record.sh from the MP emulator; do not edit. */")
print("#include <stddef.h>\n#include <stdint.h>\n")
print(f"#define REC_CLOCK {clock}LL\n#define REC_SEED {seed}ULL\n#define REC_REPLIES {len(names)}\n")
for i, n in enumerate(names):
    b = open(os.path.join(d, n), "rb").read()
    print(f"static const uint8_t rec_reply_{i}[{len(b)}] = {{")
    for o in range(0, len(b), 16):
        print("    " + ", ".join(f"0x{x:02x}" for x in b[o:o+16]) + ",")
    print("};")
print("static const uint8_t *const rec_reply[REC_REPLIES] = {" + ", ".join(f"rec_reply_{i}" for i in range(len(names))) + "};")
print("static const size_t rec_reply_len[REC_REPLIES] = {" + ", ".join(f"sizeof rec_reply_{i}" for i in range(len(names))) + "};")
PY
echo "record: $(ls "$work/replies" | wc -l) replies into $here/replies.h (clock $clock)"
