//! Size probe: builds a self-signed certificate and a signed registration request with the core,
//! streams the request through a 512-byte window into a hasher (as a transport would), prints the
//! length and digest over semihosting and exits. No global allocator exists in this image: the
//! link itself proves the core needs none.
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
#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
#[cfg_attr(feature = "baseline", allow(unused_imports))]
use mpagent_core::sign::P256Signer;
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
fn run() -> Result<(usize, [u8; 32]), &'static str> {
    let signer = P256Signer::from_secret_bytes(&[0x5A; 32]).map_err(|_| "key")?;
    let params = CertParams {
        common_name: "PROBE-1",
        not_before: NOW.minus(86_400),
        not_after: NOW.plus(10 * 365 * 86_400),
        serial: [0x11; 16],
    };
    let mut cert = [0u8; MAX_CERT_LEN];
    let cert_len = build_self_signed_p256(&params, &signer, &mut cert).map_err(|_| "cert")?;
    let cert = cert.get(..cert_len).ok_or("cert len")?;
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

#[entry]
fn main() -> ! {
    match run() {
        Ok((len, digest)) => {
            hprintln!(
                "registration request: {} bytes, sha256 {:02x?}",
                len,
                digest
            );
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(what) => {
            hprintln!("failed: {}", what);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    loop {
        cortex_m::asm::wfi();
    }
}
