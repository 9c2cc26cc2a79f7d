//! The identity record in the MCU's own flash: a sequential-storage map over the last two
//! 256 KiB sectors (excluded from the program's flash in `memory.x`).
//!
//! sequential-storage writes each item once (append-only, CRC-protected, power-fail safe: a torn
//! write leaves the previous item readable) and wears the two sectors in turn. The value stored is
//! the identity record of `record.rs` (with its own length and CRC; the QEMU board's former
//! `identity.bin` format; that board now keeps its identity in the core's store).

use core::ops::Range;

use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_stm32::flash::{Blocking, Flash};
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapStorage};

use crate::record::MAX_IDENTITY_RECORD;

type Nor = BlockingAsync<Flash<'static, Blocking>>;
type NoCache = Cache<Uncached, Uncached, Uncached, u8>;

/// Offsets (from the start of flash) of the two sectors used.
const RANGE: Range<u32> = 0x0018_0000..0x0020_0000;
/// The identity's key in the map.
const IDENTITY: u8 = 1;
/// Key + value, rounded up to the flash's write size.
pub const SCRATCH_LEN: usize = MAX_IDENTITY_RECORD + 32;

/// A flash operation failed.
pub type StorageError = sequential_storage::Error<embassy_stm32::flash::Error>;

/// The identity store.
pub struct FlashStore {
    map: MapStorage<u8, Nor, NoCache>,
}

impl FlashStore {
    /// Take the flash.
    pub fn new(flash: Flash<'static, Blocking>) -> Self {
        Self {
            map: MapStorage::new(
                BlockingAsync::new(flash),
                const { MapConfig::new(RANGE) },
                Cache::new_uncached(),
            ),
        }
    }

    /// The stored identity record, if any (it borrows `scratch`).
    pub async fn load<'s>(
        &mut self,
        scratch: &'s mut [u8; SCRATCH_LEN],
    ) -> Result<Option<&'s [u8]>, StorageError> {
        self.map.fetch_item::<&[u8]>(scratch, &IDENTITY).await
    }

    /// Replace the identity record.
    pub async fn store(
        &mut self,
        record: &[u8],
        scratch: &mut [u8; SCRATCH_LEN],
    ) -> Result<(), StorageError> {
        self.map.store_item(scratch, &IDENTITY, &record).await
    }
}
