//! Size probe: builds a self-signed certificate and a signed registration request with the core,
//! streams the request through a 512-byte window into a hasher (as a transport would), prints the
//! length and digest over semihosting and exits. No global allocator exists in this image: the
//! link itself proves the core needs none.
//!
//! Features: `baseline` (no core code, for size differences), `rsa` (the same path with an
//! RSA-2048 key as well), `rsa-keygen` (and an RSA key generated on the device), `measure`
//! (instructions and stack of each step of the P-256 path, see [`measure`]), `rsa-measure` (and
//! of RSA signing and key generation), `p256-asm` (the P-256 path on the firmware's assembly
//! signer; with `measure`, its steps and known answers against the software signer).
//! `src/bin/no_panic.rs` is the no-panic link proof.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_halt as _;

#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::agent::outbound::{Post, PostParams};
#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::agent::registration::{build_request, SigningIdentity};
#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::config::{AgentConfig, SiteMode};
#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::guid::Guid;
#[cfg_attr(any(feature = "baseline", feature = "p256-asm"), allow(unused_imports))]
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
#[cfg_attr(any(feature = "baseline", feature = "p256-asm"), allow(unused_imports))]
use mpagent_core::sign::{P256Signer, Signer};

/// The firmware's assembly P-256 signer: the same source file as the boards build.
#[cfg(feature = "p256-asm")]
#[allow(dead_code)]
#[path = "../../firmware-common/src/p256_asm.rs"]
mod p256_asm;
#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::sink::{emitted_len, Emit, Sha256Sink, Sink, WindowSink};
#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::time::UnixTime;
#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::wire::header::{endpoint, ReplyMode};
#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::wire::registration::{AgentType, RequestType};

#[cfg_attr(feature = "baseline", allow(dead_code))]
const NOW: UnixTime = UnixTime(1_795_428_000);

#[cfg(feature = "baseline")]
fn run() -> Result<(usize, [u8; 32]), &'static str> {
    // Same output path, no core code: keeps formatting and semihosting in both images.
    let n = core::hint::black_box(6262usize);
    Ok((n, [core::hint::black_box(0x5Eu8); 32]))
}

#[cfg(not(feature = "baseline"))]
fn cert_params() -> CertParams<'static> {
    CertParams {
        common_name: "PROBE-1",
        not_before: NOW.minus(86_400),
        not_after: NOW.plus(10 * 365 * 86_400),
        serial: [0x11; 16],
    }
}

#[cfg(all(not(feature = "baseline"), not(feature = "p256-asm")))]
fn run() -> Result<(usize, [u8; 32]), &'static str> {
    let signer = P256Signer::from_secret_bytes(&[0x5A; 32]).map_err(|_| "key")?;
    let mut cert = [0u8; MAX_CERT_LEN];
    let cert_len =
        build_self_signed_p256(&cert_params(), &signer, &mut cert).map_err(|_| "cert")?;
    let cert = cert.get(..cert_len).ok_or("cert len")?;
    registration(&signer, cert)
}

/// The same path on the assembly signer: the same key, so the same request bytes.
#[cfg(all(not(feature = "baseline"), feature = "p256-asm"))]
fn run() -> Result<(usize, [u8; 32]), &'static str> {
    let signer = p256_asm::AsmP256Signer::from_secret_bytes(&[0x5A; 32]).map_err(|_| "key")?;
    let mut cert = [0u8; MAX_CERT_LEN];
    let cert_len = mpagent_core::identity::build_self_signed_p256_point(
        &cert_params(),
        &signer.public_key_sec1(),
        &signer,
        &mut cert,
    )
    .map_err(|_| "cert")?;
    let cert = cert.get(..cert_len).ok_or("cert len")?;
    registration(&signer, cert)
}

