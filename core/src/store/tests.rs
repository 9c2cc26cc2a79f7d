//! Unit tests of the record format: round trips and malformed stored data (bad CRC, truncated
//! records, unknown versions). Power cuts at every byte are in `tests/tests/store_power_cut.rs`.
extern crate std;

use core::cell::Cell;
use std::vec::Vec;

use super::crc::crc32;
use super::format::{decode_frag, decode_meta, decode_page, Decoded, HEADER_LEN};
use super::testing::RamFlash;
use super::*;
use crate::sink::{Overflow, Sink};

type Flash = RamFlash<4096, 1, 4, 256>;
type E = StoreError<super::testing::RamFlashError>;

/// Identity slots at 0 and 512; queue 1024..4096 (12 pages of 256 bytes).
const LAYOUT: Layout = Layout {
    identity_start: 0,
    identity_slot_len: 512,
    queue_start: 1024,
    queue_len: 3072,
};
const Q: usize = 1024;
/// With a 4-byte granule: page header 0..20, first fragment header 20..40, pop word 40..44,
/// data (metadata first) from 44.
const FIRST_HDR: usize = Q + 20;
const FIRST_DATA: usize = Q + 44;

struct Pattern {
    seed: u8,
    len: usize,
}

impl Emit for Pattern {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        let bytes = self.bytes();
        for c in bytes.chunks(7) {
            out.write(c)?;
        }
        Ok(())
    }
}

impl Pattern {
    fn bytes(&self) -> Vec<u8> {
        (0..self.len)
            .map(|i| {
                self.seed
                    .wrapping_mul(31)
                    .wrapping_add((i * 7 + i / 251) as u8)
            })
            .collect()
    }
}

fn meta(n: u8) -> MessageMeta {
    MessageMeta {
        message_id: Guid([n; 16]),
        endpoint: Endpoint::Ddr,
        reply_mode: ReplyMode::Async,
        sent_time: UnixTime(1_795_428_000 + u64::from(n)),
        source_id: Some(Smsid(Guid([0xA5; 16]))),
    }
}

fn open(f: &mut Flash) -> Store<&mut Flash> {
    Store::open(f, LAYOUT).unwrap()
}

fn enqueue(s: &mut Store<&mut Flash>, n: u8, len: usize) {
    let mut scratch = [0u8; 24];
    s.enqueue(&meta(n), &Pattern { seed: n, len }, &mut scratch)
        .unwrap();
}

fn body_of(s: &mut Store<&mut Flash>, m: &QueuedMessage) -> Vec<u8> {
    struct V(Vec<u8>);
    impl Sink for V {
        fn write(&mut self, b: &[u8]) -> Result<(), Overflow> {
            self.0.extend_from_slice(b);
            Ok(())
        }
    }
    let body = s.body(m);
    let mut v = V(Vec::new());
    body.emit(&mut v).unwrap();
    assert_eq!(body.fault(), None);
    v.0
}

/// Every message in the queue, popping them: (seed, body ok).
fn drain(s: &mut Store<&mut Flash>) -> Vec<u8> {
    let mut seen = Vec::new();
    while let Some(m) = s.peek().unwrap() {
        let n = m.meta.message_id.0[0];
        assert_eq!(m.meta, meta(n));
        let b = body_of(s, &m);
        assert_eq!(
            b,
            Pattern {
                seed: n,
                len: b.len()
            }
            .bytes()
        );
        assert_eq!(b.len() as u32, m.body_len);
        s.pop(&m).unwrap();
        seen.push(n);
    }
    assert_eq!(s.len(), 0);
    seen
}

fn reseal(h: &mut [u8]) {
    let c = crc32(&h[..16]);
    h[16..20].copy_from_slice(&c.to_le_bytes());
}

const CERT: &[u8] = &[0x30; 300];
const KEY: &[u8] = &[0x42; 32];

fn ident(state: RegistrationState) -> StoredIdentity<'static> {
    StoredIdentity {
        key: KEY,
        cert_der: CERT,
        registration: state,
    }
}

