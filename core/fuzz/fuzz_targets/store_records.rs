//! The persistent store opened on arbitrary flash images: recovery, identity load, draining the
//! queue (peek, stream the body from flash, pop), then new writes and a reopen. Nothing may
//! panic, every error must be a typed one that fits the situation, the store must never write
//! over a byte that is not erased (the RAM flash is strict), and what it wrote must read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::sink::{CountingSink, Overflow, Sink};
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::testing::RamFlash;
use mpagent_core::store::{
    BodyFault, Endpoint, Layout, MessageMeta, Store, StoreError, StoredIdentity,
};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::header::ReplyMode;

const SIZE: usize = 8192;
/// Identity slots 0..512 and 512..1024, queue 1024..8192.
const LAYOUT: Layout = Layout {
    identity_start: 0,
    identity_slot_len: 512,
    queue_start: 1024,
    queue_len: 7168,
};

fn meta(n: u8) -> MessageMeta {
    MessageMeta {
        message_id: Guid([n; 16]),
        endpoint: Endpoint::Hinv,
        reply_mode: ReplyMode::Async,
        sent_time: UnixTime(u64::from(n)),
        source_id: Some(Smsid(Guid([0x5A; 16]))),
    }
}

fn body(n: u8, len: usize) -> impl Fn(&mut dyn Sink) -> Result<(), Overflow> {
    move |out: &mut dyn Sink| {
        for i in 0..len {
            out.write(&[n ^ (i as u8)])?;
        }
        Ok(())
    }
}

fn run<F: NorFlash>(flash: F, ops: u8) -> Option<F>
where
    F::Error: core::fmt::Debug,
{
    let mut s = match Store::open(flash, LAYOUT) {
        Ok(s) => s,
        Err(StoreError::UnknownVersion(_)) => return None,
        Err(e) => panic!("open: {e:?}"),
    };
    let mut buf = [0u8; 512];
    match s.load_identity(&mut buf) {
        Ok(Some(id)) => assert!(id.key.len() + id.cert_der.len() + 21 <= 512),
        Ok(None) | Err(StoreError::UnknownVersion(_)) => {}
        Err(e) => panic!("load_identity: {e:?}"),
    }

    // Drain: exactly len() heads come off.
    let queued = s.len();
    let mut removed = 0u32;
    loop {
        match s.peek() {
            Ok(None) => break,
            Ok(Some(m)) => {
                let stored = s.body(&m);
                let mut c = CountingSink::default();
                match stored.emit_checked(&mut c) {
                    Ok(()) => assert_eq!(c.count as u32, m.body_len),
                    Err(f) => assert_eq!(f, Some(BodyFault::Corrupt)),
                }
                s.pop(&m).expect("pop the head");
            }
            Err(StoreError::UnknownVersion(_)) | Err(StoreError::Corrupt) => {
                assert!(s.discard_head().expect("discard"));
            }
            Err(e) => panic!("peek: {e:?}"),
        }
        removed += 1;
        assert!(removed <= queued, "more heads than len() said");
    }
    assert_eq!(removed, queued);
    assert!(s.is_empty());

    // New writes land on erased flash only, and read back after a reopen.
    let cert = [0x30u8; 200];
    let id = StoredIdentity {
        key: &[7u8; 32],
        cert_der: &cert,
        registration: RegistrationState::Registered(Smsid(Guid([ops; 16]))),
    };
    match s.save_identity(&id) {
        Ok(()) => {}
        // A forged header with the highest sequence number: refused, not wrapped.
        Err(StoreError::Exhausted) => return None,
        Err(e) => panic!("save identity: {e:?}"),
    }
    let mut scratch = [0u8; 40];
    let mut accepted = 0u8;
    for n in 0..(ops % 5) {
        let len = usize::from(ops) * 13 * usize::from(n);
        match s.enqueue(&meta(n), &body(n, len), &mut scratch) {
            Ok(()) => accepted += 1,
            Err(StoreError::QueueFull | StoreError::TooLarge | StoreError::Exhausted) => break,
            Err(e) => panic!("enqueue: {e:?}"),
        }
    }
    let flash = s.into_flash();
    let mut s = Store::open(flash, LAYOUT).expect("reopen");
    assert_eq!(s.len(), u32::from(accepted));
    let mut buf = [0u8; 512];
    assert_eq!(s.load_identity(&mut buf).expect("reload"), Some(id));
    for n in 0..accepted {
        let m = s.peek().expect("peek").expect("a message");
        assert_eq!(m.meta, meta(n));
        let mut c = CountingSink::default();
        assert_eq!(s.body(&m).emit_checked(&mut c), Ok(()));
        assert_eq!(c.count, usize::from(ops) * 13 * usize::from(n));
        s.pop(&m).expect("pop");
    }
    Some(s.into_flash())
}

trait EmitChecked {
    fn emit_checked(&self, out: &mut dyn Sink) -> Result<(), Option<BodyFault>>;
}

impl<F: NorFlash> EmitChecked for mpagent_core::store::StoredBody<'_, F> {
    fn emit_checked(&self, out: &mut dyn Sink) -> Result<(), Option<BodyFault>> {
        use mpagent_core::sink::Emit;
        self.emit(out).map_err(|_| self.fault())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, image)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let mut f = Box::new(RamFlash::<SIZE, 1, 4, 256>::from_image(image));
        run(&mut *f, mode >> 1);
    } else {
        let mut f = Box::new(RamFlash::<SIZE, 4, 16, 512>::from_image(image));
        run(&mut *f, mode >> 1);
    }
});
