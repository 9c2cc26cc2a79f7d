//! A NOR flash in a file, so the host client keeps its queue and identity in exactly the record
//! format boards keep in flash (`mpagent_core::store`).
//!
//! The file has a fixed size (a multiple of the 4 KiB erase block; 256 KiB by default) and NOR
//! rules are emulated faithfully: erase sets a block to 0xFF, a write must be aligned to
//! [`WRITE_SIZE`] and may only land on erased bytes (like flashes with ECC: the store writes every
//! word at most once between erases, and this catches it if it ever did not). Every write and
//! erase is followed by `fdatasync`, so the order in which the store commits records is the order
//! in which they reach the disk. Reads are served from an in-memory copy of the file.
//!
//! The file is created atomically (written to `<name>.tmp`, synced, renamed) and locked for the
//! lifetime of the [`FlashFile`] (an exclusive advisory lock): two processes never share one.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mpagent_core::store::embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use mpagent_core::store::testing::TornErase;
use mpagent_core::store::Layout;

/// Erase block size.
pub const ERASE_SIZE: usize = 4096;
/// Write granule (a typical value for MCU flash; the store pads to it).
pub const WRITE_SIZE: usize = 4;
/// The default file size.
pub const DEFAULT_SIZE: u32 = 256 * 1024;
/// Bytes per identity slot in [`FlashFile::layout`] (one erase block: key + certificate ≤ ~4 KB).
pub const IDENTITY_SLOT_LEN: u32 = 4096;

/// Why a flash operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashFileError {
    /// Offset or length not a multiple of the read/write/erase size.
    NotAligned,
    /// Past the end of the file.
    OutOfBounds,
    /// A write to a byte that is not erased (at this offset).
    NotErased(u32),
    /// The file could not be written or synced; the flash refuses everything after this.
    Io(io::ErrorKind),
}

impl NorFlashError for FlashFileError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashFileError::NotAligned => NorFlashErrorKind::NotAligned,
            FlashFileError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            FlashFileError::NotErased(_) | FlashFileError::Io(_) => NorFlashErrorKind::Other,
        }
    }
}

impl std::fmt::Display for FlashFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlashFileError::NotAligned => f.write_str("flash access not aligned"),
            FlashFileError::OutOfBounds => f.write_str("flash access out of bounds"),
            FlashFileError::NotErased(at) => write!(f, "flash write to non-erased byte at {at:#x}"),
            FlashFileError::Io(k) => write!(f, "flash file I/O error: {k}"),
        }
    }
}

impl std::error::Error for FlashFileError {}

/// A file-backed NOR flash.
pub struct FlashFile {
    file: File,
    image: Vec<u8>,
    path: PathBuf,
    failed: Option<io::ErrorKind>,
}

impl std::fmt::Debug for FlashFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlashFile")
            .field("path", &self.path)
            .field("size", &self.image.len())
            .finish()
    }
}

impl FlashFile {
    /// Open the flash file at `path`, creating it erased (all 0xFF) if it does not exist.
    /// `size` must be a non-zero multiple of [`ERASE_SIZE`] and match an existing file's size.
    pub fn open(path: &Path, size: u32) -> io::Result<FlashFile> {
        if size == 0 || !(size as usize).is_multiple_of(ERASE_SIZE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("flash size {size} is not a non-zero multiple of {ERASE_SIZE}"),
            ));
        }
        if !path.exists() {
            create_erased(path, size)?;
        }
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        // `File::try_lock` is Rust 1.89; the workspace declares 1.85 but already needs 1.87
        // (embedded-storage 0.3.2) and builds with 1.95.
        #[allow(clippy::incompatible_msrv)]
        let locked = file.try_lock();
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is in use by another process", path.display()),
                ))
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let len = file.metadata()?.len();
        if len != u64::from(size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {len} bytes, expected a {size}-byte flash image",
                    path.display()
                ),
            ));
        }
        let mut image = Vec::with_capacity(size as usize);
        file.read_to_end(&mut image)?;
        Ok(FlashFile {
            file,
            image,
            path: path.to_path_buf(),
            failed: None,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes.
    pub fn size(&self) -> u32 {
        self.image.len() as u32
    }

    /// The store layout for a flash file of `size` bytes: two identity slots of
    /// [`IDENTITY_SLOT_LEN`], the queue in the rest (248 KiB = 62 pages for the default size).
    pub fn layout(size: u32) -> Layout {
        Layout::split::<FlashFile>(size, IDENTITY_SLOT_LEN)
    }

    /// The contents (as last written).
    pub fn image(&self) -> &[u8] {
        &self.image
    }

    fn range(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<(usize, usize), FlashFileError> {
        if let Some(k) = self.failed {
            return Err(FlashFileError::Io(k));
        }
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(FlashFileError::OutOfBounds)?;
        if end > self.image.len() {
            return Err(FlashFileError::OutOfBounds);
        }
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(FlashFileError::NotAligned);
        }
        Ok((start, end))
    }

    /// Put `bytes` at `start` in the file and sync; the in-memory copy follows only on success.
    fn persist(&mut self, start: usize, bytes: &[u8]) -> Result<(), FlashFileError> {
        let r = self
            .file
            .seek(SeekFrom::Start(start as u64))
            .and_then(|_| self.file.write_all(bytes))
            .and_then(|()| self.file.sync_data());
        if let Err(e) = r {
            // What reached the disk is unknown now: refuse everything until reopened.
            self.failed = Some(e.kind());
            return Err(FlashFileError::Io(e.kind()));
        }
        self.image[start..start + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
}

fn create_erased(path: &Path, size: u32) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&vec![0xFF; size as usize])?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl ErrorType for FlashFile {
    type Error = FlashFileError;
}

impl ReadNorFlash for FlashFile {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let (s, e) = self.range(offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.image[s..e]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.image.len()
    }
}

impl NorFlash for FlashFile {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(FlashFileError::OutOfBounds);
        }
        let (s, e) = self.range(from, (to - from) as usize, ERASE_SIZE)?;
        self.persist(s, &vec![0xFF; e - s])
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let (s, e) = self.range(offset, bytes.len(), WRITE_SIZE)?;
        if let Some(i) = self.image[s..e].iter().position(|&b| b != 0xFF) {
            return Err(FlashFileError::NotErased((s + i) as u32));
        }
        self.persist(s, bytes)
    }
}

/// For power-cut tests over the file (`mpagent_core::store::testing::FaultFlash`): erases the
/// first half of each block, as an erase cut short can leave it.
impl TornErase for FlashFile {
    fn erase_torn(&mut self, from: u32, to: u32) {
        let mut block = from as usize;
        while block < to as usize && block < self.image.len() {
            let half = vec![0xFF; ERASE_SIZE / 2];
            if self.persist(block, &half).is_err() {
                return;
            }
            block += ERASE_SIZE;
        }
    }
}
