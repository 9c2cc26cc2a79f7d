//! Persistent storage that survives power loss at any byte: the outbound **store-and-forward
//! queue** and the **identity record**, over a blocking [`NorFlash`] (the `embedded-storage`
//! seam; re-exported as [`embedded_storage`] so boards and the host use the same version).
//!
//! # Use
//! ```text
//! let mut store = Store::open(flash, Layout::split::<F>(capacity, 4096))?;
//! store.enqueue(&meta, &body, &mut scratch)?;          // while the MP is unreachable
//! while let Some(msg) = store.peek()? {                // when it is back
//!     let body = store.body(&msg);                     // an Emit that reads from flash
//!     let post = Post::new(&config, params_from(&msg.meta), &body)?;
//!     /* send; on HTTP 200: */ drop(body); store.pop(&msg)?;
//! }
//! ```
//! A message is popped only after the MP acknowledged it, so a power cut between send and pop
//! sends it again with the **same message ID** (at-least-once; the MP de-duplicates by ID).
//! Nothing is dropped silently: a full queue refuses with [`StoreError::QueueFull`].
//!
//! # Why not `sequential-storage`
//! sequential-storage 8.0.2 (no_std, no alloc, power-fail-safe queue and map) was the first
//! candidate and was read in full. It does not fit the queue: an item must fit in one flash page
//! (`ItemTooBig` beyond `ERASE_SIZE` − header, and `u16` lengths), so a 64 kB inventory cannot be
//! one item; `push` takes the whole item as one slice and `peek`/`pop` copy the whole item into
//! a caller buffer (a full-message RAM buffer, which the core must never need); and its API is
//! async-only (`embedded-storage-async`), while [`Emit`] is synchronous, so a stored body could
//! not be streamed into a send pass. Its map would hold the identity, but a second format and
//! trait for one record is not worth it. Hence the small log-structured format below, over the
//! blocking `embedded_storage::nor_flash::NorFlash` trait (async HALs — embassy's flash drivers —
//! also implement the blocking one).
//!
//! # Format (version 1; all integers little-endian)
//! `g` = max(`READ_SIZE`, `WRITE_SIZE`, 4) (a power of two ≤ 32): every header, data run and
//! trailer starts on a multiple of `g` and is padded to it with 0xFF. Every flash word is written
//! **at most once** between erases (flashes with ECC that forbid rewriting a word are fine).
//! Headers are 16 bytes of fields + CRC-32 (IEEE) of those 16 bytes; trailers are CRC-32 of the
//! data + the commit marker `DONE`. An all-0xFF header means "nothing written here".
//!
//! **Queue region**: a ring of pages (erase blocks). Each page used starts with a page header
//! `MPQP`, version, page sequence number (+1 per page opened), and the next record sequence
//! number at opening. Then fragments, back to back:
//! ```text
//! header   "QF", flags (FIRST|LAST), 0, record seq u32, fragment index u32, data len u32, CRC
//! pop word g bytes, first fragments only: 0xFF = queued, written to 0x00 when popped
//! data     len bytes (the record stream), 0xFF padding to g
//! trailer  CRC-32 of the data, "DONE"        ← written last: the fragment's commit
//! ```
//! A record is the stream `metadata (48 B) ‖ body` cut into fragments: the first fragment (holding
//! at least the whole metadata) goes where the log ends, continuation fragments start their page.
//! A record exists only when all its fragments — index 0, 1, … up to the one flagged LAST, with
//! one record seq — are complete. Metadata: version, endpoint id, reply mode (0 Sync, 1 ASync),
//! flags (bit 0: has SMSID), message ID (16), SentTime (Unix seconds u64), SMSID (16), body
//! length u32.
//!
//! Recovery (at [`Store::open`]): read the page headers; the newest page (highest page seq) and
//! the pages before it with consecutive seqs form the log; scan it, checking every CRC. A torn
//! fragment (no valid trailer) discards its record; a torn header ends its page (the next write
//! opens a new page); a record whose pop word is written is gone. The head is the first complete
//! record not popped. Pages are erased only when the log needs them and no unpopped record lies
//! in them, so an acknowledged message's data is never touched before its pop.
//!
//! **Identity region**: two slots (A, B) of equal size, each holding one record: header `MPID`,
//! version, seq, payload length; payload = registration state tag (0 unregistered, 1 pending,
//! 2 registered, 3 rejected), SMSID (16), key length u16, key, certificate length u16,
//! certificate DER; trailer. A save erases and writes the slot that does *not* hold the current
//! record, with seq + 1; the valid slot with the highest seq wins. A torn save leaves the old
//! identity current.
//!
//! # RAM (thumbv7em, `opt-level = "s"`, measured from the frames in the disassembly)
//! [`Store`] is 136 bytes plus the flash driver; a [`QueuedMessage`] 64 bytes; a [`StoredBody`]
//! 44 bytes. No operation needs a message-sized buffer:
//! - `enqueue` streams the body through the caller's `scratch` (any size ≥ the granule; larger
//!   means fewer, longer flash writes) with ≈ 450 bytes of stack of its own (plus the body's
//!   `Emit`, which runs twice: count, then write);
//! - `peek` reads the 48-byte metadata; a [`StoredBody`] pass reads 128 bytes at a time
//!   (≈ 350 bytes of stack besides the sink);
//! - `open` and the scan after a `pop` peak at ≈ 900 bytes of stack (CRC checks in 128-byte
//!   chunks); `save_identity` ≈ 350 bytes; `load_identity` copies the payload (key +
//!   certificate + [`IDENTITY_OVERHEAD`] bytes) into the caller's buffer.
//!
//! Code: ≈ 7 KB of `.text` for the whole store at `opt-level = "s"`.