#[test]
fn round_trip_identity_and_queue() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    assert!(s.is_empty());
    assert!(!s.has_identity());
    let mut buf = [0u8; 512];
    assert_eq!(s.load_identity(&mut buf).unwrap(), None);
    s.save_identity(&ident(RegistrationState::Unregistered))
        .unwrap();
    enqueue(&mut s, 1, 10);
    enqueue(&mut s, 2, 700); // spans four pages
    enqueue(&mut s, 3, 0);
    assert_eq!(s.len(), 3);
    let id = Smsid(Guid([7; 16]));
    s.save_identity(&ident(RegistrationState::Registered(id)))
        .unwrap();
    end(s);

    let mut s = open(&mut f);
    assert_eq!(s.report(), OpenReport::default());
    assert_eq!(s.len(), 3);
    let got = s.load_identity(&mut buf).unwrap().unwrap();
    assert_eq!(got, ident(RegistrationState::Registered(id)));
    assert_eq!(drain(&mut s), [1, 2, 3]);
    end(s);
    let mut s = open(&mut f);
    assert!(s.is_empty());
    assert_eq!(s.peek().unwrap(), None);
}

#[test]
fn bad_crc_in_record_data_discards_only_that_record() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    enqueue(&mut s, 1, 30);
    enqueue(&mut s, 2, 30);
    end(s);
    f.image_mut()[FIRST_DATA + 48 + 5] ^= 0x10;
    let mut s = open(&mut f);
    assert_eq!(s.report().discarded_records, 1);
    assert_eq!(drain(&mut s), [2]);
}

#[test]
fn bad_crc_in_fragment_header_ends_the_page_and_writes_move_on() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    enqueue(&mut s, 1, 30);
    enqueue(&mut s, 2, 30);
    end(s);
    f.image_mut()[FIRST_HDR + 4] ^= 0x01; // record seq of the first record
    let mut s = open(&mut f);
    assert_eq!(s.report().damaged_pages, 1);
    // Record 2 sat behind the damaged header in the same page: unreachable, so lost.
    assert_eq!(s.len(), 0);
    enqueue(&mut s, 3, 30); // must not write over anything (the flash is strict)
    end(s);
    let mut s = open(&mut f);
    assert_eq!(drain(&mut s), [3]);
}

#[test]
fn truncated_record_is_discarded() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    enqueue(&mut s, 1, 20);
    enqueue(&mut s, 2, 500); // three fragments
    end(s);
    // Cut the image after the middle of the second record: erase from there to the queue's end.
    let cut = Q + 256 + 100;
    f.image_mut()[cut..].fill(0xFF);
    let mut s = open(&mut f);
    assert_eq!(s.report().discarded_records, 1);
    assert_eq!(s.len(), 1);
    enqueue(&mut s, 3, 20);
    end(s);
    let mut s = open(&mut f);
    assert_eq!(drain(&mut s), [1, 3]);
}

#[test]
fn truncated_trailer_of_last_fragment() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    enqueue(&mut s, 1, 20);
    end(s);
    // The only record: header 20..40, pop 40..44, data 44..112 (68 bytes), trailer 112..120.
    f.image_mut()[Q + 112 + 6] = 0xFF;
    let s = open(&mut f);
    assert_eq!(s.report().discarded_records, 1);
    assert!(s.is_empty());
}

#[test]
fn unknown_page_version_is_refused() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    enqueue(&mut s, 1, 20);
    end(s);
    let h = &mut f.image_mut()[Q..Q + HEADER_LEN];
    h[4] = 2;
    reseal(h);
    assert!(matches!(
        Store::open(&mut f, LAYOUT),
        Err(E::UnknownVersion(2))
    ));
    // Formatting is the way out.
    let mut s = Store::format(&mut f, LAYOUT).unwrap();
    assert!(s.is_empty());
    enqueue(&mut s, 2, 5);
}

#[test]
fn unknown_meta_version_can_be_discarded() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    enqueue(&mut s, 1, 20);
    enqueue(&mut s, 2, 20);
    end(s);
    // Patch the metadata version and re-commit the fragment with a matching CRC.
    let img = f.image_mut();
    img[FIRST_DATA] = 7;
    let len = 48 + 20;
    let c = crc32(&img[FIRST_DATA..FIRST_DATA + len]);
    img[FIRST_DATA + len..FIRST_DATA + len + 4].copy_from_slice(&c.to_le_bytes());
    let mut s = open(&mut f);
    assert_eq!(s.report(), OpenReport::default());
    assert_eq!(s.peek(), Err(E::UnknownVersion(7)));
    assert_eq!(s.discard_head(), Ok(true));
    assert_eq!(drain(&mut s), [2]);
    assert_eq!(s.discard_head(), Ok(false));
}

