//! The boards' identity switch after a CertificateReset, cut at every unit: a board holds its
//! registered identity (P-256 scalar + self-signed certificate + Registered SMSID) in the store's
//! A/B identity slots and, once the site registered the new key and certificate, saves them in one
//! `save_identity` (`boards/firmware-common/src/exchange.rs`, `identity::save`). On the QEMU
//! board's flash geometry (64 KiB, 4 KiB erase blocks, 4-byte writes, 4 KiB identity slots) the
//! power is cut after every unit of that save (one per byte written, two per erase: see
//! `FaultFlash`); after each cut the store reopens with exactly one identity, the old or the new,
//! whole, its key the one its certificate names, under the same SMSID — and a queued heartbeat
//! is still there.

use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::Smsid;
use mpagent_core::identity::{build_self_signed_p256, cert_public_key_p256, CertParams};
use mpagent_core::sign::P256Signer;
use mpagent_core::store::testing::{FaultFlash, RamFlash};
use mpagent_core::store::{Endpoint, Layout, MessageMeta, Store, StoredIdentity};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::header::ReplyMode;

type BoardFlash = RamFlash<{ 64 * 1024 }, 1, 4, 4096>;

struct Pair {
    key: [u8; 32],
    cert: Vec<u8>,
}

fn pair(name: &str) -> Pair {
    let mut rng = rand_core::OsRng;
    let signer = P256Signer::generate(&mut rng);
    let params = CertParams::self_signed_now(name, UnixTime(1_800_000_000), &mut rng);
    let mut out = vec![0u8; 1024];
    let len = build_self_signed_p256(&params, &signer, &mut out).unwrap();
    out.truncate(len);
    Pair {
        key: signer.secret_bytes(),
        cert: out,
    }
}

/// Whether the stored key is the one the stored certificate holds.
fn usable(key: &[u8], cert: &[u8]) -> bool {
    let Ok(key) = <&[u8; 32]>::try_from(key) else {
        return false;
    };
    let Ok(signer) = P256Signer::from_secret_bytes(key) else {
        return false;
    };
    cert_public_key_p256(cert)
        .is_ok_and(|k| signer.verifying_key().to_encoded_point(false).as_bytes() == k.as_slice())
}

#[test]
fn a_power_cut_at_every_unit_of_the_identity_switch_leaves_the_old_or_the_new_identity_whole() {
    let layout = Layout::split::<BoardFlash>(64 * 1024, 4096);
    let smsid = Smsid::parse(b"GUID:28BA939F-1C36-4BF2-B710-5F4D1D9B891A").unwrap();
    let state = RegistrationState::Registered(smsid);
    let old = pair("QEMU-1");
    let new = pair("QEMU-1");
    assert_ne!(old.cert, new.cert);

    // The registered device: its identity, then a heartbeat queued.
    let mut base = Box::new(BoardFlash::new());
    {
        let mut store = Store::open(&mut *base, layout).unwrap();
        store
            .save_identity(&StoredIdentity {
                key: &old.key,
                cert_der: &old.cert,
                registration: state,
            })
            .unwrap();
        let meta = MessageMeta {
            message_id: mpagent_core::guid::Guid([7; 16]),
            endpoint: Endpoint::Ddr,
            reply_mode: ReplyMode::Async,
            sent_time: UnixTime(1_800_000_000),
            source_id: Some(smsid),
        };
        let mut scratch = [0u8; 64];
        store
            .enqueue(
                &meta,
                &|s: &mut dyn mpagent_core::sink::Sink| s.write(b"<Report/>"),
                &mut scratch,
            )
            .unwrap();
    }
    let switch = |flash: FaultFlash<&mut BoardFlash>| {
        let mut store = Store::open(flash, layout).unwrap();
        let saved = store
            .save_identity(&StoredIdentity {
                key: &new.key,
                cert_der: &new.cert,
                registration: state,
            })
            .is_ok();
        (saved, store.into_flash().used())
    };
    let (saved, units) = switch(FaultFlash::new(&mut *base.clone()));
    assert!(saved);
    assert!(units > new.cert.len() as u64, "{units} units");

    let (mut olds, mut news) = (0, 0);
    for n in 0..=units {
        let mut ram = base.clone();
        let (saved, _) = switch(FaultFlash::cut_after(&mut *ram, n));
        let mut store = Store::open(&mut *ram, layout)
            .unwrap_or_else(|e| panic!("cut after {n} of {units}: open {e:?}"));
        let mut buf = vec![0u8; 8192];
        let id = store
            .load_identity(&mut buf)
            .unwrap_or_else(|e| panic!("cut after {n} of {units}: {e:?}"))
            .unwrap_or_else(|| panic!("cut after {n} of {units}: no identity"));
        assert_eq!(id.registration, state, "cut after {n} of {units}");
        assert!(usable(id.key, id.cert_der), "cut after {n} of {units}");
        if id.cert_der == new.cert.as_slice() {
            assert_eq!(id.key, new.key, "cut after {n} of {units}");
            news += 1;
        } else {
            assert_eq!(id.cert_der, old.cert.as_slice(), "cut after {n} of {units}");
            assert_eq!(id.key, old.key, "cut after {n} of {units}");
            assert!(!saved, "cut after {n} of {units}: the save returned Ok");
            olds += 1;
        }
        assert_eq!(store.len(), 1, "cut after {n} of {units}: the heartbeat");
    }
    assert!(olds > 0 && news > 0, "old {olds}, new {news}");
    eprintln!(
        "{} cut points: old identity after {olds}, new after {news}",
        units + 1
    );
}
