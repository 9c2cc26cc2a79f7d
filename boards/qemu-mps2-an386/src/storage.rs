//! Persistent storage for this board, in QEMU's working directory through Arm semihosting
//! (`-semihosting-config enable=on,target=native`): plain files for provisioning and the RNG seed
//! ([`SemihostingFiles`]), and a NOR flash emulated in one file ([`SemihostingFlash`]) that holds
//! the core's store (`mpagent_core::store`: identity A/B slots + the outbound queue), in exactly
//! the format a real board keeps in its own flash.
//!
//! The test harness keeps the directory between boots, so a second boot finds what the first one
//! stored. Semihosting has no fsync, so a *host* crash may lose the last write; the store's CRCs
//! and commit markers catch a torn write either way (the store is built for power cuts at any
//! byte).

use core::ffi::CStr;

use mpagent_core::store::embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use mpagent_core::store::Layout;
use semihosting::fs::{self, File};
use semihosting::io::{ErrorKind, Read, Seek, SeekFrom, Write};

/// A storage operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum StorageError {
    /// The host refused the open, read, write or rename (semihosting errno).
    Host(i32),
    /// The file is larger than the caller's buffer.
    TooLarge,
}

fn host(e: semihosting::io::Error) -> StorageError {
    StorageError::Host(e.raw_os_error().unwrap_or(-1))
}

/// Files in QEMU's working directory.
pub struct SemihostingFiles;

impl SemihostingFiles {
    /// Read `name` into `buf`: `Ok(None)` when it does not exist, else the bytes read.
    pub fn read<'b>(
        &self,
        name: &CStr,
        buf: &'b mut [u8],
    ) -> Result<Option<&'b [u8]>, StorageError> {
        let mut file = match File::open(name) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(host(e)),
        };
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]).map_err(host)? {
                0 => return Ok(Some(&buf[..filled])),
                n => filled += n,
            }
        }
        // Full: the file is too large unless it ends exactly here.
        match file.read(&mut [0u8; 1]).map_err(host)? {
            0 => Ok(Some(buf)),
            _ => Err(StorageError::TooLarge),
        }
    }

    /// Replace `name` with `bytes` atomically (write `tmp`, then rename it over `name`).
    pub fn replace(&self, name: &CStr, tmp: &CStr, bytes: &[u8]) -> Result<(), StorageError> {
        {
            let mut file = File::create(tmp).map_err(host)?;
            file.write_all(bytes).map_err(host)?;
        } // closed here: SYS_CLOSE before the rename
        fs::rename(tmp, name).map_err(host)
    }
}

/// Erase block of the emulated flash (a typical MCU sector size).
pub const ERASE_SIZE: usize = 4096;
/// Write granule (the store pads every write to it).
pub const WRITE_SIZE: usize = 4;
/// Size of the flash file: two identity slots of one block, the queue in the other 14 blocks.
pub const FLASH_SIZE: u32 = 64 * 1024;
/// Bytes per identity slot (key + certificate + overhead fit one block).
pub const IDENTITY_SLOT_LEN: u32 = 4096;

/// A flash operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum FlashError {
    /// The host refused a seek, read or write (semihosting errno).
    Host(i32),
    /// Offset or length not a multiple of the write or erase size.
    NotAligned,
    /// Past the end of the flash.
    OutOfBounds,
    /// A write to a byte that is not erased (NOR rule; the store never does this).
    NotErased(u32),
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::NotAligned => NorFlashErrorKind::NotAligned,
            FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            FlashError::Host(_) | FlashError::NotErased(_) => NorFlashErrorKind::Other,
        }
    }
}

/// A NOR flash of [`FLASH_SIZE`] bytes in a semihosting file: erase writes 0xFF, a write must be
/// aligned and land on erased bytes (checked: a read before every write), so the store runs here
/// under the rules of real flash.
pub struct SemihostingFlash {
    file: File,
}

impl SemihostingFlash {
    /// Open `name`, creating it erased (through `tmp`, renamed: never half-created) if absent.
    pub fn open(name: &CStr, tmp: &CStr) -> Result<Self, StorageError> {
        let file = match fs::OpenOptions::new().read(true).write(true).open(name) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                {
                    let mut f = File::create(tmp).map_err(host)?;
                    let erased = [0xFFu8; 512];
                    for _ in 0..FLASH_SIZE as usize / erased.len() {
                        f.write_all(&erased).map_err(host)?;
                    }
                }
                fs::rename(tmp, name).map_err(host)?;
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(name)
                    .map_err(host)?
            }
            Err(e) => return Err(host(e)),
        };
        if file.metadata().map_err(host)?.len() != u64::from(FLASH_SIZE) {
            return Err(StorageError::TooLarge);
        }
        Ok(Self { file })
    }

    /// The store's layout on this flash.
    pub fn layout() -> Layout {
        Layout::split::<Self>(FLASH_SIZE, IDENTITY_SLOT_LEN)
    }

    fn check(offset: u32, len: usize, align: usize) -> Result<(), FlashError> {
        let end = (offset as usize)
            .checked_add(len)
            .ok_or(FlashError::OutOfBounds)?;
        if end > FLASH_SIZE as usize {
            return Err(FlashError::OutOfBounds);
        }
        if !(offset as usize).is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(FlashError::NotAligned);
        }
        Ok(())
    }

    fn read_at(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let flash = |e| FlashError::Host(raw(e));
        self.file
            .seek(SeekFrom::Start(offset.into()))
            .map_err(flash)?;
        self.file.read_exact(bytes).map_err(flash)
    }

    fn write_at(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let flash = |e| FlashError::Host(raw(e));
        self.file
            .seek(SeekFrom::Start(offset.into()))
            .map_err(flash)?;
        self.file.write_all(bytes).map_err(flash)
    }
}

fn raw(e: semihosting::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

impl ErrorType for SemihostingFlash {
    type Error = FlashError;
}

impl ReadNorFlash for SemihostingFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        Self::check(offset, bytes.len(), 1)?;
        self.read_at(offset, bytes)
    }

    fn capacity(&self) -> usize {
        FLASH_SIZE as usize
    }
}

impl NorFlash for SemihostingFlash {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let len = to.checked_sub(from).ok_or(FlashError::OutOfBounds)?;
        Self::check(from, len as usize, ERASE_SIZE)?;
        let erased = [0xFFu8; 256];
        let mut at = from;
        while at < to {
            self.write_at(at, &erased)?;
            at += erased.len() as u32;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        Self::check(offset, bytes.len(), WRITE_SIZE)?;
        // NOR rule: only erased bytes may be written. Checked in small pieces (no big buffer).
        let mut old = [0u8; 64];
        for (i, chunk) in bytes.chunks(old.len()).enumerate() {
            let at = offset + (i * old.len()) as u32;
            let seen = &mut old[..chunk.len()];
            self.read_at(at, seen)?;
            if let Some(j) = seen.iter().position(|&b| b != 0xFF) {
                return Err(FlashError::NotErased(at + j as u32));
            }
        }
        self.write_at(offset, bytes)
    }
}
