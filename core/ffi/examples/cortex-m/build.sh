#!/usr/bin/env bash
# Builds the thumbv7em library (profile ffi: panic = abort, no allocator) and links main.c with
# arm-none-eabi-gcc into target/ffi/cm4-c-image.elf; with --run, boots it under QEMU mps2-an386.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --quiet -p mpagent-ffi --target thumbv7em-none-eabihf --profile ffi
lib="$target/thumbv7em-none-eabihf/ffi/libmpagent_ffi.a"
elf="$target/ffi/cm4-c-image.elf"
mkdir -p "$target/ffi"
arm-none-eabi-gcc -std=c11 -Os -Wall -Wextra -Werror -mcpu=cortex-m4 -mthumb -mfloat-abi=hard \
    -mfpu=fpv4-sp-d16 -ffunction-sections -fdata-sections --specs=nano.specs -nostartfiles \
    -I "$root/core/ffi/include" -I "$here" "$here/main.c" "$lib" \
    -T "$here/link.ld" -Wa,--noexecstack -Wl,--gc-sections -o "$elf"
echo "$elf"
if [[ "${1:-}" == "--run" ]]; then
    timeout 120 qemu-system-arm -M mps2-an386 -nographic -semihosting-config enable=on,target=native \
        -kernel "$elf" 2>&1  # SYS_WRITE0 output arrives on stderr
fi