#[test]
fn unknown_identity_version_then_overwrite() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    s.save_identity(&ident(RegistrationState::Unregistered))
        .unwrap();
    end(s);
    let h = &mut f.image_mut()[0..HEADER_LEN];
    h[4] = 9;
    reseal(h);
    let mut s = open(&mut f);
    let mut buf = [0u8; 512];
    assert_eq!(s.load_identity(&mut buf), Err(E::UnknownVersion(9)));
    s.save_identity(&ident(RegistrationState::Rejected(crate::time::UnixTime(
        1_764_000_000,
    ))))
    .unwrap();
    end(s);
    let mut s = open(&mut f);
    let got = s.load_identity(&mut buf).unwrap().unwrap();
    assert_eq!(
        got.registration,
        RegistrationState::Rejected(crate::time::UnixTime(1_764_000_000))
    );
}

#[test]
fn identity_bad_crc_falls_back_to_the_older_slot() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    let id = Smsid(Guid([3; 16]));
    s.save_identity(&ident(RegistrationState::Pending(id)))
        .unwrap(); // slot A
    s.save_identity(&ident(RegistrationState::Registered(id)))
        .unwrap(); // slot B
    end(s);
    f.image_mut()[512 + 20 + 100] ^= 0x80; // inside B's certificate
    let mut s = open(&mut f);
    assert_eq!(s.report().torn_identity_slots, 1);
    let mut buf = [0u8; 512];
    let got = s.load_identity(&mut buf).unwrap().unwrap();
    assert_eq!(got.registration, RegistrationState::Pending(id));
    // The next save goes over the bad slot, not over the good one.
    s.save_identity(&ident(RegistrationState::Rejected(crate::time::UnixTime(
        1_764_000_000,
    ))))
    .unwrap();
    end(s);
    f.image_mut()[20 + 100] ^= 0x80; // now damage A (the older one)
    let mut s = open(&mut f);
    let got = s.load_identity(&mut buf).unwrap().unwrap();
    assert_eq!(
        got.registration,
        RegistrationState::Rejected(crate::time::UnixTime(1_764_000_000))
    );
    end(s);
    f.image_mut()[512 + 20 + 100] ^= 0x80;
    let mut s = open(&mut f);
    assert_eq!(s.report().torn_identity_slots, 2);
    assert_eq!(s.load_identity(&mut buf).unwrap(), None);
}

#[test]
fn identity_size_limits() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    // Slot 512: header 20, trailer 8 → payload ≤ 484 = 21 + key + cert.
    let big = [0u8; 463];
    let fits = StoredIdentity {
        key: &big[..163],
        cert_der: &big[..300],
        registration: RegistrationState::Unregistered,
    };
    s.save_identity(&fits).unwrap();
    let over = StoredIdentity {
        key: &big[..164],
        ..fits
    };
    assert_eq!(s.save_identity(&over), Err(E::IdentityTooLarge));
    let mut small = [0u8; 100];
    assert_eq!(s.load_identity(&mut small), Err(E::BufferTooSmall));
    let mut buf = [0u8; 484];
    assert_eq!(s.load_identity(&mut buf).unwrap().unwrap(), fits);
}

#[test]
fn layout_is_validated() {
    let mut f = Flash::new();
    let bad = [
        Layout {
            identity_start: 10,
            ..LAYOUT
        },
        Layout {
            queue_start: 512,
            ..LAYOUT
        }, // overlaps slot B
        Layout {
            queue_len: 256,
            ..LAYOUT
        }, // one page
        Layout {
            queue_len: 4096,
            ..LAYOUT
        }, // past the end
        Layout {
            identity_slot_len: 0,
            ..LAYOUT
        },
    ];
    for l in bad {
        assert!(matches!(Store::open(&mut f, l), Err(E::Layout)), "{l:?}");
    }
    assert_eq!(
        Layout::split::<Flash>(4096, 300),
        Layout {
            identity_start: 0,
            identity_slot_len: 512,
            queue_start: 1024,
            queue_len: 3072
        }
    );
    // Unsupported geometry: granule above 32.
    let mut g = RamFlash::<4096, 64, 64, 256>::new();
    assert!(matches!(
        Store::open(&mut g, LAYOUT),
        Err(StoreError::Layout)
    ));
}

#[test]
fn scratch_smaller_than_the_granule_is_refused() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    let mut scratch = [0u8; 3];
    assert_eq!(
        s.enqueue(&meta(1), &Pattern { seed: 1, len: 9 }, &mut scratch),
        Err(E::BufferTooSmall)
    );
    let mut scratch = [0u8; 4];
    s.enqueue(&meta(1), &Pattern { seed: 1, len: 9 }, &mut scratch)
        .unwrap();
    assert_eq!(drain(&mut s), [1]);
}