/// Build, sign and stream a registration request; its length and SHA-256.
// Out of line so that `measure` counts its frame in the stack it measures.
#[cfg(not(feature = "baseline"))]
#[inline(never)]
fn registration(signer: &dyn Signer, cert: &[u8]) -> Result<(usize, [u8; 32]), &'static str> {
    let config = AgentConfig::new(
        "PS1",
        SiteMode::Mixed,
        "http://10.0.2.2:8080",
        "PROBE-1",
        "probe-1.local",
    )
    .map_err(|_| "config")?;
    let identity = SigningIdentity {
        signer,
        cert_der: cert,
    };
    let request = build_request(
        &config,
        &identity,
        AgentType::Client,
        RequestType::Registration,
        None,
        NOW,
    )
    .map_err(|_| "build")?;
    let params = PostParams {
        endpoint: endpoint::CLIENT_REGISTRATION,
        reply_mode: ReplyMode::Sync,
        source_id: None,
        message_id: Guid([0x22; 16]),
        now: NOW,
        hooks: None,
    };
    let post = Post::new(&config, params, &request).map_err(|_| "post")?;
    let total = emitted_len(&post).map_err(|_| "len")?;
    let mut hash = Sha256Sink::default();
    let mut window = [0u8; 512];
    let mut off = 0;
    while off < total {
        let mut w = WindowSink::new(&mut window, off);
        post.emit(&mut w).map_err(|_| "emit")?;
        let n = w.filled();
        hash.write(window.get(..n).ok_or("window")?)
            .map_err(|_| "hash")?;
        off += n;
    }
    Ok((total, hash.finish()))
}

/// A provisioned RSA-2048 key (the core's test vector), PKCS#1 DER.
#[cfg(feature = "rsa")]
const RSA_KEY: &[u8] = include_bytes!("../../../core/src/sign/rsa/testdata/rsa2048.pk1.der");

/// The registration path with an RSA-2048 key: import (checked), certificate, signed request.
#[cfg(feature = "rsa")]
fn run_rsa() -> Result<(usize, [u8; 32]), &'static str> {
    use mpagent_core::identity::{build_self_signed_rsa, MAX_RSA_CERT_LEN};
    use mpagent_core::sign::RsaSigner;

    let signer = RsaSigner::from_pkcs1_der(RSA_KEY).map_err(|_| "rsa key")?;
    let mut cert = [0u8; MAX_RSA_CERT_LEN];
    let len = build_self_signed_rsa(&cert_params(), &signer, &mut cert).map_err(|_| "rsa cert")?;
    registration(&signer, cert.get(..len).ok_or("rsa cert len")?)
}

/// A deterministic xorshift generator: NOT a cryptographic RNG. It only makes key generation
/// repeatable so that its cost can be measured per seed.
#[cfg(any(feature = "rsa-keygen", all(feature = "p256-asm", feature = "measure")))]
struct ProbeRng(u64);

#[cfg(any(feature = "rsa-keygen", all(feature = "p256-asm", feature = "measure")))]
impl rand_core::RngCore for ProbeRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or(&[]));
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[cfg(any(feature = "rsa-keygen", all(feature = "p256-asm", feature = "measure")))]
impl rand_core::CryptoRng for ProbeRng {}

/// A key generated on the device, then one signature with it.
#[cfg(all(feature = "rsa-keygen", not(feature = "rsa-measure")))]
fn run_keygen() -> Result<[u8; 4], &'static str> {
    use mpagent_core::sign::RsaSigner;
    let key = RsaSigner::generate(&mut ProbeRng(core::hint::black_box(0x9E37_79B9_7F4A_7C15)))
        .map_err(|_| "keygen")?;
    let sig = key.sign_sha256(&[0x42; 32]).map_err(|_| "sign")?;
    let mut head = [0u8; 4];
    head.copy_from_slice(sig.as_bytes().get(..4).ok_or("sig")?);
    Ok(head)
}

#[cfg(feature = "measure")]
mod measure {
    //! Instructions: SysTick on the core clock, which under `-icount shift=0` on mps2-an386
    //! ticks once per 40 instructions; wraps of the 24-bit counter are counted in its exception.
    //! Stack: the free stack is painted before an operation and the deepest overwritten word
    //! found after it.
    use core::sync::atomic::{AtomicU32, Ordering};

    use cortex_m::peripheral::syst::SystClkSource;
    use cortex_m::peripheral::SYST;
    use cortex_m_rt::exception;

