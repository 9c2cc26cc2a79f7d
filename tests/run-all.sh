#!/usr/bin/env bash
# Runs every test of mpagent, installing what a fresh machine lacks first.
# Used by the README and by CI (.ci/run). Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step prints the seconds since the start (the log shows where a run's time goes) and the
# disk left: a CI machine may have little, and a full disk fails a build.
started=$SECONDS
step() {
  printf '\n=== %s === (at %d s, %s free)\n' "$*" "$((SECONDS - started))" \
    "$(df -h --output=avail . | tail -n 1 | tr -d ' ')"
}
# No incremental caches: every build here is a clean one-off, and they cost gigabytes of disk.
export CARGO_INCREMENTAL=0
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "toolchain and tools"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
rustup target list --installed | grep -q '^thumbv7em-none-eabihf$' || rustup target add thumbv7em-none-eabihf
need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
# libssl-dev: the host's OpenSSL P-256 signer (host-sim/src/sign.rs, the `openssl` crate).
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev pkg-config)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v qemu-system-arm >/dev/null || need_apt+=(qemu-system-arm)
# The C API's examples: gcc for c-host, arm-none-eabi-gcc and newlib for the Cortex-M C image;
# the boards' assembly P-256 signer (p256-cortex-m4-sys: C + assembly built by cc) needs them too.
command -v gcc >/dev/null || need_apt+=(gcc)
{ command -v arm-none-eabi-gcc >/dev/null && [ -e /usr/lib/arm-none-eabi/include/string.h ]; } \
  || need_apt+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
# The boards' native mode builds Mbed TLS (mbedtls-rs-sys: cmake + ninja, clang for the C and bindgen).
command -v clang >/dev/null || need_apt+=(clang)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v ninja >/dev/null || need_apt+=(ninja-build)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}"
fi
python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install --quiet cryptography
command -v defmt-print >/dev/null || cargo install --locked defmt-print  # decodes the firmware's log
command -v cbindgen >/dev/null || cargo install --locked cbindgen  # core/ffi/include/mpagent.h

step "format"
cargo fmt --all --check

