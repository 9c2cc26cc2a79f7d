//! The outbound queue beyond the scripted power-cut test: full queue, wrapping the ring many
//! times, random operation sequences with random power cuts, and a 64 kB-class message
//! streamed from flash through a small window on the host's geometry.

mod store_common;

use std::collections::VecDeque;

use mpagent_core::sink::{emitted_len, sha256_of, Emit, WindowSink};
use mpagent_core::store::testing::{FaultError, FaultFlash, RamFlash};
use mpagent_core::store::{Layout, Store, StoreError};
use store_common::*;

type Small = RamFlash<4096, 1, 4, 256>;
/// Identity 2 x 1 KiB, queue 8 pages of 256 bytes.
const SMALL: Layout = Layout {
    identity_start: 0,
    identity_slot_len: 1024,
    queue_start: 2048,
    queue_len: 2048,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn len_of(n: u32) -> usize {
    // Sizes from tiny to several pages, fixed per message number.
    let x = n.wrapping_mul(2_654_435_761);
    match x % 5 {
        0 => (x as usize >> 8) % 8,
        1 | 2 => (x as usize >> 8) % 200,
        3 => (x as usize >> 8) % 600,
        _ => (x as usize >> 8) % 1100,
    }
}

fn enqueue<F: mpagent_core::store::embedded_storage::nor_flash::NorFlash>(
    s: &mut Store<F>,
    n: u32,
) -> Result<(), StoreError<F::Error>> {
    let mut scratch = [0u8; 36];
    s.enqueue(
        &meta(n),
        &Pattern {
            seed: n,
            len: len_of(n),
        },
        &mut scratch,
    )
}

#[test]
fn queue_full_refuses_and_drops_nothing() {
    let mut ram = Box::new(Small::new());
    let mut s = Store::open(&mut *ram, SMALL).unwrap();
    let mut scratch = [0u8; 64];
    let mut accepted = Vec::new();
    let mut n = 0u32;
    loop {
        n += 1;
        let body = Pattern { seed: n, len: 150 };
        match s.enqueue(&meta(n), &body, &mut scratch) {
            Ok(()) => accepted.push(n),
            Err(StoreError::QueueFull) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    // Seven of the eight pages can hold records (the eighth is the ring's slack).
    assert!(accepted.len() >= 7, "{accepted:?}");
    assert_eq!(s.len() as usize, accepted.len());
    // Still full after a reboot, and nothing lost.
    end(s);
    let mut s = Store::open(&mut *ram, SMALL).unwrap();
    assert_eq!(s.len() as usize, accepted.len());
    let big = Pattern { seed: 0, len: 150 };
    assert_eq!(
        s.enqueue(&meta(999), &big, &mut scratch),
        Err(StoreError::QueueFull)
    );
    // Too large is a different answer from full.
    let max = s.max_body_len() as usize;
    let huge = Pattern {
        seed: 0,
        len: max + 1,
    };
    assert_eq!(
        s.enqueue(&meta(998), &huge, &mut scratch),
        Err(StoreError::TooLarge)
    );
    // Deliver two: room again.
    for _ in 0..2 {
        let m = s.peek().unwrap().unwrap();
        assert_eq!(number(&m), accepted.remove(0));
        s.pop(&m).unwrap();
    }
    let body = Pattern { seed: n, len: 150 };
    s.enqueue(&meta(n), &body, &mut scratch).unwrap();
    accepted.push(n);
    let mut got = Vec::new();
    while let Some(m) = s.peek().unwrap() {
        check_message(&mut s, &m, |_| 150);
        got.push(number(&m));
        s.pop(&m).unwrap();
    }
    assert_eq!(got, accepted);
    // An empty queue takes the largest body.
    let body = Pattern { seed: 7, len: max };
    s.enqueue(&meta(7), &body, &mut scratch).unwrap();
    let m = s.peek().unwrap().unwrap();
    check_message(&mut s, &m, |_| max);
}

#[test]
fn wraps_the_ring_many_times() {
    let mut ram = Box::new(Small::new());
    let mut model: VecDeque<u32> = VecDeque::new();
    let mut rng = Rng(0xDEAD_BEEF_1234_5678);
    let mut next = 1u32;
    let mut s = Store::open(&mut *ram, SMALL).unwrap();
    let (mut full, mut ops) = (0u32, 0u32);
    for step in 0..6000u32 {
        if rng.below(100) < 55 {
            match enqueue(&mut s, next) {
                Ok(()) => model.push_back(next),
                Err(StoreError::QueueFull) => full += 1,
                Err(StoreError::TooLarge) => {}
                Err(e) => panic!("{e:?}"),
            }
            next += 1;
        } else if let Some(m) = s.peek().unwrap() {
            assert_eq!(Some(number(&m)), model.pop_front());
            check_message(&mut s, &m, len_of);
            s.pop(&m).unwrap();
        } else {
            assert!(model.is_empty());
        }
        ops += 1;
        assert_eq!(s.len() as usize, model.len());
        if step % 41 == 40 {
            end(s);
            s = Store::open(&mut *ram, SMALL).unwrap();
            assert_eq!(
                s.report(),
                Default::default(),
                "clean reopen at step {step}"
            );
            assert_eq!(s.len() as usize, model.len());
        }
    }
    end(s);
    let laps = ram.stats.erases / 8;
    eprintln!("{ops} operations, {laps} laps of the ring, {full} refusals (full)");
    assert!(laps >= 100, "only {laps} laps");
    assert!(full > 0);
}

/// Random operation sequences (with identity saves and reopens) cut at a random unit; after
/// the reboot the same invariants as the scripted test hold.
#[test]
fn random_sequences_with_random_power_cuts() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let mut cuts = 0u32;
    for trial in 0..1500u32 {
        // A random pre-history without cuts (so cuts also hit wrapped, full, damaged states).
        let mut ram = Box::new(Small::new());
        let mut model: VecDeque<u32> = VecDeque::new();
        let mut identity_ok: Option<u8> = None;
        let mut next = trial * 1000 + 1;
        {
            let mut s = Store::open(&mut *ram, SMALL).unwrap();
            for _ in 0..rng.below(60) {
                match rng.below(10) {
                    0 => {
                        let v = 1 + rng.below(4) as u8;
                        s.save_identity(&identity(v)).unwrap();
                        identity_ok = Some(v);
                    }
                    1..=5 => {
                        if enqueue(&mut s, next).is_ok() {
                            model.push_back(next);
                        }
                        next += 1;
                    }
                    _ => {
                        if let Some(m) = s.peek().unwrap() {
                            s.pop(&m).unwrap();
                            model.pop_front();
                        }
                    }
                }
            }
        }
        // The cut sequence.
        let cut = rng.below(3000);
        let fault = FaultFlash::cut_after(&mut *ram, cut);
        let mut s = Store::open(fault, SMALL).unwrap();
        let mut acked: VecDeque<u32> = model.clone();
        let mut inflight_enq = None;
        let mut inflight_pop = None;
        let mut saving = None;
        for _ in 0..20 {
            let r = match rng.below(10) {
                0 => {
                    let v = 1 + rng.below(4) as u8;
                    saving = Some(v);
                    let r = s.save_identity(&identity(v));
                    if r.is_ok() {
                        identity_ok = Some(v);
                        saving = None;
                    }
                    r
                }
                1..=5 => {
                    inflight_enq = Some(next);
                    let r = enqueue(&mut s, next);
                    match r {
                        Ok(()) => {
                            acked.push_back(next);
                            inflight_enq = None;
                        }
                        Err(StoreError::QueueFull) | Err(StoreError::TooLarge) => {
                            inflight_enq = None;
                        }
                        _ => {}
                    }
                    next += 1;
                    r.or_else(|e| match e {
                        StoreError::QueueFull | StoreError::TooLarge => Ok(()),
                        e => Err(e),
                    })
                }
                _ => match s.peek().unwrap() {
                    Some(m) => {
                        assert_eq!(Some(&number(&m)), acked.front());
                        inflight_pop = acked.front().copied();
                        let r = s.pop(&m);
                        if r.is_ok() {
                            acked.pop_front();
                            inflight_pop = None;
                        }
                        r
                    }
                    None => Ok(()),
                },
            };
            match r {
                Ok(()) => {}
                Err(StoreError::Flash(FaultError::PowerLost)) => {
                    cuts += 1;
                    break;
                }
                Err(e) => panic!("trial {trial}: {e:?}"),
            }
        }
        end(s);
        // Reboot and check.
        let ctx = format!("trial {trial}, cut {cut}");
        let mut s = Store::open(&mut *ram, SMALL).unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
        let mut buf = [0u8; 1024];
        let id = s.load_identity(&mut buf).unwrap().map(|i| version_of(&i));
        assert!(
            id == identity_ok || (id.is_some() && id == saving),
            "{ctx}: identity {id:?}, saved {identity_ok:?}, saving {saving:?}"
        );
        let mut found = Vec::new();
        while let Some(m) = s.peek().unwrap() {
            check_message(&mut s, &m, len_of);
            found.push(number(&m));
            s.pop(&m).unwrap();
        }
        let mut rest: &[u32] = &found;
        if let Some(p) = inflight_pop {
            if rest.first() == Some(&p) {
                rest = &rest[1..];
            }
        }
        if let Some(e) = inflight_enq {
            if rest.last() == Some(&e) {
                rest = &rest[..rest.len() - 1];
            }
        }
        let want: Vec<u32> = acked
            .iter()
            .copied()
            .filter(|&n| Some(n) != inflight_pop)
            .collect();
        assert_eq!(rest, want, "{ctx}: found {found:?}");
        // And it takes new messages.
        enqueue(&mut s, 7)
            .or_else(|e| match e {
                StoreError::TooLarge => Ok(()),
                e => Err(e),
            })
            .unwrap();
    }
    eprintln!("1500 random sequences, {cuts} of them cut by power loss");
    assert!(cuts > 500);
}

/// A 128 KiB body (a 64 kB-character inventory in UTF-16) on the host's geometry (256 KiB,
/// 4 KiB pages): enqueued through a 512-byte scratch, then sent the way the driver sends —
/// a hash pass, a count pass and 4 KiB windows — straight from flash.
#[test]
fn large_body_streams_from_flash_through_a_window() {
    type Host = RamFlash<{ 256 * 1024 }, 1, 4, 4096>;
    let layout = Layout::split::<Host>(256 * 1024, 4096);
    let mut ram = Box::new(Host::new());
    let mut s = Store::open(&mut *ram, layout).unwrap();
    assert!(s.max_body_len() >= 200 * 1024, "{}", s.max_body_len());
    let body = Pattern {
        seed: 42,
        len: 128 * 1024,
    };
    let mut scratch = [0u8; 512];
    s.enqueue(&meta(42), &body, &mut scratch).unwrap();
    end(s);
    let writes = ram.stats.writes;
    let mut s = Store::open(&mut *ram, layout).unwrap();
    let m = s.peek().unwrap().unwrap();
    let stored = s.body(&m);
    assert_eq!(emitted_len(&stored).unwrap(), body.len);
    assert_eq!(sha256_of(&stored).unwrap(), sha256_of(&body).unwrap());
    let mut window = [0u8; 4096];
    let mut joined = Vec::new();
    while joined.len() < body.len {
        let mut w = WindowSink::new(&mut window, joined.len());
        stored.emit(&mut w).unwrap();
        let n = w.filled();
        joined.extend_from_slice(&window[..n]);
    }
    assert!(joined == body.bytes());
    end(stored);
    s.pop(&m).unwrap();
    end(s);
    eprintln!(
        "128 KiB body: {writes} flash writes to enqueue; {} bytes read in total by open + 34 passes",
        ram.stats.bytes_read
    );
}