    const RELOAD: u32 = 0x00FF_FFFF;
    const INSTRUCTIONS_PER_TICK: u64 = 40;
    const PAINT: u32 = 0xA5C3_5A3C;

    static WRAPS: AtomicU32 = AtomicU32::new(0);

    #[exception]
    fn SysTick() {
        WRAPS.fetch_add(1, Ordering::Relaxed);
    }

    pub fn start(mut syst: SYST) {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
    }

    fn now() -> u64 {
        loop {
            let w0 = WRAPS.load(Ordering::Relaxed);
            let current = SYST::get_current();
            if WRAPS.load(Ordering::Relaxed) == w0 {
                return u64::from(w0) * (u64::from(RELOAD) + 1) + u64::from(RELOAD - current);
            }
        }
    }

    extern "C" {
        static _stack_end: u32;
    }

    fn bottom() -> usize {
        // Only the address of the linker symbol is taken.
        core::ptr::addr_of!(_stack_end) as usize
    }

    /// Paint the free stack below the current frame; returns the stack pointer.
    #[inline(never)]
    fn paint() -> usize {
        let sp = cortex_m::register::msp::read() as usize;
        let mut addr = bottom();
        while addr < sp - 64 {
            // SAFETY: below the live stack and above the statics: memory nobody uses now.
            unsafe { core::ptr::write_volatile(addr as *mut u32, PAINT) };
            addr += 4;
        }
        sp
    }

    /// Bytes of stack used below `sp` since [`paint`].
    fn used_below(sp: usize) -> usize {
        let mut addr = bottom();
        // SAFETY: reads of RAM between the statics and the live stack.
        while addr < sp && unsafe { core::ptr::read_volatile(addr as *const u32) } == PAINT {
            addr += 4;
        }
        sp.saturating_sub(addr)
    }

    /// Run `f`; its result, the instructions it took and the stack it used (bytes).
    pub fn run<T>(f: impl FnOnce() -> T) -> (T, u64, usize) {
        let sp = paint();
        let t0 = now();
        let out = core::hint::black_box(f());
        let ticks = now() - t0;
        (out, ticks * INSTRUCTIONS_PER_TICK, used_below(sp))
    }
}

/// Instructions and stack of the P-256 registration path, step by step, over semihosting.
#[cfg(feature = "measure")]
fn run_measure_p256() -> Result<(), &'static str> {
    let (_, n, stack) = measure::run(|| {
        P256Signer::from_secret_bytes(&[0x5A; 32]).map(|s| s.sign_sha256(&[0x42; 32]))
    });
    hprintln!(
        "p256 key load + sign: {} instructions, {} B stack",
        n,
        stack
    );
    let signer = P256Signer::from_secret_bytes(&[0x5A; 32]).map_err(|_| "key")?;
    let mut cert = [0u8; MAX_CERT_LEN];
    let (len, n, stack) =
        measure::run(|| build_self_signed_p256(&cert_params(), &signer, &mut cert));
    let cert = cert.get(..len.map_err(|_| "cert")?).ok_or("cert len")?;
    hprintln!(
        "p256 self-signed certificate: {} instructions, {} B stack",
        n,
        stack
    );
    let config = AgentConfig::new(
        "PS1",
        SiteMode::Mixed,
        "http://10.0.2.2:8080",
        "PROBE-1",
        "probe-1.local",
    )
    .map_err(|_| "config")?;
    let identity = SigningIdentity {
        signer: &signer,
        cert_der: cert,
    };
    let (out, n, stack) = measure::run(|| {
        build_request(
            &config,
            &identity,
            AgentType::Client,
            RequestType::Registration,
            None,
            NOW,
        )
        .is_ok()
    });
    if !out {
        return Err("build");
    }
    hprintln!(
        "p256 registration request build+sign: {} instructions, {} B stack",
        n,
        stack
    );
    let (out, n, stack) = measure::run(|| registration(&signer, cert));
    out?;
    hprintln!(
        "p256 registration request build+sign+stream: {} instructions, {} B stack",
        n,
        stack
    );
    Ok(())
}