step "clippy (warnings denied; core also denies unwrap/expect/panic/indexing)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "core documentation (cargo doc, warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked -p mpagent-core --no-deps

step "core for thumbv7em-none-eabihf (no_std, no alloc)"
cargo build --locked -p mpagent-core --target thumbv7em-none-eabihf --release
cargo build --locked -p mpagent-core --target thumbv7em-none-eabihf --release --features defmt

step "board image without a global allocator (boards/size-probe), run under QEMU mps2-an386"
# Every board build goes through boards/build-image.sh: one target directory per firmware crate,
# shared by its feature sets, each ELF copied to target/<variant>/ where the readers expect it.
image() { bash boards/build-image.sh "$@"; }
# An image under QEMU mps2-an386 that prints through semihosting and exits; `semihosted ELF`, or
# `semihosted QEMU-OPTIONS… -kernel ELF`.
semihosted() {
  [ $# -eq 1 ] && set -- -kernel "$1"
  timeout 120 qemu-system-arm -M mps2-an386 -nographic -semihosting-config enable=on,target=native "$@"
}
(cd boards/size-probe && cargo fmt --check)
image boards/size-probe . clippy -- -D warnings
image boards/size-probe . build
probe_out=$(semihosted boards/size-probe/target/thumbv7em-none-eabihf/release/mpagent-size-probe)
echo "$probe_out"
grep -q '^registration request: [0-9]* bytes' <<<"$probe_out"
# The same path on the boards' assembly P-256 signer: the same request, byte for byte (RFC 6979);
# measured, it checks its signatures, certificate and key generation against the software
# signer's, and one of its signatures is verified by OpenSSL (Python `cryptography`).
image boards/size-probe . clippy --features p256-asm,measure -- -D warnings
image boards/size-probe asm build --features p256-asm
image boards/size-probe asm-measure build --features p256-asm,measure
asm_out=$(semihosted boards/size-probe/target/asm/thumbv7em-none-eabihf/release/mpagent-size-probe)
echo "$asm_out"
[ "$asm_out" = "$(grep '^registration request: ' <<<"$probe_out")" ]
asm_measure_out=$(semihosted -icount shift=0 -kernel boards/size-probe/target/asm-measure/thumbv7em-none-eabihf/release/mpagent-size-probe)
grep '^p256-asm ' <<<"$asm_measure_out"
grep -q '^p256-asm known answers: ' <<<"$asm_measure_out"
python3 tests/interop/verify_p256_asm.py <<<"$asm_measure_out"
# The same image with the RSA-2048 signer as well (provisioned key, certificate, signed request).
image boards/size-probe . clippy --features rsa-measure -- -D warnings
image boards/size-probe rsa build --features rsa
rsa_out=$(semihosted boards/size-probe/target/rsa/thumbv7em-none-eabihf/release/mpagent-size-probe)
echo "$rsa_out"
grep -q '^rsa registration request: [0-9]* bytes' <<<"$rsa_out"
# No panic reachable from untrusted bytes: the core's parsers linked with a panic handler
# that calls a symbol defined nowhere, so any reachable panic fails this link; run under QEMU.
# Then the HTTP head (httparse) and the signing path, linked with the symbol defined: panic-sites.py
# fails on any panic site outside the dependencies listed (their sites are in docs/size.md).
# At opt-level "s", the firmware's (at "z" core's str/char helpers stay out of line, checks kept).
image boards/size-probe . clippy --features no-panic -- -D warnings
image boards/size-probe . clippy --features no-panic-http,no-panic-sign -- -D warnings
image boards/size-probe no-panic build --features no-panic --bin no-panic --config 'profile.release.opt-level="s"'
semihosted boards/size-probe/target/no-panic/thumbv7em-none-eabihf/release/no-panic
image boards/size-probe no-panic-sites rustc --features no-panic-http,no-panic-sign --bin no-panic \
  --config 'profile.release.opt-level="s"' -- -C link-arg=--defsym=mpagent_parser_reaches_a_panic=0
(cd boards/size-probe && python3 panic-sites.py target/no-panic-sites/thumbv7em-none-eabihf/release/no-panic \
  --allow httparse --allow const_oid --allow der --allow sec1 --allow subtle)

step "firmware skeleton for integrators (core/examples/firmware-skeleton), run under QEMU mps2-an386"
# Identity made, agent started, first registration attempt failing at its network seam (which has
# no network behind it) and the agent backing off: the seams a vendor fills, shown working.
(cd core/examples/firmware-skeleton && cargo fmt --check)
image core/examples/firmware-skeleton . clippy -- -D warnings
image core/examples/firmware-skeleton . build
skeleton_out=$(semihosted core/examples/firmware-skeleton/target/thumbv7em-none-eabihf/release/mpagent-firmware-skeleton)
echo "$skeleton_out"
grep -q '^registration attempt failed: not connected$' <<<"$skeleton_out"
grep -q '^skeleton: 4 steps run$' <<<"$skeleton_out"

step "firmware logic shared by the boards (boards/firmware-common: identity, heartbeat, queue, policy)"
(cd boards/firmware-common && cargo fmt --check)
image boards/firmware-common . clippy -- -D warnings
image boards/firmware-common . clippy --features key-rsa2048 -- -D warnings
# Native mode (Mbed TLS).
image boards/firmware-common . clippy --features native,key-rsa2048 -- -D warnings

step "firmware for QEMU mps2-an386 (boards/qemu-mps2-an386; booted by tests/tests/qemu_board.rs)"
(cd boards/qemu-mps2-an386 && cargo fmt --check \
  && ! cargo tree --locked -d -e normal | grep -E '^(p256|sha2|der|spki|elliptic-curve|ecdsa) ')  # one RustCrypto generation
image boards/qemu-mps2-an386 . clippy -- -D warnings
image boards/qemu-mps2-an386 . build
# The RSA-2048 key build; also booted by qemu_board.rs.
image boards/qemu-mps2-an386 . clippy --features key-rsa2048 -- -D warnings
image boards/qemu-mps2-an386 rsa build --features key-rsa2048
# Native mode (HTTPS, Mbed TLS), P-256 and RSA-2048 client keys; booted by qemu_board.rs (`native…`).
image boards/qemu-mps2-an386 . clippy --features native -- -D warnings
image boards/qemu-mps2-an386 native build --features native
image boards/qemu-mps2-an386 native-rsa build --features native,key-rsa2048

step "firmware for NUCLEO-F767ZI (boards/nucleo-f767zi: embassy-stm32 Ethernet, identity and queue in flash; build only)"
(cd boards/nucleo-f767zi && cargo fmt --check \
  && ! cargo tree --locked -d -e normal | grep -E '^(p256|sha2|der|spki|elliptic-curve|ecdsa) ')
image boards/nucleo-f767zi . clippy -- -D warnings
image boards/nucleo-f767zi . build
image boards/nucleo-f767zi . clippy --features key-rsa2048 -- -D warnings
image boards/nucleo-f767zi rsa build --features key-rsa2048
# Native mode, built without provisioning (the image then refuses to start native mode).
image boards/nucleo-f767zi . clippy --features native -- -D warnings
image boards/nucleo-f767zi native build --features native

step "C API (core/ffi): header freshness, c-host built with gcc (run by tests/tests/ffi_c_host.rs), the Cortex-M C image under QEMU mps2-an386"
bash core/ffi/check-header.sh
bash core/ffi/examples/c-host/build.sh
# The firmware library: nothing of an allocator among its undefined symbols.
ffi_lib=target/thumbv7em-none-eabihf/ffi/libmpagent_ffi.a
cm4_out=$(bash core/ffi/examples/cortex-m/build.sh --run)
echo "$cm4_out"
if arm-none-eabi-nm -u "$ffi_lib" 2>/dev/null | grep -E ' U (__rust_alloc|__rust_dealloc|__rust_realloc|__rg_alloc|malloc|free|calloc)$' \
  || arm-none-eabi-nm target/ffi/cm4-c-image.elf | grep -wE 'malloc|_malloc_r|__rust_alloc'; then
  echo "the C API's firmware library or image needs an allocator" >&2; exit 1
fi
grep -q '^cm4: registered as GUID:' <<<"$cm4_out"
grep -q '^cm4: 5 exchanges, .* 3 delivered' <<<"$cm4_out"

step "host tests, interop and end-to-end"
cargo test --workspace --locked

step "size report: flash, RAM, stack and instructions on Cortex-M4 (the table of docs/size.md)"
bash boards/size-report.sh --stdout

# In CI the host build is done with: its target directory (the largest) goes before the fuzz
# builds need room of their own. Kept outside CI, where it caches the next run.
if [ -n "${CI:-}" ]; then rm -rf target/debug; fi

step "fuzz smoke: every target of core/fuzz and host-sim/fuzz for 10 s (SKIPPED without nightly; tests/fuzz-long.sh runs longer)"
bash tests/fuzz-smoke.sh 10

step "done"
