//! Where this board keeps policy bodies: one RAM buffer holding the latest body fetched (nothing
//! on this board consumes policy yet; a body longer than the buffer fails the fetch, so the
//! policy is not acknowledged and is fetched again at the next poll).

use defmt::info;
use mpagent_core::sink::{Overflow, Sink};
use mpagent_firmware_common::exchange::PolicyBodies;

/// Longest policy body kept.
pub const MAX_POLICY_BODY: usize = 4096;

/// The latest policy body.
pub struct PolicyRam {
    /// The body's bytes (the first `len`).
    pub buf: &'static mut [u8; MAX_POLICY_BODY],
    /// Bytes of the latest complete body (0: none yet).
    pub len: usize,
}

impl PolicyBodies for PolicyRam {
    type Body<'a> = RamSink<'a>;

    fn begin(&mut self, _index: usize) -> Option<RamSink<'_>> {
        self.len = 0; // the buffer is about to be overwritten
        Some(RamSink {
            buf: &mut self.buf[..],
            at: 0,
        })
    }

    fn keep(&mut self, index: usize, len: usize) -> bool {
        self.len = len;
        info!(
            "policy body {=usize} kept in RAM: {=usize} bytes",
            index, len
        );
        len <= self.buf.len()
    }
}

/// Streams a policy body into the RAM buffer.
pub struct RamSink<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Sink for RamSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let end = self.at.checked_add(bytes.len()).ok_or(Overflow)?;
        self.buf
            .get_mut(self.at..end)
            .ok_or(Overflow)?
            .copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }
}
