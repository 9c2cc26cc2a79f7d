//! Flash doubles for tests, fuzzing and board self-tests (no_std, no alloc): a RAM flash with
//! real NOR rules, and a wrapper that cuts the power after a number of written bytes.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Why a [`RamFlash`] refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RamFlashError {
    /// Offset or length not a multiple of the read/write/erase size.
    NotAligned,
    /// Past the end.
    OutOfBounds,
    /// A strict flash was asked to write a byte that is not erased (a word written twice).
    NotErased,
}

impl NorFlashError for RamFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            RamFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            RamFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            RamFlashError::NotErased => NorFlashErrorKind::Other,
        }
    }
}

/// Operation counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlashStats {
    /// `read` calls.
    pub reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// `write` calls.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Erase blocks erased.
    pub erases: u64,
}

/// A NOR flash in RAM: `SIZE` bytes, erase sets 0xFF, writes clear bits. With `strict` (the
/// default) a write must land on erased bytes, as on flashes with ECC.
#[derive(Clone)]
pub struct RamFlash<const SIZE: usize, const READ: usize, const WRITE: usize, const ERASE: usize> {
    mem: [u8; SIZE],
    /// Refuse writes to bytes that are not 0xFF.
    pub strict: bool,
    /// What was done to it.
    pub stats: FlashStats,
}

impl<const SIZE: usize, const READ: usize, const WRITE: usize, const ERASE: usize> Default
    for RamFlash<SIZE, READ, WRITE, ERASE>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const SIZE: usize, const READ: usize, const WRITE: usize, const ERASE: usize>
    RamFlash<SIZE, READ, WRITE, ERASE>
{
    /// An erased, strict flash.
    pub const fn new() -> Self {
        Self {
            mem: [0xFF; SIZE],
            strict: true,
            stats: FlashStats {
                reads: 0,
                bytes_read: 0,
                writes: 0,
                bytes_written: 0,
                erases: 0,
            },
        }
    }

    /// A flash holding `image` (shorter images are padded with 0xFF, longer ones cut).
    pub fn from_image(image: &[u8]) -> Self {
        let mut f = Self::new();
        for (d, s) in f.mem.iter_mut().zip(image) {
            *d = *s;
        }
        f
    }

    /// The contents.
    pub fn image(&self) -> &[u8; SIZE] {
        &self.mem
    }

    /// The contents, to corrupt on purpose.
    pub fn image_mut(&mut self) -> &mut [u8; SIZE] {
        &mut self.mem
    }

    fn range(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<(usize, usize), RamFlashError> {
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(RamFlashError::OutOfBounds)?;
        if end > SIZE {
            return Err(RamFlashError::OutOfBounds);
        }
        if align == 0 || !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(RamFlashError::NotAligned);
        }
        Ok((start, end))
    }

    /// Erase only the first half of every block in `from..to`, leaving the rest as it was: what
    /// a power cut in the middle of an erase can leave.
    pub fn erase_torn(&mut self, from: u32, to: u32) {
        let mut block = from as usize;
        while block < to as usize && ERASE > 0 {
            let half = block.saturating_add(ERASE / 2).min(SIZE);
            if let Some(m) = self.mem.get_mut(block..half) {
                m.fill(0xFF);
            }
            block = block.saturating_add(ERASE);
        }
    }
}

impl<const SIZE: usize, const READ: usize, const WRITE: usize, const ERASE: usize> ErrorType
    for RamFlash<SIZE, READ, WRITE, ERASE>
{
    type Error = RamFlashError;
}

impl<const SIZE: usize, const READ: usize, const WRITE: usize, const ERASE: usize> ReadNorFlash
    for RamFlash<SIZE, READ, WRITE, ERASE>
{
    const READ_SIZE: usize = READ;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let (s, e) = self.range(offset, bytes.len(), READ)?;
        bytes.copy_from_slice(self.mem.get(s..e).ok_or(RamFlashError::OutOfBounds)?);
        self.stats.reads += 1;
        self.stats.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        SIZE
    }
}

impl<const SIZE: usize, const READ: usize, const WRITE: usize, const ERASE: usize> NorFlash
    for RamFlash<SIZE, READ, WRITE, ERASE>
{
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(RamFlashError::OutOfBounds);
        }
        let (s, e) = self.range(from, (to - from) as usize, ERASE)?;
        self.mem
            .get_mut(s..e)
            .ok_or(RamFlashError::OutOfBounds)?
            .fill(0xFF);
        self.stats.erases += ((e - s) / ERASE.max(1)) as u64;
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let (s, e) = self.range(offset, bytes.len(), WRITE)?;
        let strict = self.strict;
        let mem = self.mem.get_mut(s..e).ok_or(RamFlashError::OutOfBounds)?;
        if strict && mem.iter().any(|&b| b != 0xFF) {
            return Err(RamFlashError::NotErased);
        }
        for (d, b) in mem.iter_mut().zip(bytes) {
            *d &= *b;
        }
        self.stats.writes += 1;
        self.stats.bytes_written += bytes.len() as u64;
        Ok(())
    }
}