#[test]
fn a_body_that_changes_between_passes_is_not_stored() {
    struct Fickle(Cell<usize>);
    impl Emit for Fickle {
        fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
            let n = self.0.get();
            self.0.set(n + 100);
            out.write(&[1u8; 400][..n.min(400)])
        }
    }
    let mut f = Flash::new();
    let mut s = open(&mut f);
    let mut scratch = [0u8; 32];
    enqueue(&mut s, 1, 5);
    for start in [0, 300] {
        assert_eq!(
            s.enqueue(&meta(9), &Fickle(Cell::new(start)), &mut scratch),
            Err(E::BodyChanged)
        );
    }
    enqueue(&mut s, 2, 5);
    assert_eq!(s.len(), 2);
    end(s);
    let mut s = open(&mut f);
    assert_eq!(s.report().discarded_records, 2);
    assert_eq!(drain(&mut s), [1, 2]);
}

#[test]
fn pop_checks_the_head_and_stale_bodies_are_detected() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    enqueue(&mut s, 1, 100);
    enqueue(&mut s, 2, 100);
    let first = s.peek().unwrap().unwrap();
    s.pop(&first).unwrap();
    assert_eq!(s.pop(&first), Err(E::NotHead));
    // Refill the ring until page 0 (the popped record's page) is erased and reused.
    let second = s.peek().unwrap().unwrap();
    s.pop(&second).unwrap();
    for n in 3..40 {
        enqueue(&mut s, n, 150);
        let m = s.peek().unwrap().unwrap();
        s.pop(&m).unwrap();
    }
    let body = s.body(&first);
    let mut sink = crate::sink::CountingSink::default();
    assert_eq!(body.emit(&mut sink), Err(Overflow));
    assert_eq!(body.fault(), Some(BodyFault::Corrupt));
}

#[test]
fn queue_full_and_too_large() {
    let mut f = Flash::new();
    let mut s = open(&mut f);
    let max = s.max_body_len() as usize;
    let mut scratch = [0u8; 64];
    assert_eq!(
        s.enqueue(
            &meta(1),
            &Pattern {
                seed: 1,
                len: max + 1
            },
            &mut scratch
        ),
        Err(E::TooLarge)
    );
    s.enqueue(&meta(1), &Pattern { seed: 1, len: max }, &mut scratch)
        .unwrap();
    // Small messages until the ring is full: refused, nothing dropped.
    let mut n = 2u8;
    loop {
        match s.enqueue(&meta(n), &Pattern { seed: n, len: 50 }, &mut scratch) {
            Ok(()) => n += 1,
            Err(e) => {
                assert_eq!(e, E::QueueFull);
                break;
            }
        }
    }
    assert!(n > 2);
    assert_eq!(s.len(), u32::from(n) - 1);
    assert_eq!(drain(&mut s), (1..n).collect::<Vec<_>>());
    s.enqueue(&meta(99), &Pattern { seed: 99, len: max }, &mut scratch)
        .unwrap();
    assert_eq!(drain(&mut s), [99]);
}

#[test]
fn header_decoders_classify_garbage() {
    let erased = [0xFFu8; HEADER_LEN];
    assert_eq!(decode_page(&erased), Decoded::Erased);
    assert_eq!(decode_frag(&erased), Decoded::Erased);
    let zeros = [0u8; HEADER_LEN];
    assert_eq!(decode_page(&zeros), Decoded::Invalid);
    assert_eq!(decode_frag(&zeros), Decoded::Invalid);
    assert!(decode_meta(&[0u8; META_LEN]).is_err());
    let mut m = super::format::encode_meta(&meta(4), 77);
    assert_eq!(decode_meta(&m), Ok((meta(4), 77)));
    m[1] = 200; // unknown endpoint id
    assert!(decode_meta(&m).is_err());
}

#[test]
fn endpoints_map_to_names() {
    for code in 0..=255u8 {
        if let Some(e) = Endpoint::from_code(code) {
            assert_eq!(e.code(), code);
            assert_eq!(Endpoint::from_name(e.name()), Some(e));
        }
    }
    assert_eq!(Endpoint::from_name("MP_HinvEndpoint"), Some(Endpoint::Hinv));
}

/// End a borrow of the flash (a store or a body) here: the "power off" before a reopen.
fn end<T>(_: T) {}