mod crc;
mod flash;
mod format;
mod identity;
mod queue;
pub mod testing;
#[cfg(test)]
mod tests;

pub use embedded_storage;
use embedded_storage::nor_flash::NorFlash;

pub use self::format::{FORMAT_VERSION, IDENTITY_OVERHEAD, MAX_GRANULE, META_LEN, META_VERSION};
pub use self::queue::{BodyFault, QueuedMessage, StoredBody};

use self::format::Geometry;
use self::identity::Ident;
use self::queue::{Queue, Ring};
use crate::agent::registration::RegistrationState;
use crate::guid::{Guid, Smsid};
use crate::sink::Emit;
use crate::time::UnixTime;
use crate::wire::header::{endpoint, ReplyMode};

/// A store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StoreError<E> {
    /// The flash failed (or, in tests, lost power).
    Flash(E),
    /// The flash geometry or the [`Layout`] is unsupported (misaligned, too small, overlapping).
    Layout,
    /// The queue has no room for this message now; pop (deliver) some first.
    QueueFull,
    /// The message is larger than the queue region could ever hold
    /// (see [`Store::max_body_len`]).
    TooLarge,
    /// `pop` was given a message that is not the queue's head (or the queue is empty).
    NotHead,
    /// The caller's buffer is too small (scratch below the granule, identity buffer below the
    /// stored payload).
    BufferTooSmall,
    /// The body's `Emit` produced different bytes in its two passes, or failed.
    BodyChanged,
    /// The identity does not fit its slot.
    IdentityTooLarge,
    /// Data of a format version this code does not know (written by newer firmware).
    UnknownVersion(u8),
    /// Stored data failed its checks when read (it was valid when the store was opened).
    Corrupt,
    /// A sequence number would wrap (after 2³² pages, records or identity saves).
    Exhausted,
}

/// Target endpoints a queued message can name (stored as a one-byte id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Endpoint {
    /// [`endpoint::CLIENT_REGISTRATION`] (id 1)
    ClientRegistration,
    /// [`endpoint::DDR`] (id 2)
    Ddr,
    /// [`endpoint::HINV`] (id 3)
    Hinv,
    /// [`endpoint::POLICY`] (id 4)
    Policy,
    /// [`endpoint::STATUS`] (id 5)
    Status,
    /// [`endpoint::RELAY`] (id 6)
    Relay,
}

impl Endpoint {
    const ALL: [Endpoint; 6] = [
        Endpoint::ClientRegistration,
        Endpoint::Ddr,
        Endpoint::Hinv,
        Endpoint::Policy,
        Endpoint::Status,
        Endpoint::Relay,
    ];

    /// The endpoint name that goes into `<TargetEndpoint>`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ClientRegistration => endpoint::CLIENT_REGISTRATION,
            Endpoint::Ddr => endpoint::DDR,
            Endpoint::Hinv => endpoint::HINV,
            Endpoint::Policy => endpoint::POLICY,
            Endpoint::Status => endpoint::STATUS,
            Endpoint::Relay => endpoint::RELAY,
        }
    }

    /// The endpoint with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The stored id (stable: a new endpoint gets a new id).
    pub fn code(self) -> u8 {
        match self {
            Endpoint::ClientRegistration => 1,
            Endpoint::Ddr => 2,
            Endpoint::Hinv => 3,
            Endpoint::Policy => 4,
            Endpoint::Status => 5,
            Endpoint::Relay => 6,
        }
    }

    /// The endpoint with this stored id.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// The header fields a queued message keeps, so every retry sends the same `<Msg>` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MessageMeta {
    /// The message ID (the MP de-duplicates retries by it).
    pub message_id: Guid,
    /// Target endpoint.
    pub endpoint: Endpoint,
    /// Sync or ASync.
    pub reply_mode: ReplyMode,
    /// `SentTime` of the original attempt.
    pub sent_time: UnixTime,
    /// The SMSID the message names (`SourceID`), if any.
    pub source_id: Option<Smsid>,
}

