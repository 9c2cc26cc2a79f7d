//! The device's random number generator: ChaCha20 seeded at boot.
//!
//! **QEMU's mps2 boards have no TRNG, so this seed is only as good as what the host hands in.** It
//! is SHA-256 over: the seed file left by the previous boot (`seed.bin`), 32 bytes of the host's
//! `/dev/urandom` read through semihosting (when the host has one), the host's clock (SYS_TIME),
//! QEMU's run time (SYS_CLOCK), and the SysTick counter. The next boot's seed is derived from
//! this one and written back before anything uses the RNG, so two boots never share a stream
//! even when the other sources repeat.
//!
//! A real board must seed from its hardware TRNG (e.g. the STM32 RNG peripheral) — or better, keep
//! the key in a secure element — and must not ship this module's recipe: a device key and the
//! certificate serial come from this generator.

use mpagent_core::sink::{Sha256Sink, Sink};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use semihosting::sys::arm_compat::{sys_clock, sys_time};

use crate::storage::SemihostingFiles;

const SEED_FILE: &core::ffi::CStr = c"seed.bin";
const SEED_TMP: &core::ffi::CStr = c"seed.bin.tmp";

fn absorb(h: &mut Sha256Sink, bytes: &[u8]) {
    // A hashing sink never overflows.
    let _ = h.write(bytes);
}

/// Seed the generator for this boot and store the next boot's seed.
#[inline(never)]
pub fn seed(files: &SemihostingFiles) -> ChaCha20Rng {
    let mut h = Sha256Sink::default();
    absorb(&mut h, b"mpagent qemu-mps2-an386 seed v1");

    // The previous seed is only hashed in: a torn or damaged file weakens this boot's seed (the
    // other sources remain) but cannot break it, so it needs no framing of its own.
    let mut buf = [0u8; 32];
    match files.read(SEED_FILE, &mut buf) {
        Ok(Some(previous)) => absorb(&mut h, previous),
        Ok(None) => defmt::info!("no seed.bin: first boot"),
        Err(e) => defmt::warn!("seed.bin unreadable: {}", e),
    }
    let mut host = [0u8; 32];
    match semihosting::experimental::random::fill_bytes(&mut host) {
        Ok(()) => absorb(&mut h, &host),
        Err(_) => {
            defmt::warn!("host /dev/urandom unavailable: seeding from time and the seed file")
        }
    }
    absorb(&mut h, &sys_time().unwrap_or(0).to_le_bytes());
    absorb(&mut h, &sys_clock().unwrap_or(0).to_le_bytes());
    absorb(
        &mut h,
        &cortex_m::peripheral::SYST::get_current().to_le_bytes(),
    );
    let seed = h.finish();

    let mut next = Sha256Sink::default();
    absorb(&mut next, b"next boot");
    absorb(&mut next, &seed);
    let next = next.finish();
    if files.replace(SEED_FILE, SEED_TMP, &next).is_err() {
        defmt::warn!("could not store seed.bin: the next boot relies on the host's sources only");
    }
    ChaCha20Rng::from_seed(seed)
}