/// A flash whose reads fail once `reads_left` runs out (a bus error, not a power cut).
struct Flaky<'a> {
    inner: &'a mut Flash,
    reads_left: &'a Cell<Option<u32>>,
}

impl embedded_storage::nor_flash::ErrorType for Flaky<'_> {
    type Error = super::testing::RamFlashError;
}

impl embedded_storage::nor_flash::ReadNorFlash for Flaky<'_> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        match self.reads_left.get() {
            Some(0) => return Err(super::testing::RamFlashError::OutOfBounds),
            Some(n) => self.reads_left.set(Some(n - 1)),
            None => {}
        }
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        embedded_storage::nor_flash::ReadNorFlash::capacity(&*self.inner)
    }
}

impl NorFlash for Flaky<'_> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 256;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.inner.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.inner.write(offset, bytes)
    }
}

#[test]
fn a_pop_cut_short_by_read_errors_completes_on_retry() {
    for budget in 0..40u32 {
        let mut f = Flash::new();
        let mut s = open(&mut f);
        enqueue(&mut s, 1, 300);
        enqueue(&mut s, 2, 300);
        enqueue(&mut s, 3, 10);
        end(s);
        let reads = Cell::new(None);
        let mut s = Store::open(
            Flaky {
                inner: &mut f,
                reads_left: &reads,
            },
            LAYOUT,
        )
        .unwrap();
        let m = s.peek().unwrap().unwrap();
        reads.set(Some(budget));
        let first = s.pop(&m);
        reads.set(None);
        if first.is_err() {
            // Either the pop word was not written (the retry pops) or it was and only the search
            // for the next head failed (the retry finds 1 gone: NotHead).
            match s.pop(&m) {
                Ok(()) | Err(StoreError::NotHead) => {}
                Err(e) => panic!("budget {budget}: {e:?}"),
            }
        }
        let mut rest = Vec::new();
        while let Some(m) = s.peek().unwrap() {
            rest.push(m.meta.message_id.0[0]);
            s.pop(&m).unwrap();
        }
        assert_eq!(rest, [2, 3], "budget {budget}");
        end(s);
        assert!(open(&mut f).is_empty());
    }
}

#[test]
fn a_withdrawn_record_is_skipped_now_and_after_reopening() {
    let mut f = Flash::default();
    let mut s = Store::format(&mut f, LAYOUT).unwrap();
    let mut scratch = [0u8; 24];
    let a = s
        .enqueue_tracked(&meta(1), &Pattern { seed: 1, len: 300 }, &mut scratch)
        .unwrap();
    let b = s
        .enqueue_tracked(&meta(2), &Pattern { seed: 2, len: 40 }, &mut scratch)
        .unwrap();
    let c = s
        .enqueue_tracked(&meta(3), &Pattern { seed: 3, len: 500 }, &mut scratch)
        .unwrap();
    assert_eq!(b.meta, meta(2));
    assert!(!a.is_same_record(&b));
    // The middle record goes; withdrawing it again finds nothing.
    assert!(s.withdraw(&b).unwrap());
    assert!(!s.withdraw(&b).unwrap());
    assert_eq!(s.len(), 2);
    let _ = s;
    let mut s = open(&mut f);
    assert_eq!(s.len(), 2);
    let head = s.peek().unwrap().unwrap();
    assert_eq!(head.meta, meta(1));
    assert!(head.is_same_record(&a));
    assert_eq!(
        body_of(&mut s, &head),
        Pattern { seed: 1, len: 300 }.bytes()
    );
    s.pop(&head).unwrap();
    // The head passes the withdrawn record straight to the third.
    let next = s.peek().unwrap().unwrap();
    assert_eq!(next.meta, meta(3));
    assert_eq!(
        body_of(&mut s, &next),
        Pattern { seed: 3, len: 500 }.bytes()
    );
    // A delivered record cannot be withdrawn; nor a record whose page was reused since.
    assert!(!s.withdraw(&a).unwrap());
    // Withdrawing the head is a pop.
    assert!(s.withdraw(&c).unwrap());
    assert!(s.is_empty());
    assert_eq!(s.peek().unwrap(), None);
    for n in 10..40u8 {
        if s.enqueue(&meta(n), &Pattern { seed: n, len: 200 }, &mut scratch)
            .is_err()
        {
            let h = s.peek().unwrap().unwrap();
            s.pop(&h).unwrap();
        }
    }
    assert!(!s.withdraw(&b).unwrap());
    assert!(!s.withdraw(&a).unwrap());
}
