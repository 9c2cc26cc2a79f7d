#!/usr/bin/env bash
# Builds one image of a firmware crate (release, --locked, thumbv7em) in that crate's one shared
# target directory, target/shared, and copies its ELF files to target/VARIANT/thumbv7em-none-eabihf/
# release/ (VARIANT "." for the default image: target/thumbv7em-none-eabihf/release/), where
# tests/tests/qemu_board.rs, boards/size-report.sh and the size scripts read them.
#   boards/build-image.sh CRATE_DIR VARIANT build|clippy|rustc [cargo arguments...]
# One target directory because cargo keeps the artifacts of every feature set and profile side
# by side: the variants then build each dependency they use alike once (Mbed TLS's cmake build
# among them) instead of once per variant. Only the final ELF has one path per target directory,
# hence the copy; a lock holds from the build to the copy, so that concurrent callers (the QEMU
# tests run in parallel) each copy their own image.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 CRATE_DIR VARIANT build|clippy|rustc [cargo arguments...]" >&2; exit 2; }
dir=$1 variant=$2 command=$3
shift 3
cd "$dir"
shared=target/shared
mkdir -p "$shared"
exec 9>"$shared/.build-image.lock"
flock 9
if [ "$command" = clippy ]; then
  # Nothing to copy; `--` and the lints follow in the arguments.
  exec cargo clippy --locked --release --target-dir "$shared" "$@"
fi
messages=$(cargo "$command" --locked --release --target-dir "$shared" \
  --message-format=json-render-diagnostics "$@")
out=target/$variant/thumbv7em-none-eabihf/release
mkdir -p "$out"
copied=0
while IFS= read -r elf; do
  # Copied aside and renamed: a QEMU loading the previous copy never reads a half-written one.
  cp "$elf" "$out/.$(basename "$elf").new"
  mv -f "$out/.$(basename "$elf").new" "$out/$(basename "$elf")"
  copied=$((copied + 1))
done < <(grep -o '"executable":"[^"]*"' <<<"$messages" | cut -d'"' -f4)
[ "$copied" -gt 0 ] || { echo "$0: cargo $command in $dir built no executable" >&2; exit 1; }
