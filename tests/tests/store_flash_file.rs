//! The host's file-backed flash (`host-sim/src/client/flash_file.rs`): NOR rules, the file's
//! life cycle, and the store on it across "process restarts" and power cuts.

mod store_common;

use mpagent_core::store::embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use mpagent_core::store::testing::{FaultError, FaultFlash};
use mpagent_core::store::{Store, StoreError};
use mpagent_sim::client::flash_file::{FlashFile, FlashFileError, DEFAULT_SIZE};
use store_common::*;

#[test]
fn nor_rules_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flash.bin");
    let mut f = FlashFile::open(&path, 8 * 4096).unwrap();
    assert_eq!(f.capacity(), 8 * 4096);
    assert!(f.image().iter().all(|&b| b == 0xFF));
    f.write(8, &[1, 2, 3, 4]).unwrap();
    assert_eq!(f.write(8, &[0, 0, 0, 0]), Err(FlashFileError::NotErased(8)));
    assert_eq!(f.write(9, &[0, 0, 0, 0]), Err(FlashFileError::NotAligned));
    assert_eq!(f.write(8, &[0, 0]), Err(FlashFileError::NotAligned));
    assert_eq!(f.write(8 * 4096, &[0; 4]), Err(FlashFileError::OutOfBounds));
    assert_eq!(f.erase(0, 100), Err(FlashFileError::NotAligned));
    let mut b = [0u8; 6];
    f.read(7, &mut b).unwrap();
    assert_eq!(b, [0xFF, 1, 2, 3, 4, 0xFF]);
    f.erase(0, 4096).unwrap();
    f.read(7, &mut b).unwrap();
    assert_eq!(b, [0xFF; 6]);
    f.write(4096, &[0xAB; 8]).unwrap();
    drop(f);
    // Persisted.
    let raw = std::fs::read(&path).unwrap();
    assert_eq!(raw.len(), 8 * 4096);
    assert_eq!(&raw[4096..4104], &[0xAB; 8]);
}

#[test]
fn file_life_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flash.bin");
    assert!(
        FlashFile::open(&path, 1000).is_err(),
        "not a multiple of the erase size"
    );
    let f = FlashFile::open(&path, DEFAULT_SIZE).unwrap();
    assert_eq!(f.size(), DEFAULT_SIZE);
    // Locked while open.
    let e = FlashFile::open(&path, DEFAULT_SIZE).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    drop(f);
    // A different size is refused, the right one reopens.
    let e = FlashFile::open(&path, DEFAULT_SIZE * 2).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    FlashFile::open(&path, DEFAULT_SIZE).unwrap();
    assert!(!dir.path().join("flash.bin.tmp").exists());
}

#[test]
fn store_survives_restarts_on_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flash.bin");
    let layout = FlashFile::layout(DEFAULT_SIZE);
    assert_eq!(layout.identity_slot_len, 4096);
    assert_eq!(layout.queue_len, DEFAULT_SIZE - 8192);
    let len_of = |n: u32| (n as usize * 7919) % 20_000;
    {
        let mut s = Store::open(FlashFile::open(&path, DEFAULT_SIZE).unwrap(), layout).unwrap();
        s.save_identity(&identity(1)).unwrap();
        let mut scratch = vec![0u8; 4096];
        for n in 1..=6 {
            let body = Pattern {
                seed: n,
                len: len_of(n),
            };
            s.enqueue(&meta(n), &body, &mut scratch).unwrap();
        }
        s.save_identity(&identity(3)).unwrap();
    } // the "process" ends
    let mut s = Store::open(FlashFile::open(&path, DEFAULT_SIZE).unwrap(), layout).unwrap();
    assert_eq!(s.report(), Default::default());
    let mut buf = vec![0u8; 4096];
    assert_eq!(version_of(&s.load_identity(&mut buf).unwrap().unwrap()), 3);
    let mut got = Vec::new();
    while let Some(m) = s.peek().unwrap() {
        check_message(&mut s, &m, len_of);
        got.push(number(&m));
        s.pop(&m).unwrap();
        if got.len() == 3 {
            break; // leave three for the next run
        }
    }
    end(s);
    let mut s = Store::open(FlashFile::open(&path, DEFAULT_SIZE).unwrap(), layout).unwrap();
    while let Some(m) = s.peek().unwrap() {
        check_message(&mut s, &m, len_of);
        got.push(number(&m));
        s.pop(&m).unwrap();
    }
    assert_eq!(got, [1, 2, 3, 4, 5, 6]);
}

