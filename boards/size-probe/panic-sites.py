#!/usr/bin/env python3
"""Panic call sites of an ELF linked with `--defsym` for the no-panic bin's missing symbol.

Prints every branch to a core::panicking / slice-index-fail function with its inline chain
(llvm-addr2line -i). `--allow CRATE` (repeatable): exit 1 if any site does not belong to an allowed
crate, i.e. if a panic is reachable from code other than the allowed dependencies.
A site belongs to the innermost frame outside core (what called the failing core function).
Usage: panic-sites.py ELF [--allow httparse ...]
"""
import re
import subprocess
import sys

PANIC = re.compile(r"panicking|panic_const|slice_index_fail|slice_.*_fail|unwrap_failed|expect_failed"
                   r"|str_index_overflow_fail|slice_error_fail")


STD = {"core", "alloc", "compiler_builtins"}


def crate(frame):
    """The crate a (legacy- or v0-demangled) inline frame belongs to; a trait impl for a generic
    type (`<T as der::Encode>::f`) counts for the trait's crate."""
    name = frame.split(" @ ")[0]
    for a, b in (("_$LT$", "<"), ("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$u5b$", "["), ("..", "::")):
        name = name.replace(a, b)
    name = name.lstrip("<&")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)", name)
    if not m or len(m.group(1)) == 1 or name.startswith("impl") or m.group(1) in ("mut", "dyn"):
        m = re.search(r" as <?([A-Za-z_][A-Za-z0-9_]*)::", name)
    return m.group(1) if m else "?"


def tool(name):
    for cand in (f"llvm-{name}", f"llvm-{name}-14"):
        if subprocess.run(["sh", "-c", f"command -v {cand}"], capture_output=True).returncode == 0:
            return cand
    sys.exit(f"llvm-{name} not found")


def main():
    elf, args = sys.argv[1], sys.argv[2:]
    allowed = [args[i + 1] for i, a in enumerate(args) if a == "--allow"]
    dis = subprocess.run([tool("objdump"), "-d", "--no-show-raw-insn", elf],
                         capture_output=True, text=True, check=True).stdout
    funcs, fn, branches = {}, None, []
    for line in dis.splitlines():
        m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
        if m:
            fn = m.group(2)
            funcs[int(m.group(1), 16)] = fn
            continue
        m = re.match(r"^\s*([0-9a-f]+):\s+b[a-z]*(?:\.w)?\s+0x([0-9a-f]+)", line)
        if m and fn:
            branches.append((int(m.group(1), 16), fn, int(m.group(2), 16)))
    panics = {a for a, f in funcs.items() if PANIC.search(f) or f.endswith("rust_begin_unwind")}
    bad = 0
    for at, fn, target in branches:
        if target not in panics or PANIC.search(fn) or fn.endswith("rust_begin_unwind"):
            continue
        out = subprocess.run([tool("addr2line"), "-i", "-f", "-C", "-e", elf, hex(at)],
                             capture_output=True, text=True).stdout.splitlines()
        chain = [f"{out[i]} @ {re.sub(r'^.*/(registry/src/[^/]+|rustc/[0-9a-f]+)/', '', out[i + 1])}"
                 for i in range(0, len(out) - 1, 2)]
        origin = next((c for c in map(crate, chain) if c not in STD), "?")
        ok = origin in allowed
        bad += not ok
        print(f"{'allowed' if ok else 'PANIC'} {hex(at)} in {origin} -> {funcs[target]}")
        for frame in chain:
            print(f"    {frame[:160]}")
    if allowed and bad:
        sys.exit(f"{bad} panic site(s) outside {', '.join(allowed)}")


if __name__ == "__main__":
    main()
