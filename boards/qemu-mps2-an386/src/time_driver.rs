//! embassy-time driver on the Cortex-M SysTick: one interrupt per millisecond (1 kHz tick, the
//! `tick-hz-1_000` feature), a 64-bit tick count, and embassy's integrated timer queue.
//!
//! mps2-an386 clocks the core (and SysTick's processor-clock source) at 25 MHz. Without `-icount`
//! QEMU runs that clock on host time, so ticks are real milliseconds. With `-icount shift=0` the
//! clock follows the instruction count instead (one SysTick count per 40 instructions, see
//! `shared/spec/facts.md`): good for counting instructions, useless as a wall clock.

use core::cell::{Cell, RefCell};
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// Core clock of the mps2-an386 FPGA image (QEMU models the same).
pub const CORE_CLOCK_HZ: u32 = 25_000_000;
const TICK_HZ: u32 = 1_000;

struct SysTickDriver {
    ticks: Mutex<Cell<u64>>,
    next_alarm: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    next_alarm: Mutex::new(Cell::new(u64::MAX)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

/// Start the tick. Call once, before anything awaits a timer.
pub fn init(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_CLOCK_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.ticks.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut queue = self.queue.borrow_ref_mut(cs);
            if queue.schedule_wake(at, waker) {
                let now = self.ticks.borrow(cs).get();
                self.next_alarm.borrow(cs).set(queue.next_expiration(now));
            }
        });
    }
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let ticks = DRIVER.ticks.borrow(cs);
        let now = ticks.get().wrapping_add(1);
        ticks.set(now);
        let next = DRIVER.next_alarm.borrow(cs);
        if now >= next.get() {
            next.set(DRIVER.queue.borrow_ref_mut(cs).next_expiration(now));
        }
    });
}

/// Core clock cycles since [`init`], from the tick count and SysTick's current value. Under
/// `qemu -icount shift=0` one cycle of the 25 MHz clock is 40 instructions.
pub fn core_clock_counts() -> u64 {
    let per_tick = u64::from(CORE_CLOCK_HZ / TICK_HZ);
    loop {
        let before = Driver::now(&DRIVER);
        let current = u64::from(SYST::get_current());
        // A wrap in between runs the SysTick handler at once (thread mode), changing the count.
        if Driver::now(&DRIVER) == before {
            return before * per_tick + (per_tick - 1 - current);
        }
    }
}
