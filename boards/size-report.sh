#!/usr/bin/env bash
# Size report for Cortex-M4 (thumbv7em-none-eabihf, opt-level "s", LTO, codegen-units 1):
#   - flash (.text + .rodata) and static RAM (.data + .bss) of the firmware (boards/qemu-mps2-an386,
#     boards/nucleo-f767zi) and of boards/size-probe, with and without the core's registration
#     path (`--features baseline`), whose difference is that path's cost;
#   - peak stack of a real registration in QEMU (the firmware paints its stack), against the MP
#     emulator on loopback;
#   - instructions and stack of each step of a registration's CPU work (`--features measure`,
#     under `qemu -icount shift=0`: SysTick counts x 40 = instructions).
# Writes docs/size.md; `--stdout` prints the table instead. Needs qemu-system-arm, defmt-print,
# llvm-size (rustup component llvm-tools, or Debian's llvm) and the thumbv7em target.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=docs/size.md
[ "${1:-}" = "--stdout" ] && out=/dev/stdout

fw_dir=boards/qemu-mps2-an386
probe_dir=boards/size-probe
elf_name=thumbv7em-none-eabihf/release
tmp=$(mktemp -d)
mp_pid=
cleanup() { [ -n "$mp_pid" ] && kill "$mp_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

size_tool=$(command -v llvm-size || true)
[ -z "$size_tool" ] && size_tool=$(find "$(rustc --print sysroot)" -name llvm-size -type f | head -1)
[ -z "$size_tool" ] && size_tool=$(command -v llvm-size-14 || true)
[ -n "$size_tool" ] || { echo "llvm-size not found: rustup component add llvm-tools" >&2; exit 1; }

echo "building images…" >&2
(cd "$fw_dir" && cargo build --locked --release -q \
  && cargo build --locked --release -q --features measure --target-dir target/measure)
(cd boards/nucleo-f767zi && cargo build --locked --release -q)
(cd "$probe_dir" && cargo build --locked --release -q \
  && cargo build --locked --release -q --features baseline --target-dir target/baseline)
fw=$fw_dir/target/$elf_name/mpagent-qemu-mps2-an386
fw_measure=$fw_dir/target/measure/$elf_name/mpagent-qemu-mps2-an386
nucleo=boards/nucleo-f767zi/target/$elf_name/mpagent-nucleo-f767zi
probe=$probe_dir/target/$elf_name/mpagent-size-probe
baseline=$probe_dir/target/baseline/$elf_name/mpagent-size-probe

# "text rodata data bss" (bytes) of an ELF; the vector table counts as text.
sections() {
  "$size_tool" -A -d "$1" | awk '
    $1 == ".vector_table" || $1 == ".text" { t += $2 }
    $1 == ".rodata" { r += $2 }
    $1 == ".data" { d += $2 }
    $1 == ".bss" || $1 == ".uninit" { b += $2 }
    END { print t + 0, r + 0, d + 0, b + 0 }'
}
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
row() { # label text rodata data bss
  echo "| $1 | $2 | $3 | **$(kib $(($2 + $3)))** | $4 | $5 | **$(kib $(($4 + $5)))** |"
}
read -r fw_t fw_r fw_d fw_b < <(sections "$fw")
read -r nu_t nu_r nu_d nu_b < <(sections "$nucleo")
read -r pr_t pr_r pr_d pr_b < <(sections "$probe")
read -r bl_t bl_r bl_d bl_b < <(sections "$baseline")

# Peak stack of a real registration: the MP emulator on a free loopback port, one first boot.
echo "registering in QEMU…" >&2
mp_bin=target/debug/mpagent-sim
cargo build --locked -q -p mpagent-sim  # a no-op when the tests built it
"$mp_bin" mp serve --listen 127.0.0.1:0 --db "$tmp/site.db" --site-code PS1 --approval auto \
  >"$tmp/mp.out" 2>/dev/null &
mp_pid=$!
port=
for _ in $(seq 50); do
  port=$(sed -n 's|^MP emulator listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$tmp/mp.out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "the MP emulator did not start" >&2; exit 1; }
mkdir "$tmp/dev"
printf 'mp=http://10.0.2.2:%s\nsite=PS1\nname=SIZE-1\n' "$port" >"$tmp/dev/mpagent.cfg"
qemu=(qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none
  -semihosting-config enable=on,target=native -nic user,model=lan9118)
boot_log=$(cd "$tmp/dev" && timeout 120 "${qemu[@]}" -kernel "$root/$fw" | defmt-print -e "$root/$fw")
grep -q 'registered GUID:' <<<"$boot_log" || { echo "registration failed:" >&2; echo "$boot_log" >&2; exit 1; }
stack_line=$(grep -o 'peak stack: setup [0-9]* bytes, registration [0-9]* bytes' <<<"$boot_log")
setup_stack=$(awk '{ print $4 }' <<<"$stack_line")
reg_stack=$(awk '{ print $7 }' <<<"$stack_line")

# Instructions and stack per step, under -icount shift=0 (no network needed).
echo "measuring under -icount shift=0…" >&2
measure_log=$(cd "$tmp/dev" && timeout 120 "${qemu[@]}" -icount shift=0 -kernel "$root/$fw_measure" \
  | defmt-print -e "$root/$fw_measure")
grep -q 'measure registration request build+sign' <<<"$measure_log" \
  || { echo "measurement failed:" >&2; echo "$measure_log" >&2; exit 1; }
measure_rows=$(sed -n 's/.*measure \(.*\): \([0-9]*\) instructions, \([0-9]*\) B stack.*/\1|\2|\3/p' <<<"$measure_log" \
  | awk -F'|' '{ printf "| %s | %.2f M | %s |\n", $1, $2 / 1e6, $3 }')
request_len=$(sed -n 's/.*measure request length: \([0-9]*\) bytes.*/\1/p' <<<"$measure_log")
context=$(sed -n 's/.*measure agent context: \([0-9]*\) B driver state + \([0-9]*\) B registrar.*/\1 \2/p' <<<"$measure_log")
read -r driver_state registrar_size <<<"$context"
buffers=$(grep -o 'EXCHANGE_BUFFER: usize = [0-9]*' "$fw_dir/src/main.rs" | awk '{ print $4 }')

# Flash of the probe's code and constants by crate (trait impls count for the implementing type).
nm_tool=$(dirname "$size_tool")/llvm-nm
[ -x "$nm_tool" ] || nm_tool=$(command -v llvm-nm || command -v llvm-nm-14)
by_crate=$("$nm_tool" -S --size-sort --demangle "$probe" | python3 -c '
import re, sys, collections
sizes = collections.Counter()
for line in sys.stdin:
    f = line.split(None, 3)
    if len(f) < 4 or f[2] not in "tTrR":
        continue
    name = re.sub(r"^(_?\$LT\$|<|&|\$RF\$|mut\s)+", "", f[3])
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", name)
    crate = m.group(0) if m and ("::" in name or ".." in name) else "(unnamed: runtime, vectors, outlined code)"
    crate = "(generic impls)" if len(crate) == 1 else crate
    sizes[crate] += int(f[1], 16)
for crate, n in sizes.most_common(12):
    print(f"| {crate} | {n / 1024:.1f} KiB |")
')

# The firmware's largest stack frames (the immediate of each function's `sub sp`).
objdump_tool=$(dirname "$size_tool")/llvm-objdump
[ -x "$objdump_tool" ] || objdump_tool=$(command -v llvm-objdump || command -v llvm-objdump-14)
frames=$("$objdump_tool" -d --no-show-raw-insn --demangle "$fw" | python3 -c '
import re, sys
fn, frames = None, []
for line in sys.stdin:
    m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
    if m:
        fn = m.group(1)
        continue
    m = re.search(r"sub(?:\.w)?\s+sp, (?:sp, )?#(0x[0-9a-f]+|[0-9]+)\b", line)
    if m and fn:
        name = re.sub(r"::h[0-9a-f]{16}$", "", fn).replace("$LT$", "<").replace("$GT$", ">")
        frames.append((int(m.group(1), 0), name.replace("$u20$", " ").replace("..", "::")))
for size, name in sorted(frames, reverse=True)[:4]:
    print(f"| `{name[:90]}` | {size} B |")
')

path_flash=$(( (pr_t + pr_r) - (bl_t + bl_r) ))
path_ram=$(( (pr_d + pr_b) - (bl_d + bl_b) ))
sign_stack=$(sed -n 's/.*measure registration request build+sign: [0-9]* instructions, \([0-9]*\) B stack.*/\1/p' <<<"$measure_log")
verdict() { # value limit unit
  if [ "$1" -le "$2" ]; then echo "met ($1 $3 ≤ $2 $3)"; else echo "**missed by $(($1 - $2)) $3** ($1 $3 > $2 $3)"; fi
}
report() {
  cat <<EOF
# Code size, RAM, stack and CPU on Cortex-M4

Generated by \`bash boards/size-report.sh\` ($(date -u +%Y-%m-%d), $(rustc --version | cut -d' ' -f1-2)).
Target thumbv7em-none-eabihf, \`opt-level = "s"\`, LTO, one codegen unit, \`panic = "abort"\`; QEMU
\`mps2-an386\`. Flash = \`.vector_table\` + \`.text\` + \`.rodata\`; static RAM = \`.data\` + \`.bss\`.

## Flash and static RAM

| image | .text | .rodata | flash | .data | .bss | static RAM |
|---|---:|---:|---:|---:|---:|---:|
$(row "firmware \`boards/qemu-mps2-an386\` (embassy-net + LAN9118 driver, defmt, semihosting storage)" "$fw_t" "$fw_r" "$fw_d" "$fw_b")
$(row "firmware \`boards/nucleo-f767zi\` (embassy-stm32 Ethernet, DHCP + DNS, flash storage, RTT)" "$nu_t" "$nu_r" "$nu_d" "$nu_b")
$(row "\`boards/size-probe\`: certificate + signed registration request, streamed and hashed" "$pr_t" "$pr_r" "$pr_d" "$pr_b")
$(row "\`boards/size-probe --features baseline\`: same image without the core" "$bl_t" "$bl_r" "$bl_d" "$bl_b")

**The core's registration path** (probe − baseline: P-256 sign, SHA-256, certificate builder, XML,
UTF-16, multipart, HTTP framing): **$(kib $path_flash) flash**, $path_ram B static RAM.
The firmware's static RAM includes its buffers: a ${buffers:-4096}-byte exchange buffer, two
2 KiB TCP socket buffers, 3 KiB of Ethernet frame buffers and embassy-net's sockets.

Where the size probe's flash goes (symbols by crate, \`llvm-nm\`; LTO inlines across crates, so a
caller's share includes what it inlined — the probe's own code is mostly inlined core code):

| crate | flash |
|---|---:|
$by_crate

## Stack (painted, whole program, in QEMU)

| phase of a first boot against the MP emulator | peak stack |
|---|---:|
| setup: provisioning, RNG seed, key generation + self-signed certificate, storage | $setup_stack B |
| registration: build + sign + TCP exchange + reply parsing (\`io::register\`) | $reg_stack B |

## CPU work of one registration (\`--features measure\`, \`-icount shift=0\`)

Each step runs alone, called from a shallow frame; "stack" is what the step itself used below it.

| step | instructions | stack |
|---|---:|---:|
$measure_rows

The request is $request_len bytes on the wire. **Agent context**: the registration driver's state
(\`io::register\`'s future) is $driver_state B and its state machine $registrar_size B; the exchange
buffer (${buffers:-4096} B here) is the caller's choice and comes on top.

## Against the targets of issue 5

| target | result |
|---|---|
| core + crypto + HTTP ≤ 40 kB flash (\`opt-level = "s"\`) | $(verdict "$path_flash" 40960 B) |
| agent context ≤ 4 kB | driver + registrar + the firmware's buffer: $(verdict $((driver_state + registrar_size + ${buffers:-4096})) 4096 B); with a 2 KiB buffer (the smallest that holds the emulator's registration reply; 1.5 KiB does not): $(verdict $((driver_state + registrar_size + 2048)) 4096 B) |
| peak stack during signing ≤ 6 kB | the core's build + sign alone: $(verdict "$sign_stack" 6144 B); whole firmware during registration: $(verdict "$reg_stack" 6144 B) |

Why the misses, as measured:
- **Flash**: P-256 (p256 + primeorder + ecdsa/hmac, with RFC 6979) and the DER certificate builder and
  reader (der, spki) are about half of the path; the core's XML/UTF-16/multipart/HTTP code, the reply
  parser and its date parser the rest (table above).
- **Stack**: P-256 signing itself needs ≈ 4.8 KiB (the "P-256 sign" row). In the firmware the async
  registration driver's poll function sits below it: LTO inlines \`io::register\` with the request
  builder, \`poll_response\` and the reply parser (and the board's setup code) into the main task's
  poll, one large frame (the first row below); moving the registration into a task of its own made
  that frame larger, not smaller. Marking \`build_request\`, \`build_self_signed_p256\`,
  \`poll_response\` and \`parse_registration_reply\` \`#[inline(never)]\` in the core shrank it
  from 4.7 KiB to 0.7 KiB and the registration peak by ≈ 1.3 KiB (hand-run experiment); the rest
  is the signing chain's own frames.

Largest stack frames in the firmware (\`sub sp\` in the disassembly):

| function | frame |
|---|---:|
$frames
EOF
}
# Not `> /dev/stdout`: reopening stdout truncates a log file it points to (CI captures the output).
if [ "$out" = /dev/stdout ]; then report; else report >"$out"; fi
[ "$out" = /dev/stdout ] || echo "wrote $out" >&2
