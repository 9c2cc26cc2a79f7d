//! The power-cut test: a scripted life (identity saves, enqueues, pops, wrapping the queue ring)
//! is run with the power cut after N units for **every** N from 0 to the units the whole script
//! uses (one unit per byte written, two per erase: see `FaultFlash`), on three flash geometries.
//! After each cut the flash is "rebooted" (the store reopened from the image) and checked:
//! - every message whose enqueue returned Ok and that was not popped is there, intact, in order;
//!   a popped message comes back only if its pop was the operation cut (at-least-once);
//! - the identity is the last one saved or the one being saved, never corrupt, never missing
//!   once a save returned Ok;
//! - the store keeps working: the survivors are delivered, a new message and identity are
//!   written on the strict flash (which refuses a second write to any byte) — with a second
//!   power cut at a pseudo-random point of that recovery, checked again.

mod store_common;

use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::testing::{FaultError, FaultFlash, RamFlash, TornErase};
use mpagent_core::store::{Layout, Store, StoreError};
use store_common::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    SaveId(u8),
    Enq(u32),
    Pop,
}

/// The scripted sequence; message sizes scale with the page size so records span pages.
const SCRIPT: &[Op] = &[
    Op::SaveId(1),
    Op::Enq(1),
    Op::Enq(2),
    Op::Enq(3),
    Op::Pop, // 1
    Op::SaveId(2),
    Op::Enq(4),
    Op::Pop, // 2
    Op::Enq(5),
    Op::Pop, // 3
    Op::Enq(6),
    Op::Pop, // 4
    Op::SaveId(3),
    Op::Enq(7),
    Op::Pop, // 5
    Op::Pop, // 6
    Op::Enq(8),
    Op::Enq(9),
    Op::Pop, // 7
    Op::Enq(10),
    Op::Pop, // 8
    Op::Enq(11),
];

/// Body length of message `n` for pages of `e` bytes.
fn len_for(e: usize) -> impl Fn(u32) -> usize {
    move |n| {
        let base = [0, 100, 500, 60, 300, 700, 50, 400, 200, 10, 650, 333, 90][n as usize % 13];
        base * e / 256
    }
}

/// What the script achieved before the power went.
#[derive(Debug, Default, Clone)]
struct Outcome {
    enqueued: Vec<u32>,
    popped: Vec<u32>,
    identity_ok: Option<u8>,
    cut_during: Option<Op>,
}

fn is_power_loss<E>(e: &StoreError<FaultError<E>>) -> bool {
    matches!(e, StoreError::Flash(FaultError::PowerLost))
}

fn run_script<F: NorFlash + TornErase>(
    flash: F,
    layout: Layout,
    len_of: &dyn Fn(u32) -> usize,
    units: Option<u64>,
) -> (Outcome, u64)
where
    F::Error: std::fmt::Debug,
{
    let fault = match units {
        Some(n) => FaultFlash::cut_after(flash, n),
        None => FaultFlash::new(flash),
    };
    let mut out = Outcome::default();
    let mut store = Store::open(fault, layout).expect("open before the script");
    let mut scratch = [0u8; 48];
    for &op in SCRIPT {
        let r = match op {
            Op::SaveId(v) => store.save_identity(&identity(v)),
            Op::Enq(n) => store.enqueue(
                &meta(n),
                &Pattern {
                    seed: n,
                    len: len_of(n),
                },
                &mut scratch,
            ),
            Op::Pop => {
                let m = store
                    .peek()
                    .unwrap()
                    .expect("the script pops a non-empty queue");
                let n = number(&m);
                check_message(&mut store, &m, len_of);
                store.pop(&m).map(|()| out.popped.push(n))
            }
        };
        match r {
            Ok(()) => match op {
                Op::SaveId(v) => out.identity_ok = Some(v),
                Op::Enq(n) => out.enqueued.push(n),
                Op::Pop => {}
            },
            Err(e) if is_power_loss(&e) => {
                out.cut_during = Some(op);
                break;
            }
            Err(e) => panic!("{op:?} failed with {e:?} (units {units:?})"),
        }
    }
    let used = store.into_flash().used();
    (out, used)
}

/// Reopen after a cut and check the invariants; returns the messages found, in order.
fn check_after_cut<F: NorFlash>(
    store: &mut Store<F>,
    out: &Outcome,
    len_of: &dyn Fn(u32) -> usize,
    ctx: &str,
) -> Option<u8>
where
    F::Error: std::fmt::Debug,
{
    // Identity: old or new, whole.
    let mut buf = [0u8; 1024];
    let found = store.load_identity(&mut buf).expect("identity readable");
    let saving = match out.cut_during {
        Some(Op::SaveId(v)) => Some(v),
        _ => None,
    };
    let identity_found = found.map(|id| version_of(&id));
    match identity_found {
        Some(v) => assert!(
            Some(v) == out.identity_ok || Some(v) == saving,
            "{ctx}: identity v{v}, last saved {:?}, saving {saving:?}",
            out.identity_ok
        ),
        None => assert_eq!(out.identity_ok, None, "{ctx}: identity lost"),
    }

    // Queue: what was acknowledged and not popped, in order; the cut pop's message may remain,
    // the cut enqueue's message may appear (intact) at the end.
    let pending: Vec<u32> = out
        .enqueued
        .iter()
        .copied()
        .filter(|n| !out.popped.contains(n))
        .collect();
    // Deliver everything (peek, stream, pop): the path a sender takes after the reboot.
    let mut found = Vec::new();
    let len_before = store.len() as usize;
    while let Some(m) = store.peek().expect("peek") {
        check_message(store, &m, len_of);
        found.push(number(&m));
        store.pop(&m).expect("pop after reboot");
        assert!(found.len() <= 64, "{ctx}: runaway queue");
    }
    assert_eq!(len_before, found.len(), "{ctx}: len() after open");
    let mut expect = pending.clone();
    let mut rest: &[u32] = &found;
    if out.cut_during == Some(Op::Pop) {
        let head = expect.remove(0);
        if rest.first() == Some(&head) {
            rest = &rest[1..];
        }
    }
    if let Some(Op::Enq(n)) = out.cut_during {
        if rest.last() == Some(&n) {
            rest = &rest[..rest.len() - 1];
        }
    }
    assert_eq!(
        rest, expect,
        "{ctx}: found {found:?}, enqueued {:?}, popped {:?}, cut during {:?}",
        out.enqueued, out.popped, out.cut_during
    );
    identity_found
}