/// A flash that can be left half-erased (see [`RamFlash::erase_torn`]).
pub trait TornErase {
    /// Erase part of `from..to` and stop.
    fn erase_torn(&mut self, from: u32, to: u32);
}

impl<const SIZE: usize, const READ: usize, const WRITE: usize, const ERASE: usize> TornErase
    for RamFlash<SIZE, READ, WRITE, ERASE>
{
    fn erase_torn(&mut self, from: u32, to: u32) {
        RamFlash::erase_torn(self, from, to);
    }
}

impl<T: TornErase> TornErase for &mut T {
    fn erase_torn(&mut self, from: u32, to: u32) {
        T::erase_torn(self, from, to);
    }
}

/// A [`FaultFlash`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FaultError<E> {
    /// The power was cut: nothing more reaches the flash.
    PowerLost,
    /// The inner flash failed.
    Flash(E),
}

impl<E: NorFlashError> NorFlashError for FaultError<E> {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FaultError::PowerLost => NorFlashErrorKind::Other,
            FaultError::Flash(e) => e.kind(),
        }
    }
}

/// What one erase call costs of a [`FaultFlash`] budget: with 0 units left the erase does not
/// start, with 1 it is torn ([`TornErase`]), with 2 it completes.
pub const ERASE_COST: u64 = 2;

/// Cuts the power after a budget of *units*: one per byte written, [`ERASE_COST`] per erase call.
/// The write that crosses the budget persists exactly the bytes before the cut (the rest of its
/// words stay erased), then every operation fails with [`FaultError::PowerLost`]. Reboot by
/// taking the inner flash back ([`FaultFlash::into_inner`]) and opening the store on it.
pub struct FaultFlash<F> {
    inner: F,
    budget: Option<u64>,
    used: u64,
    dead: bool,
}

impl<F: NorFlash + TornErase> FaultFlash<F> {
    /// No cut: counts the units an operation sequence uses.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            budget: None,
            used: 0,
            dead: false,
        }
    }

    /// Cut the power once `units` units are used.
    pub fn cut_after(inner: F, units: u64) -> Self {
        Self {
            inner,
            budget: Some(units),
            used: 0,
            dead: false,
        }
    }

    /// Units used so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Whether the power was cut.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The inner flash, as the power cut left it.
    pub fn into_inner(self) -> F {
        self.inner
    }

    /// The inner flash.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }

    fn left(&self) -> u64 {
        self.budget
            .map_or(u64::MAX, |b| b.saturating_sub(self.used))
    }
}

impl<F: NorFlash> ErrorType for FaultFlash<F> {
    type Error = FaultError<F::Error>;
}

impl<F: NorFlash + TornErase> ReadNorFlash for FaultFlash<F> {
    const READ_SIZE: usize = F::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if self.dead {
            return Err(FaultError::PowerLost);
        }
        self.inner.read(offset, bytes).map_err(FaultError::Flash)
    }

    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl<F: NorFlash + TornErase> NorFlash for FaultFlash<F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if self.dead {
            return Err(FaultError::PowerLost);
        }
        match self.left() {
            0 => {}
            1 => self.inner.erase_torn(from, to),
            _ => {
                self.inner.erase(from, to).map_err(FaultError::Flash)?;
                self.used += ERASE_COST;
                return Ok(());
            }
        }
        self.used = self.budget.unwrap_or(self.used);
        self.dead = true;
        Err(FaultError::PowerLost)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if self.dead {
            return Err(FaultError::PowerLost);
        }
        let left = self.left();
        if (bytes.len() as u64) <= left {
            self.inner.write(offset, bytes).map_err(FaultError::Flash)?;
            self.used += bytes.len() as u64;
            return Ok(());
        }
        // Persist the first `left` bytes: whole words as they are, the word the cut falls in
        // with its remaining bytes left erased.
        let keep = left as usize;
        let w = F::WRITE_SIZE.max(1);
        let whole = keep / w * w;
        if whole > 0 {
            if let Some(b) = bytes.get(..whole) {
                self.inner.write(offset, b).map_err(FaultError::Flash)?;
            }
        }
        let part = keep - whole;
        if part > 0 {
            let mut word = [0xFFu8; 64];
            if let (Some(d), Some(s)) = (word.get_mut(..part), bytes.get(whole..keep)) {
                d.copy_from_slice(s);
            }
            if let Some(wd) = word.get(..w) {
                self.inner
                    .write(offset + whole as u32, wd)
                    .map_err(FaultError::Flash)?;
            }
        }
        self.used = self.budget.unwrap_or(self.used);
        self.dead = true;
        Err(FaultError::PowerLost)
    }
}