/// The identity record: key material, certificate and registration state (with the SMSID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredIdentity<'a> {
    /// Key material, in whatever encoding the caller chose (≤ 65535 bytes).
    pub key: &'a [u8],
    /// The certificate (DER, ≤ 65535 bytes).
    pub cert_der: &'a [u8],
    /// Registration state and SMSID.
    pub registration: RegistrationState,
}

/// Where the identity slots and the queue live in the flash (byte offsets, erase-block aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layout {
    /// Start of identity slot A; slot B follows it.
    pub identity_start: u32,
    /// Bytes per identity slot (a multiple of the erase size).
    pub identity_slot_len: u32,
    /// Start of the queue ring.
    pub queue_start: u32,
    /// Bytes of the queue ring (a multiple of the erase size, at least two pages).
    pub queue_len: u32,
}

impl Layout {
    /// Identity slots of `identity_slot_len` bytes (rounded up to erase blocks) at offset 0, the
    /// queue in the rest of `capacity` (rounded down to erase blocks).
    pub fn split<F: NorFlash>(capacity: u32, identity_slot_len: u32) -> Self {
        let e = u32::try_from(F::ERASE_SIZE).unwrap_or(u32::MAX).max(1);
        let slot = identity_slot_len.div_ceil(e).saturating_mul(e);
        let queue_start = slot.saturating_mul(2);
        Self {
            identity_start: 0,
            identity_slot_len: slot,
            queue_start,
            queue_len: (capacity / e).saturating_mul(e).saturating_sub(queue_start),
        }
    }

    fn check(&self, geo: Geometry, capacity: usize) -> Option<()> {
        let e = geo.e;
        let aligned = |v: u32| v.is_multiple_of(e);
        let ok = aligned(self.identity_start)
            && aligned(self.identity_slot_len)
            && aligned(self.queue_start)
            && aligned(self.queue_len)
            && self
                .queue_len
                .checked_div(e)
                .is_some_and(|pages| pages >= 2)
            && Ident::slot_ok(geo, self.identity_slot_len);
        if !ok {
            return None;
        }
        let id_end = self
            .identity_start
            .checked_add(self.identity_slot_len.checked_mul(2)?)?;
        let q_end = self.queue_start.checked_add(self.queue_len)?;
        let apart = id_end <= self.queue_start || q_end <= self.identity_start;
        let fits = usize::try_from(id_end.max(q_end)).ok()? <= capacity;
        (apart && fits).then_some(())
    }
}

/// What [`Store::open`] found and repaired around.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OpenReport {
    /// Records that were never completed (a write cut by power loss) or failed their CRC.
    pub discarded_records: u32,
    /// Page headers or fragment headers that were torn or corrupt.
    pub damaged_pages: u32,
    /// Identity slots holding a torn or corrupt record (the other slot was used).
    pub torn_identity_slots: u32,
}

/// The persistent store: identity slots and the outbound queue over one flash.
///
/// Pass `&mut flash` as `F` to keep ownership of the flash (`NorFlash` is implemented for
/// `&mut T`).
pub struct Store<F: NorFlash> {
    flash: F,
    layout: Layout,
    ident: Ident,
    queue: Queue,
    report: OpenReport,
}

impl<F: NorFlash> Store<F> {
    /// Open the store: validate the layout, recover the identity and the queue from flash.
    /// Reads every stored byte once (CRC checks); writes nothing.
    pub fn open(mut flash: F, layout: Layout) -> Result<Self, StoreError<F::Error>> {
        let geo =
            Geometry::new(F::READ_SIZE, F::WRITE_SIZE, F::ERASE_SIZE).ok_or(StoreError::Layout)?;
        layout
            .check(geo, flash.capacity())
            .ok_or(StoreError::Layout)?;
        let mut report = OpenReport::default();
        let ident = Ident::open(
            &mut flash,
            geo,
            layout.identity_start,
            layout.identity_slot_len,
            &mut report,
        )?;
        let ring = Ring {
            base: layout.queue_start,
            pages: layout.queue_len / geo.e,
            geo,
        };
        let queue = Queue::open(&mut flash, ring, &mut report)?;
        if report != OpenReport::default() {
            warn!(
                "store: {} records discarded, {} damaged headers, {} torn identity slots",
                report.discarded_records, report.damaged_pages, report.torn_identity_slots
            );
        }
        Ok(Self {
            flash,
            layout,
            ident,
            queue,
            report,
        })
    }