/// Power cuts on the file itself (a sample of cut points; every byte is covered on RAM flash by
/// `store_power_cut`): the file reopened afterwards holds every acknowledged message.
#[test]
fn power_cuts_on_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = FlashFile::layout(DEFAULT_SIZE);
    let len_of = |n: u32| 3000 + (n as usize * 1237) % 9000;
    for (i, cut) in [
        0u64, 1, 2, 3, 21, 500, 4099, 4100, 9000, 20_001, 33_333, 47_000,
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("cut{i}.bin"));
        let mut file = FlashFile::open(&path, DEFAULT_SIZE).unwrap();
        let mut enqueued = Vec::new();
        let mut identity_ok = None;
        {
            let fault = FaultFlash::cut_after(&mut file, cut);
            let mut s = Store::open(fault, layout).unwrap();
            let mut scratch = vec![0u8; 1024];
            let mut step = || -> Result<(), StoreError<FaultError<FlashFileError>>> {
                s.save_identity(&identity(1))?;
                identity_ok = Some(1);
                for n in 1..=4 {
                    let body = Pattern {
                        seed: n,
                        len: len_of(n),
                    };
                    s.enqueue(&meta(n), &body, &mut scratch)?;
                    enqueued.push(n);
                }
                s.save_identity(&identity(2))?;
                identity_ok = Some(2);
                Ok(())
            };
            match step() {
                Ok(()) | Err(StoreError::Flash(FaultError::PowerLost)) => {}
                Err(e) => panic!("cut {cut}: {e:?}"),
            }
        }
        end(file);
        let mut s = Store::open(FlashFile::open(&path, DEFAULT_SIZE).unwrap(), layout).unwrap();
        let mut buf = vec![0u8; 4096];
        let id = s.load_identity(&mut buf).unwrap().map(|i| version_of(&i));
        assert!(
            id == identity_ok || id == identity_ok.map_or(Some(1), |v| Some(v + 1)),
            "cut {cut}: {id:?} vs {identity_ok:?}"
        );
        let mut got = Vec::new();
        while let Some(m) = s.peek().unwrap() {
            check_message(&mut s, &m, len_of);
            got.push(number(&m));
            s.pop(&m).unwrap();
        }
        assert!(
            got == enqueued || got == [&enqueued[..], &[enqueued.len() as u32 + 1]].concat(),
            "cut {cut}: {got:?} vs {enqueued:?}"
        );
    }
}

/// What a host enqueue costs on the file: fdatasync per flash write.
#[test]
fn enqueue_cost_on_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flash.bin");
    let layout = FlashFile::layout(DEFAULT_SIZE);
    let mut s = Store::open(FlashFile::open(&path, DEFAULT_SIZE).unwrap(), layout).unwrap();
    let body = Pattern {
        seed: 1,
        len: 128 * 1024,
    };
    let mut scratch = vec![0u8; 4096];
    let t = std::time::Instant::now();
    s.enqueue(&meta(1), &body, &mut scratch).unwrap();
    let enq = t.elapsed();
    let t = std::time::Instant::now();
    let m = s.peek().unwrap().unwrap();
    check_message(&mut s, &m, |_| 128 * 1024);
    s.pop(&m).unwrap();
    eprintln!(
        "FlashFile: enqueue 128 KiB with a 4 KiB scratch {enq:?}; read back + pop {:?}",
        t.elapsed()
    );
}
