//! Shared fixtures of the store tests: deterministic bodies, metadata, identities.
#![allow(dead_code)]

use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::{Endpoint, MessageMeta, QueuedMessage, Store, StoredIdentity};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::header::ReplyMode;

/// A body of `len` bytes derived from `seed`, emitted in odd-sized chunks.
pub struct Pattern {
    pub seed: u32,
    pub len: usize,
}

impl Pattern {
    pub fn bytes(&self) -> Vec<u8> {
        let s = self.seed.wrapping_mul(2_654_435_761);
        (0..self.len)
            .map(|i| (s.rotate_left((i % 32) as u32) as u8) ^ (i as u8).wrapping_mul(13))
            .collect()
    }
}

impl Emit for Pattern {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        for c in self.bytes().chunks(13) {
            out.write(c)?;
        }
        Ok(())
    }
}

/// The metadata message `n` is stored with.
pub fn meta(n: u32) -> MessageMeta {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_le_bytes());
    id[15] = 0x4D;
    let endpoints = [
        Endpoint::Ddr,
        Endpoint::Hinv,
        Endpoint::Status,
        Endpoint::Relay,
    ];
    MessageMeta {
        message_id: Guid(id),
        endpoint: endpoints[n as usize % endpoints.len()],
        reply_mode: if n.is_multiple_of(3) {
            ReplyMode::Sync
        } else {
            ReplyMode::Async
        },
        sent_time: UnixTime(1_795_428_000 + u64::from(n)),
        source_id: (n % 4 != 1).then_some(Smsid(Guid([n as u8; 16]))),
    }
}

/// Which message a queued record is.
pub fn number(m: &QueuedMessage) -> u32 {
    u32::from_le_bytes(m.meta.message_id.0[..4].try_into().unwrap())
}

/// Collects emitted bytes.
pub struct VecSink(pub Vec<u8>);

impl Sink for VecSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The body of `m` as stored.
pub fn body_of<F: NorFlash>(s: &mut Store<F>, m: &QueuedMessage) -> Vec<u8> {
    let body = s.body(m);
    let mut v = VecSink(Vec::new());
    body.emit(&mut v)
        .unwrap_or_else(|_| panic!("stored body: {:?}", body.fault()));
    v.0
}

/// Check the head is message `n` of `len` bytes, intact.
pub fn check_message<F: NorFlash>(
    s: &mut Store<F>,
    m: &QueuedMessage,
    len_of: impl Fn(u32) -> usize,
) {
    let n = number(m);
    assert_eq!(m.meta, meta(n), "metadata of message {n}");
    let b = body_of(s, m);
    assert_eq!(b.len(), len_of(n), "length of message {n}");
    assert!(
        b == Pattern {
            seed: n,
            len: len_of(n)
        }
        .bytes(),
        "body of message {n} differs"
    );
}

pub const KEY_1: [u8; 32] = [0x11; 32];
pub const KEY_2: [u8; 138] = [0x22; 138];
pub const CERT_1: [u8; 301] = [0x30; 301];
pub const CERT_2: [u8; 333] = [0x31; 333];

/// Identity versions the scripts store.
pub fn identity(version: u8) -> StoredIdentity<'static> {
    let smsid = Smsid(Guid([0xC0 | version; 16]));
    match version {
        1 => StoredIdentity {
            key: &KEY_1,
            cert_der: &CERT_1,
            registration: RegistrationState::Unregistered,
        },
        2 => StoredIdentity {
            key: &KEY_1,
            cert_der: &CERT_1,
            registration: RegistrationState::Pending(smsid),
        },
        3 => StoredIdentity {
            key: &KEY_2,
            cert_der: &CERT_2,
            registration: RegistrationState::Registered(smsid),
        },
        _ => StoredIdentity {
            key: &KEY_2,
            cert_der: &CERT_1,
            registration: RegistrationState::Registered(smsid),
        },
    }
}

/// Which identity version `id` is (panics on anything else: a corrupt identity).
pub fn version_of(id: &StoredIdentity<'_>) -> u8 {
    (1..=4)
        .find(|&v| identity(v) == *id)
        .unwrap_or_else(|| panic!("identity matches no version written: {id:?}"))
}

/// End a borrow of the flash (a store or a body) here: the "power off" before a reopen.
pub fn end<T>(_: T) {}
