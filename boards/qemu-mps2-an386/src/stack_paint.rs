//! Peak stack measurement by painting: fill the stack below the current frame with a pattern at
//! boot, and later find the lowest word that no longer holds it. Covers everything that ran on
//! the main stack since: the executor, every task's synchronous work (signing included) and the
//! interrupt handlers.

use core::ptr::{addr_of, read_volatile, write_volatile};

const PAINT: u32 = 0x5AFE_C0DE;
/// How far below the boot frame is painted (and so the largest peak that can be measured).
/// 128 KiB: an RSA-2048 build's boot (`--features key-rsa2048`) peaks near 50 KiB.
const WINDOW: usize = 128 * 1024;
/// Left alone below the current stack pointer (this function's frame and an exception frame).
const MARGIN: usize = 256;

unsafe extern "C" {
    // cortex-m-rt's link.x: the stack grows down from `_stack_start` towards `_stack_end`.
    static _stack_start: u32;
    static _stack_end: u32;
}

fn bounds() -> (usize, usize) {
    // Only the symbols' addresses are taken (no unsafe needed for addr_of! of an extern static).
    let (top, end) = (
        addr_of!(_stack_start) as usize,
        addr_of!(_stack_end) as usize,
    );
    (top, end.max(top.saturating_sub(WINDOW)))
}

/// Paint the window below the current frame. Call first thing in `main`, before interrupts.
pub fn paint() {
    let (_, bottom) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut addr = bottom & !3;
    while addr + MARGIN < sp {
        // SAFETY: [bottom, sp - MARGIN) is unused stack: below every live frame, above .bss.
        unsafe { write_volatile(addr as *mut u32, PAINT) };
        addr += 4;
    }
}

/// Bytes of stack used at the deepest point since [`paint`] (the window's size if it overflowed).
pub fn peak() -> usize {
    let (top, bottom) = bounds();
    let mut addr = bottom & !3;
    // SAFETY: reads of painted (or since used) stack memory inside RAM.
    while addr < top && unsafe { read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    top - addr
}

/// Run `f` with interrupts masked and return its result and the stack it used below the
/// caller's frame (bytes, to the word).
pub fn used_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    cortex_m::interrupt::free(|_| {
        let sp = cortex_m::register::msp::read() as usize;
        let (_, bottom) = bounds();
        let below = sp - MEASURE_MARGIN;
        let mut addr = bottom & !3;
        while addr < below {
            // SAFETY: below the live stack (less a margin for this frame) and above .bss.
            unsafe { write_volatile(addr as *mut u32, PAINT) };
            addr += 4;
        }
        let out = core::hint::black_box(f());
        let mut addr = bottom & !3;
        // SAFETY: reads of the painted region.
        while addr < below && unsafe { read_volatile(addr as *const u32) } == PAINT {
            addr += 4;
        }
        (out, sp - addr)
    })
}

const MEASURE_MARGIN: usize = 64;
