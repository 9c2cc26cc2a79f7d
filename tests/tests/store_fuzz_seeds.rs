//! Regenerates the seed corpus of the `store_records` fuzz target (`core/fuzz`) from real store
//! images — empty, with an identity and queued messages, wrapped, and cut by power loss — so
//! the fuzzer's mutations start from valid CRCs and reach the recovery paths:
//!
//! ```sh
//! cargo test -p mpagent-tests --test store_fuzz_seeds -- --ignored
//! ```
//!
//! The ordinary run checks that the committed seeds exist and open.

mod store_common;

use std::path::PathBuf;

use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::testing::{FaultFlash, RamFlash, TornErase};
use mpagent_core::store::{Layout, Store};
use store_common::*;

/// The fuzz target's layout (`core/fuzz/fuzz_targets/store_records.rs`).
const LAYOUT: Layout = Layout {
    identity_start: 0,
    identity_slot_len: 512,
    queue_start: 1024,
    queue_len: 7168,
};
/// Byte 0 of an input: bit 0 selects the geometry, bits 1–7 how much the target writes.
const WRITE_AMOUNT: u8 = 4 << 1;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/fuzz/seeds/store_records")
}

fn script<F: NorFlash>(flash: F, steps: usize) {
    let Ok(mut s) = Store::open(flash, LAYOUT) else {
        return;
    };
    let mut scratch = [0u8; 32];
    let mut n = 1u32;
    for i in 0..steps {
        let r = match i % 7 {
            0 => s.save_identity(&identity(1 + (i % 3) as u8)),
            1 | 2 | 4 | 5 => {
                n += 1;
                let body = Pattern {
                    seed: n,
                    len: (n as usize * 97) % 900,
                };
                s.enqueue(&meta(n), &body, &mut scratch)
            }
            _ => match s.peek() {
                Ok(Some(m)) => s.pop(&m),
                _ => Ok(()),
            },
        };
        if r.is_err() {
            return;
        }
    }
}

/// (steps, power cut after this many units)
const RUNS: [(usize, Option<u64>); 6] = [
    (0, None),
    (3, None),
    (9, None),
    (40, None),
    (12, Some(2500)),
    (30, Some(7000)),
];

fn generate<const R: usize, const W: usize, const E: usize>(mode: u8)
where
    RamFlash<8192, R, W, E>: TornErase,
{
    for (k, (steps, cut)) in RUNS.into_iter().enumerate() {
        let mut f = Box::new(RamFlash::<8192, R, W, E>::new());
        match cut {
            None => script(&mut *f, steps),
            Some(c) => script(FaultFlash::cut_after(&mut *f, c), steps),
        }
        let img = f.image();
        let used = img.iter().rposition(|&b| b != 0xFF).map_or(0, |p| p + 1);
        let mut input = vec![mode];
        input.extend_from_slice(&img[..used]);
        std::fs::write(dir().join(format!("g{mode}_{k}")), input).unwrap();
    }
}

#[test]
#[ignore = "rewrites core/fuzz/seeds/store_records"]
fn regenerate() {
    std::fs::create_dir_all(dir()).unwrap();
    generate::<1, 4, 256>(WRITE_AMOUNT);
    generate::<4, 16, 512>(WRITE_AMOUNT | 1);
}

#[test]
fn committed_seeds_open() {
    let mut n = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        let (mode, image) = input.split_first().unwrap();
        let ok = if mode & 1 == 0 {
            let mut f = Box::new(RamFlash::<8192, 1, 4, 256>::from_image(image));
            Store::open(&mut *f, LAYOUT).is_ok()
        } else {
            let mut f = Box::new(RamFlash::<8192, 4, 16, 512>::from_image(image));
            Store::open(&mut *f, LAYOUT).is_ok()
        };
        assert!(ok);
        n += 1;
    }
    assert!(n >= 12, "{n} seeds");
}
