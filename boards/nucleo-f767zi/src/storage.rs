//! The core's store (`mpagent_core::store`: identity A/B slots + the outbound queue) in the MCU's
//! own flash, through embassy-stm32's blocking driver (`Flash<Blocking>` is an
//! `embedded_storage` `NorFlash` over the whole 2 MiB, offsets from its start).
//!
//! The STM32F767ZI (single bank) erases in sectors of 32, 128 or 256 KiB; the driver reports the
//! largest (256 KiB) as its erase size, so the store's every block is one 256 KiB sector. The
//! store needs two identity slots and at least two queue pages: the last four sectors (8-11,
//! 0x0810_0000..0x0820_0000), left out of the program's flash in `memory.x`.

use embassy_stm32::flash::{Blocking, Flash};
use mpagent_core::store::{Layout, Store};

/// The flash, as the store sees it.
pub type Nor = Flash<'static, Blocking>;
/// The store on this board.
pub type BoardStore = Store<Nor>;

/// One sector of the store (sectors 5-11 are 256 KiB).
const SECTOR: u32 = 256 * 1024;
/// Offset (from the start of flash, 0x0800_0000) of sector 8, the store's first.
const STORE_START: u32 = 0x0010_0000;

/// Identity slots in sectors 8 and 9, the queue ring in sectors 10 and 11.
pub const LAYOUT: Layout = Layout {
    identity_start: STORE_START,
    identity_slot_len: SECTOR,
    queue_start: STORE_START + 2 * SECTOR,
    queue_len: 2 * SECTOR,
};
