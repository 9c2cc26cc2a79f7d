//! A thread-mode embassy executor that sleeps with `WFI`.
//!
//! embassy-executor's stock Cortex-M executor sleeps with `WFE`/`SEV`, which QEMU implements as a
//! no-op: the guest would spin at 100 % of a host core while it waits for the network. `WFI` does
//! halt QEMU's CPU until an interrupt (SysTick or the LAN9118) arrives. The check-then-sleep runs
//! with interrupts masked, so a wake that lands between the check and `WFI` still ends the sleep
//! (a pending interrupt wakes `WFI` even under PRIMASK) and is handled right after.

use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{raw, Spawner};

/// Set by the pender (a task was woken), cleared before each poll.
static WOKEN: AtomicBool = AtomicBool::new(false);

#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    WOKEN.store(true, Ordering::Release);
}

/// Spawn the initial tasks with `init`, then poll forever.
pub fn run(executor: &'static raw::Executor, init: impl FnOnce(Spawner)) -> ! {
    init(executor.spawner());
    loop {
        WOKEN.store(false, Ordering::Release);
        // SAFETY: `executor` is only polled here, from thread mode, never re-entrantly.
        unsafe { executor.poll() };
        cortex_m::interrupt::free(|_| {
            if !WOKEN.load(Ordering::Acquire) {
                cortex_m::asm::wfi();
            }
        });
    }
}
