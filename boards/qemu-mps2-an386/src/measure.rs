//! `--features measure`: the CPU work of a registration, one operation at a time, instead of
//! registering. Run under `qemu-system-arm … -icount shift=0` (virtual time counts instructions):
//! instructions = SysTick counts × 40 (25 MHz clock, 1 ns per instruction). Each operation runs
//! twice: once counted (interrupts on, so SysTick wraps are seen), once with interrupts masked
//! for its stack (painting below the caller's frame). `boards/size-report.sh` parses the lines.
//! The steps run on the core's software P-256 signer, then ("asm …") on the firmware's own
//! signer, P256-Cortex-M4.

use defmt::info;
use mpagent_core::agent::outbound::{Post, PostParams};
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::config::AgentConfig;
use mpagent_core::guid::Guid;
use mpagent_core::identity::{
    build_self_signed_p256, build_self_signed_p256_point, CertParams, MAX_CERT_LEN,
};
use mpagent_core::sign::{P256Signer, Signer};
use mpagent_core::sink::{emitted_len, Emit, Sha256Sink, Sink, WindowSink};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::header::{endpoint, ReplyMode};
use mpagent_core::wire::registration::{AgentType, RequestType};
use mpagent_firmware_common::p256_asm::AsmP256Signer;
use rand_chacha::ChaCha20Rng;

use crate::{stack_paint, time_driver};

const INSTRUCTIONS_PER_COUNT: u64 = 40;

fn measure<T>(what: &str, mut f: impl FnMut() -> T) -> T {
    let t0 = time_driver::core_clock_counts();
    let out = core::hint::black_box(f());
    let counts = time_driver::core_clock_counts() - t0;
    let (_, stack) = stack_paint::used_by(&mut f);
    info!(
        "measure {=str}: {=u64} instructions, {=usize} B stack",
        what,
        counts * INSTRUCTIONS_PER_COUNT,
        stack
    );
    out
}

/// Stream `post` through a 512-byte window into a hasher, as the transport streams it into
/// the socket; returns the length.
fn stream(post: &dyn Emit) -> usize {
    let Ok(total) = emitted_len(post) else {
        return 0;
    };
    let mut hash = Sha256Sink::default();
    let mut window = [0u8; 512];
    let mut off = 0;
    while off < total {
        let mut w = WindowSink::new(&mut window, off);
        if post.emit(&mut w).is_err() || w.filled() == 0 {
            return 0;
        }
        let n = w.filled();
        let _ = hash.write(&window[..n]);
        off += n;
    }
    core::hint::black_box(hash.finish());
    total
}

/// Measure every step of a first registration's CPU work.
pub fn report(config: &AgentConfig<'_>, now: UnixTime, rng: &mut ChaCha20Rng) {
    let signer = measure("P-256 key generation", || P256Signer::generate(rng));
    let secret = signer.secret_bytes();
    measure("P-256 key load (secret -> public key)", || {
        P256Signer::from_secret_bytes(&secret).is_ok()
    });
    measure("P-256 sign (one digest)", || {
        signer.sign_sha256(&[0x42; 32]).is_ok()
    });
    let params = CertParams {
        common_name: config.netbios_name,
        not_before: now,
        not_after: now.plus(86_400),
        serial: [0x41; 16],
    };
    let mut cert = [0u8; MAX_CERT_LEN];
    let len = measure("self-signed certificate", || {
        build_self_signed_p256(&params, &signer, &mut cert).unwrap_or(0)
    });
    let identity = SigningIdentity {
        signer: &signer,
        cert_der: &cert[..len],
    };
    let build = || {
        build_request(
            config,
            &identity,
            AgentType::Client,
            RequestType::Registration,
            None,
            now,
        )
    };
    let Ok(request) = measure("registration request build+sign", build) else {
        defmt::error!("measure: building the request failed");
        return;
    };
    let params = PostParams {
        endpoint: endpoint::CLIENT_REGISTRATION,
        reply_mode: ReplyMode::Sync,
        source_id: None,
        message_id: Guid([0x22; 16]),
        now,
        hooks: None,
    };
    let Ok(post) = Post::new(config, params, &request) else {
        defmt::error!("measure: framing the request failed");
        return;
    };
    let total = measure("request stream (512-byte window, hashed)", || stream(&post));
    info!("measure request length: {=usize} bytes", total);
    report_asm(config, now, rng);
}

/// The same steps on the firmware's signer, P256-Cortex-M4 (boards/firmware-common/src/p256_asm.rs).
fn report_asm(config: &AgentConfig<'_>, now: UnixTime, rng: &mut ChaCha20Rng) {
    let signer = measure("asm P-256 key generation", || AsmP256Signer::generate(rng));
    let secret = signer.secret_bytes();
    measure("asm P-256 key load (secret -> public key)", || {
        AsmP256Signer::from_secret_bytes(&secret).is_ok()
    });
    measure("asm P-256 sign (one digest)", || {
        signer.sign_sha256(&[0x42; 32]).is_ok()
    });
    let params = CertParams {
        common_name: config.netbios_name,
        not_before: now,
        not_after: now.plus(86_400),
        serial: [0x41; 16],
    };
    let mut cert = [0u8; MAX_CERT_LEN];
    let point = signer.public_key_sec1();
    let len = measure("asm self-signed certificate", || {
        build_self_signed_p256_point(&params, &point, &signer, &mut cert).unwrap_or(0)
    });
    let identity = SigningIdentity {
        signer: &signer,
        cert_der: &cert[..len],
    };
    let build = || {
        build_request(
            config,
            &identity,
            AgentType::Client,
            RequestType::Registration,
            None,
            now,
        )
    };
    if measure("asm registration request build+sign", build).is_err() {
        defmt::error!("measure: building the request failed");
    }
}
