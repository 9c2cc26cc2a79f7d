#!/usr/bin/env bash
# cargo runner (`cargo run --release`): boots the firmware on QEMU's mps2-an386 with user
# networking and decodes its defmt log. The device's files (mpagent.cfg, which you write, and
# flash.bin / seed.bin / policy<N>.xml, which it keeps) live in $MPAGENT_STATE_DIR (default ./state).
# Exit status: 0 registered and reported, 3 registered but messages left queued, 2 pending
# approval, 1 failed.
set -euo pipefail
elf=$(realpath "$1")
state=${MPAGENT_STATE_DIR:-state}
[ -f "$state/mpagent.cfg" ] || { echo "write $state/mpagent.cfg first (see README.md)" >&2; exit 1; }
cd "$state"
qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
  -semihosting-config enable=on,target=native -nic user,model=lan9118 -kernel "$elf" \
  | defmt-print -e "$elf"