/// The assembly signer: instructions and stack of its steps, then known answers: its signatures,
/// certificate and generated keys equal the software signer's. One signature is printed with its
/// key for an independent check on the host (tests/run-all.sh).
#[cfg(all(feature = "measure", feature = "p256-asm"))]
fn run_measure_asm() -> Result<(), &'static str> {
    use p256_asm::AsmP256Signer;

    let digest = [0x42u8; 32];
    let (_, n, stack) = measure::run(|| {
        AsmP256Signer::from_secret_bytes(&[0x5A; 32]).map(|s| s.sign_sha256(&digest))
    });
    hprintln!(
        "p256-asm key load + sign: {} instructions, {} B stack",
        n,
        stack
    );
    let signer = AsmP256Signer::from_secret_bytes(&[0x5A; 32]).map_err(|_| "asm key")?;
    let (sig, n, stack) = measure::run(|| signer.sign_sha256(&digest));
    let sig = sig.map_err(|_| "asm sign")?;
    hprintln!("p256-asm sign: {} instructions, {} B stack", n, stack);
    // For an independent check on the host (OpenSSL through Python `cryptography`).
    hprintln!(
        "p256-asm signature check: key {:02x?} digest {:02x?} signature {:02x?}",
        signer.public_key_sec1(),
        digest,
        sig.as_bytes()
    );
    let mut cert = [0u8; MAX_CERT_LEN];
    let (len, n, stack) = measure::run(|| {
        mpagent_core::identity::build_self_signed_p256_point(
            &cert_params(),
            &signer.public_key_sec1(),
            &signer,
            &mut cert,
        )
    });
    let cert = cert
        .get(..len.map_err(|_| "asm cert")?)
        .ok_or("asm cert len")?;
    hprintln!(
        "p256-asm self-signed certificate: {} instructions, {} B stack",
        n,
        stack
    );
    let config = AgentConfig::new(
        "PS1",
        SiteMode::Mixed,
        "http://10.0.2.2:8080",
        "PROBE-1",
        "probe-1.local",
    )
    .map_err(|_| "config")?;
    let identity = SigningIdentity {
        signer: &signer,
        cert_der: cert,
    };
    let (out, n, stack) = measure::run(|| {
        build_request(
            &config,
            &identity,
            AgentType::Client,
            RequestType::Registration,
            None,
            NOW,
        )
        .is_ok()
    });
    if !out {
        return Err("asm build");
    }
    hprintln!(
        "p256-asm registration request build+sign: {} instructions, {} B stack",
        n,
        stack
    );
    let (out, n, stack) = measure::run(|| registration(&signer, cert));
    out?;
    hprintln!(
        "p256-asm registration request build+sign+stream: {} instructions, {} B stack",
        n,
        stack
    );

    // Known answers against the core's software signer.
    let soft = P256Signer::from_secret_bytes(&[0x5A; 32]).map_err(|_| "soft key")?;
    let mut soft_cert = [0u8; MAX_CERT_LEN];
    let soft_len =
        build_self_signed_p256(&cert_params(), &soft, &mut soft_cert).map_err(|_| "soft cert")?;
    if soft_cert.get(..soft_len) != Some(cert) {
        return Err("asm certificate differs from the software signer's");
    }
    let mut rng = ProbeRng(0x2545_F491_4F6C_DD1D);
    const DIGESTS: usize = 16;
    for _ in 0..DIGESTS {
        let mut d = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut d);
        let a = signer.sign_sha256(&d).map_err(|_| "asm sign")?;
        let b = soft.sign_sha256(&d).map_err(|_| "soft sign")?;
        if a != b {
            return Err("asm signature differs from the software signer's");
        }
    }
    const KEYS: u64 = 4;
    for seed in 1..=KEYS {
        let a = AsmP256Signer::generate(&mut ProbeRng(seed));
        let b = P256Signer::generate(&mut ProbeRng(seed));
        if a.secret_bytes() != b.secret_bytes()
            || a.public_key_sec1()[..] != b.verifying_key().to_encoded_point(false).as_bytes()[..]
        {
            return Err("asm key generation differs from the software signer's");
        }
    }
    hprintln!(
        "p256-asm known answers: {} signatures, the certificate and {} generated keys equal the software signer's",
        DIGESTS,
        KEYS
    );
    Ok(())
}

