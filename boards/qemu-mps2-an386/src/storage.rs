//! Persistent storage for this board: files in QEMU's working directory, reached through Arm
//! semihosting (`-semihosting-config enable=on,target=native`).
//!
//! The test harness keeps the directory between boots, so a second boot finds the identity the
//! first one made. Replacing a file is atomic: the bytes go to `<name>.tmp`, the file is closed,
//! and SYS_RENAME (QEMU: the host's `rename(2)`) moves it over the old one. Semihosting has no
//! fsync, so a *host* crash may still lose the last write; the record CRC (`record.rs`) catches a
//! torn file either way. A real board keeps the same records in its own flash (e.g. with
//! sequential-storage) behind the same two calls.

use core::ffi::CStr;

use semihosting::fs::{self, File};
use semihosting::io::{ErrorKind, Read, Write};

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