    /// Erase both regions (identity and queue) and open the empty store.
    pub fn format(mut flash: F, layout: Layout) -> Result<Self, StoreError<F::Error>> {
        let geo =
            Geometry::new(F::READ_SIZE, F::WRITE_SIZE, F::ERASE_SIZE).ok_or(StoreError::Layout)?;
        layout
            .check(geo, flash.capacity())
            .ok_or(StoreError::Layout)?;
        let id_end = layout.identity_start + 2 * layout.identity_slot_len;
        let q_end = layout.queue_start + layout.queue_len;
        for (from, to) in [(layout.identity_start, id_end), (layout.queue_start, q_end)] {
            flash.erase(from, to).map_err(StoreError::Flash)?;
        }
        Self::open(flash, layout)
    }

    /// Give the flash back.
    pub fn into_flash(self) -> F {
        self.flash
    }

    /// The layout in use.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// What opening found.
    pub fn report(&self) -> OpenReport {
        self.report
    }

    // --- identity -------------------------------------------------------------------------

    /// Whether an identity record is stored.
    pub fn has_identity(&self) -> bool {
        self.ident.exists()
    }

    /// Read the identity into `buf` (at least key + certificate + [`IDENTITY_OVERHEAD`] bytes);
    /// `None` if none was ever saved.
    pub fn load_identity<'b>(
        &mut self,
        buf: &'b mut [u8],
    ) -> Result<Option<StoredIdentity<'b>>, StoreError<F::Error>> {
        self.ident.load(&mut self.flash, buf)
    }

    /// Replace the identity. Until this returns `Ok`, a power cut leaves the previous identity
    /// (or, on first save, none); after, the new one.
    pub fn save_identity(&mut self, id: &StoredIdentity<'_>) -> Result<(), StoreError<F::Error>> {
        self.ident.save(&mut self.flash, id)
    }

    // --- queue ----------------------------------------------------------------------------

    /// Append a message. The body is emitted twice (its length, then into flash through
    /// `scratch`); when this returns `Ok` the message survives any power cut.
    pub fn enqueue(
        &mut self,
        meta: &MessageMeta,
        body: &dyn Emit,
        scratch: &mut [u8],
    ) -> Result<(), StoreError<F::Error>> {
        self.queue
            .enqueue(&mut self.flash, meta, body, scratch)
            .map(|_| ())
    }

    /// [`Store::enqueue`], answering the record it made, so that a newer message of the same
    /// kind can [`Store::withdraw`] it later while it is still unsent.
    pub fn enqueue_tracked(
        &mut self,
        meta: &MessageMeta,
        body: &dyn Emit,
        scratch: &mut [u8],
    ) -> Result<QueuedMessage, StoreError<F::Error>> {
        self.queue.enqueue(&mut self.flash, meta, body, scratch)
    }

    /// Remove `msg` from wherever it sits in the queue (a newer report superseded it): `true` if
    /// it was still queued, `false` if it was delivered already. A power cut during the call
    /// leaves it either queued or withdrawn.
    pub fn withdraw(&mut self, msg: &QueuedMessage) -> Result<bool, StoreError<F::Error>> {
        self.queue.withdraw(&mut self.flash, msg)
    }

    /// The oldest message, if any (it stays queued until [`Store::pop`]).
    pub fn peek(&mut self) -> Result<Option<QueuedMessage>, StoreError<F::Error>> {
        self.queue.peek(&mut self.flash)
    }

    /// The body of `msg`, streamed from flash whenever it is emitted.
    pub fn body(&mut self, msg: &QueuedMessage) -> StoredBody<'_, F> {
        self.queue.body(&mut self.flash, msg)
    }

    /// Remove `msg`, which must be the head, once the MP acknowledged it.
    pub fn pop(&mut self, msg: &QueuedMessage) -> Result<(), StoreError<F::Error>> {
        self.queue
            .pop(&mut self.flash, Some(msg.pos_seq()))
            .map(|_| ())
    }

    /// Remove the head whatever it is (e.g. a record [`Store::peek`] cannot read);
    /// `false` if the queue was empty.
    pub fn discard_head(&mut self) -> Result<bool, StoreError<F::Error>> {
        self.queue.pop(&mut self.flash, None)
    }

    /// Messages queued.
    pub fn len(&self) -> u32 {
        self.queue.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.queue.len() == 0
    }

    /// The largest body an empty queue accepts.
    pub fn max_body_len(&self) -> u32 {
        self.queue.max_body_len()
    }
}