/// Instructions and stack of RSA-2048 operations, printed over semihosting.
#[cfg(feature = "rsa-measure")]
fn run_measure() -> Result<(), &'static str> {
    use mpagent_core::sign::RsaSigner;

    // Written in place, as the firmware imports its key.
    let mut key = RsaSigner::empty();
    let (loaded, n, stack) = measure::run(|| key.load_pkcs1_der(RSA_KEY));
    loaded.map_err(|_| "rsa key")?;
    hprintln!(
        "rsa-2048 import PKCS#1 (checked): {} instructions, {} B stack",
        n,
        stack
    );
    let digest = [0x42u8; 32];
    let (sig, n, stack) = measure::run(|| key.sign_sha256(&digest));
    sig.map_err(|_| "sign")?;
    hprintln!("rsa-2048 sign: {} instructions, {} B stack", n, stack);
    let mut cert = [0u8; mpagent_core::identity::MAX_RSA_CERT_LEN];
    let (len, n, stack) = measure::run(|| {
        mpagent_core::identity::build_self_signed_rsa(&cert_params(), &key, &mut cert)
    });
    len.map_err(|_| "rsa cert")?;
    hprintln!(
        "rsa-2048 self-signed certificate: {} instructions, {} B stack",
        n,
        stack
    );
    let mut total = 0u64;
    let mut deepest = 0usize;
    const SEEDS: u64 = 8;
    for seed in 1..=SEEDS {
        // In place, over the imported key (as the firmware fills its slot).
        let (made, n, stack) = measure::run(|| {
            key.generate_in_place(&mut ProbeRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        });
        made.map_err(|_| "keygen")?;
        hprintln!(
            "rsa-2048 keygen seed {}: {} instructions, {} B stack",
            seed,
            n,
            stack
        );
        total += n;
        deepest = deepest.max(stack);
    }
    hprintln!(
        "rsa-2048 keygen mean of {}: {} instructions, {} B stack at most",
        SEEDS,
        total / SEEDS,
        deepest
    );
    Ok(())
}

/// Prints `failed: what` and exits with failure. Not `hprintln!("{}")`: `core::fmt`'s string
/// padding would count in the registration path's size (the baseline never fails).
fn fail(what: &str) {
    if let Ok(mut out) = cortex_m_semihosting::hio::hstdout() {
        let _ = out.write_all(b"failed: ");
        let _ = out.write_all(what.as_bytes());
        let _ = out.write_all(b"\n");
    }
    debug::exit(debug::EXIT_FAILURE);
}

#[entry]
fn main() -> ! {
    #[cfg(feature = "measure")]
    if let Some(p) = cortex_m::Peripherals::take() {
        measure::start(p.SYST);
    }
    match run() {
        Ok((len, digest)) => {
            hprintln!(
                "registration request: {} bytes, sha256 {:02x?}",
                len,
                digest
            );
        }
        Err(what) => {
            fail(what);
        }
    }
    #[cfg(feature = "rsa")]
    match run_rsa() {
        Ok((len, digest)) => hprintln!(
            "rsa registration request: {} bytes, sha256 {:02x?}",
            len,
            digest
        ),
        Err(what) => {
            fail(what);
        }
    }
    #[cfg(all(feature = "rsa-keygen", not(feature = "rsa-measure")))]
    match run_keygen() {
        Ok(head) => hprintln!(
            "rsa key generated on the device; signature starts {:02x?}",
            head
        ),
        Err(what) => {
            fail(what);
        }
    }
    #[cfg(feature = "measure")]
    if let Err(what) = run_measure_p256() {
        fail(what);
    }
    #[cfg(all(feature = "measure", feature = "p256-asm"))]
    if let Err(what) = run_measure_asm() {
        fail(what);
    }
    #[cfg(feature = "rsa-measure")]
    if let Err(what) = run_measure() {
        fail(what);
    }
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}