fn power_cut<const SIZE: usize, const R: usize, const W: usize, const E: usize>(
    layout: Layout,
) -> u64 {
    type Ram<const S: usize, const R: usize, const W: usize, const E: usize> = RamFlash<S, R, W, E>;
    let len_of = len_for(E);
    // The whole script without a cut: everything succeeds; count its units.
    let mut ram = Box::new(Ram::<SIZE, R, W, E>::new());
    let (full, total) = run_script(&mut *ram, layout, &len_of, None);
    assert_eq!(full.cut_during, None);
    assert_eq!(full.enqueued.len(), 11);
    assert!(
        ram.stats.erases as usize > layout.queue_len as usize / E,
        "the script must wrap the queue ring"
    );

    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for n in 0..=total {
        let ctx = format!("{E}-byte pages, cut after {n} of {total} units");
        let mut ram = Box::new(Ram::<SIZE, R, W, E>::new());
        let (out, _) = run_script(&mut *ram, layout, &len_of, Some(n));
        if n < total {
            assert!(out.cut_during.is_some(), "{ctx}: no operation was cut");
        }

        // Reboot.
        let mut store =
            Store::open(&mut *ram, layout).unwrap_or_else(|e| panic!("{ctx}: open {e:?}"));
        let identity_found = check_after_cut(&mut store, &out, &len_of, &ctx);
        end(store);

        // Recovery (reopen, enqueue message 100, save identity v4) with a second cut at a
        // pseudo-random unit of it.
        let recovery = |ram: &mut Ram<SIZE, R, W, E>, cut: Option<u64>| {
            let fault = match cut {
                Some(c) => FaultFlash::cut_after(ram, c),
                None => FaultFlash::new(ram),
            };
            let mut s = Store::open(fault, layout).unwrap();
            assert!(s.is_empty());
            let mut scratch = [0u8; 40];
            let body = Pattern {
                seed: 100,
                len: len_of(100),
            };
            let enq = s.enqueue(&meta(100), &body, &mut scratch).is_ok();
            let saved = enq && s.save_identity(&identity(4)).is_ok();
            (enq, saved, s.into_flash().used())
        };
        let (enq, saved, units) = recovery(&mut ram.clone(), None);
        assert!(enq && saved, "{ctx}: recovery writes failed");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let cut = rng % (units + 1);
        let (enq, saved, _) = recovery(&mut ram, Some(cut));
        let ctx = format!("{ctx}, second cut after {cut} of {units}");
        let mut s = Store::open(&mut *ram, layout).unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
        let mut buf = [0u8; 1024];
        let id = s.load_identity(&mut buf).unwrap().map(|id| version_of(&id));
        if saved {
            assert_eq!(id, Some(4), "{ctx}");
        } else {
            assert!(id == identity_found || id == Some(4), "{ctx}: {id:?}");
        }
        let mut found = Vec::new();
        while let Some(m) = s.peek().unwrap() {
            check_message(&mut s, &m, &len_of);
            found.push(number(&m));
            s.pop(&m).unwrap();
        }
        if enq {
            assert_eq!(found, [100], "{ctx}");
        } else {
            assert!(found.is_empty() || found == [100], "{ctx}: {found:?}");
        }
    }
    total
}

#[test]
fn power_cut_at_every_byte_256_byte_pages_byte_writes() {
    // Identity slots 2 x 1 KiB, queue 8 pages of 256 bytes.
    let layout = Layout {
        identity_start: 0,
        identity_slot_len: 1024,
        queue_start: 2048,
        queue_len: 2048,
    };
    let n = power_cut::<4096, 1, 1, 256>(layout);
    eprintln!("256-byte pages, 1-byte writes: {} cut points", n + 1);
}

#[test]
fn power_cut_at_every_byte_512_byte_pages_8_byte_writes() {
    let layout = Layout {
        identity_start: 0,
        identity_slot_len: 1024,
        queue_start: 2048,
        queue_len: 4096,
    };
    let n = power_cut::<6144, 4, 8, 512>(layout);
    eprintln!(
        "512-byte pages, 8-byte writes, 4-byte reads: {} cut points",
        n + 1
    );
}

#[test]
fn power_cut_at_every_byte_512_byte_pages_32_byte_writes() {
    let layout = Layout {
        identity_start: 0,
        identity_slot_len: 1024,
        queue_start: 2048,
        queue_len: 4096,
    };
    let n = power_cut::<6144, 1, 32, 512>(layout);
    eprintln!("512-byte pages, 32-byte writes: {} cut points", n + 1);
}
