//! Where this board keeps policy bodies: one RAM buffer holding the latest body kept (nothing
//! on this board consumes policy yet). A body arrives into the rest of the buffer's room only as
//! far as it fits; a body longer than the buffer, or one that fails its hash check, is not kept,
//! so the policy is not acknowledged and is fetched again at the next poll.

use defmt::info;
use mpagent_core::sink::Overflow;
use mpagent_firmware_common::exchange::PolicyBodies;

/// Longest policy body kept.
pub const MAX_POLICY_BODY: usize = 4096;

/// The latest policy body.
pub struct PolicyRam {
    /// The body's bytes (the first `len`).
    pub buf: &'static mut [u8; MAX_POLICY_BODY],
    /// Bytes of the latest complete body (0: none yet).
    pub len: usize,
    /// Bytes of the body arriving now.
    pub writing: usize,
}

impl PolicyBodies for PolicyRam {
    fn start(&mut self) -> bool {
        // The buffer is about to be overwritten: no body is kept until this one is.
        self.len = 0;
        self.writing = 0;
        true
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let end = self.writing.checked_add(bytes.len()).ok_or(Overflow)?;
        self.buf
            .get_mut(self.writing..end)
            .ok_or(Overflow)?
            .copy_from_slice(bytes);
        self.writing = end;
        Ok(())
    }

    fn finish(&mut self, len: usize, keep: bool) -> bool {
        if !keep || len != self.writing {
            return false;
        }
        self.len = len;
        info!("policy body kept in RAM: {=usize} bytes", len);
        true
    }
}
