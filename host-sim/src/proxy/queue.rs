//! Each proxied device's outbound queue: the core's store over a NOR flash in memory, whose
//! image the proxy keeps in its registry (`queues` table) whenever something stays queued.
//!
//! Why in memory and not a flash file per device: a device's queue is almost always empty (its
//! message is delivered in the frame that brought it), so it costs nothing on disk until the
//! MP cannot take a message; then the image is written in one registry transaction before the
//! device is told its message is queued. A frame the proxy did not answer (a crash mid-frame)
//! is the device's to send again, so nothing it was told is queued is ever lost.

use anyhow::{anyhow, Result};
use mpagent_core::store::embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use mpagent_core::store::{Layout, Store};

/// Bytes of a device's queue flash (the host client's default size: an inventory frame of the
/// compact protocol's largest payload fits).
pub const QUEUE_FLASH_SIZE: usize = 256 * 1024;
/// Erase block.
const ERASE: usize = 4096;
/// Write granule.
const WRITE: usize = 4;
/// The store's identity slots go unused here (the registry keeps the device's identity): the
/// smallest slot the store takes.
const IDENTITY_SLOT: u32 = ERASE as u32;

/// A flash access out of range or misaligned (a store bug: the store keeps to the geometry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemFlashError {
    /// Offset or length not a multiple of the access size.
    NotAligned,
    /// Past the end.
    OutOfBounds,
    /// A write to bytes that are not erased.
    NotErased,
}

impl NorFlashError for MemFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            MemFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            MemFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            MemFlashError::NotErased => NorFlashErrorKind::Other,
        }
    }
}

impl std::fmt::Display for MemFlashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemFlashError::NotAligned => "queue flash access not aligned",
            MemFlashError::OutOfBounds => "queue flash access out of bounds",
            MemFlashError::NotErased => "queue flash write to bytes not erased",
        })
    }
}

impl std::error::Error for MemFlashError {}

/// A NOR flash in memory with NOR rules (erase sets 0xFF, a write lands on erased bytes only).
pub struct MemFlash {
    mem: Vec<u8>,
}

impl MemFlash {
    /// An erased flash.
    pub fn erased() -> Self {
        Self {
            mem: vec![0xFF; QUEUE_FLASH_SIZE],
        }
    }

    /// The flash `image` was taken from (a shorter image is padded as erased).
    pub fn from_image(mut image: Vec<u8>) -> Self {
        image.resize(QUEUE_FLASH_SIZE, 0xFF);
        Self { mem: image }
    }

    /// Its contents.
    pub fn into_image(self) -> Vec<u8> {
        self.mem
    }

    fn range(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<(usize, usize), MemFlashError> {
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(MemFlashError::OutOfBounds)?;
        if end > self.mem.len() {
            return Err(MemFlashError::OutOfBounds);
        }
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(MemFlashError::NotAligned);
        }
        Ok((start, end))
    }
}

impl ErrorType for MemFlash {
    type Error = MemFlashError;
}

impl ReadNorFlash for MemFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let (s, e) = self.range(offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.mem[s..e]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl NorFlash for MemFlash {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(MemFlashError::OutOfBounds);
        }
        let (s, e) = self.range(from, (to - from) as usize, ERASE)?;
        self.mem[s..e].fill(0xFF);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let (s, e) = self.range(offset, bytes.len(), WRITE)?;
        if self.mem[s..e].iter().any(|&b| b != 0xFF) {
            return Err(MemFlashError::NotErased);
        }
        self.mem[s..e].copy_from_slice(bytes);
        Ok(())
    }
}

fn layout() -> Layout {
    Layout::split::<MemFlash>(QUEUE_FLASH_SIZE as u32, IDENTITY_SLOT)
}

/// A device's queue from its kept image, or an empty one.
pub fn open(image: Option<Vec<u8>>) -> Result<Store<MemFlash>> {
    let r = match image {
        Some(image) => Store::open(MemFlash::from_image(image), layout()),
        None => Store::format(MemFlash::erased(), layout()),
    };
    r.map_err(|e| {
        anyhow!(
            "the device's queue is unreadable: {}",
            crate::human::store_error(&e)
        )
    })
}

/// What to keep of a device's queue: its image while it holds messages, nothing once empty.
pub fn image_to_keep(store: Store<MemFlash>) -> Option<Vec<u8>> {
    (!store.is_empty()).then(|| store.into_flash().into_image())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpagent_core::guid::Guid;
    use mpagent_core::store::{Endpoint, MessageMeta};
    use mpagent_core::time::UnixTime;
    use mpagent_core::wire::header::ReplyMode;

    #[test]
    fn a_queue_reopened_from_its_image_holds_its_messages_in_order() {
        let mut store = open(None).unwrap();
        assert_eq!(image_to_keep(open(None).unwrap()), None);
        let mut scratch = [0u8; 256];
        for i in 0..3u8 {
            let meta = MessageMeta {
                message_id: Guid([i; 16]),
                endpoint: Endpoint::Relay,
                reply_mode: ReplyMode::Async,
                sent_time: UnixTime(1),
                source_id: None,
            };
            let body = move |out: &mut dyn mpagent_core::sink::Sink| out.write(&[b'a' + i; 100]);
            store.enqueue(&meta, &body, &mut scratch).unwrap();
        }
        let image = image_to_keep(store).expect("three messages are kept");
        let mut again = open(Some(image)).unwrap();
        assert_eq!(again.len(), 3);
        for i in 0..3u8 {
            let m = again.peek().unwrap().unwrap();
            assert_eq!(m.meta.message_id, Guid([i; 16]));
            again.pop(&m).unwrap();
        }
        assert_eq!(image_to_keep(again), None);
    }
}
