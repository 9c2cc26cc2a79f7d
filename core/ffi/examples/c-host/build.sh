#!/usr/bin/env bash
# Builds libmpagent_ffi.a (profile ffi: panic = abort) and links c-host against it with gcc (the
# host library carries Rust std: hence -lpthread -ldl -lm; the firmware library has no std).
# Output: target/ffi/c-host (under the workspace's target directory, or $CARGO_TARGET_DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --quiet -p mpagent-ffi --profile ffi
${CC:-gcc} -std=c11 -O2 -Wall -Wextra -Werror -I "$root/core/ffi/include" \
    "$here/c-host.c" "$target/ffi/libmpagent_ffi.a" -lpthread -ldl -lm -o "$target/ffi/c-host"
echo "$target/ffi/c-host"
