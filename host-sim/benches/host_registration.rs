//! Host cost of one registration with the host's signer ([`HostP256Signer`], OpenSSL P-256):
//! build + sign (what the client does before sending), and the same plus streaming the whole
//! request through a 4 KiB window, against the sign alone and the core's software signer.
//! Goal (issue 8): build + sign ≤ 50 µs.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpagent_core::agent::outbound::{Post, PostParams};
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::agent::signed::fill_window;
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::Guid;
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
use mpagent_core::sign::{P256Signer, Signer};
use mpagent_core::sink::Emit;
use mpagent_core::time::UnixTime;
use mpagent_core::wire::header::{endpoint, ReplyMode};
use mpagent_core::wire::registration::{AgentType, RequestType};
use mpagent_sim::sign::HostP256Signer;

const NOW: UnixTime = UnixTime(1_795_428_000);

/// Stream through `window` as the driver does; returns the request length.
fn stream(msg: &dyn Emit, window: &mut [u8]) -> usize {
    let mut off = 0;
    loop {
        let n = fill_window(msg, off, window).unwrap();
        off += n;
        if n < window.len() {
            return off;
        }
    }
}

fn bench(c: &mut Criterion) {
    let soft = P256Signer::from_secret_bytes(&[0x5A; 32]).unwrap();
    let host = HostP256Signer::new(soft.clone()).unwrap();
    let params = CertParams {
        common_name: "BENCH-1",
        not_before: NOW.minus(86_400),
        not_after: NOW.plus(86_400 * 3650),
        serial: [0x11; 16],
    };
    let mut cert = [0u8; MAX_CERT_LEN];
    let len = build_self_signed_p256(&params, &soft, &mut cert).unwrap();
    let cert = &cert[..len];
    let config = AgentConfig::new(
        "PS1",
        SiteMode::Mixed,
        "http://mp.bench:8080",
        "BENCH-1",
        "bench-1.local",
    )
    .unwrap();
    let identity = SigningIdentity {
        signer: &host,
        cert_der: cert,
    };
    let post_params = PostParams {
        endpoint: endpoint::CLIENT_REGISTRATION,
        reply_mode: ReplyMode::Sync,
        source_id: None,
        message_id: Guid([0x22; 16]),
        now: NOW,
        hooks: None,
    };
    let build = || {
        build_request(
            &config,
            &identity,
            AgentType::Client,
            RequestType::Registration,
            None,
            NOW,
        )
        .unwrap()
    };
    let mut window = vec![0u8; 4096];

    let mut g = c.benchmark_group("host registration");
    g.bench_function("build + sign (OpenSSL P-256)", |b| {
        b.iter(|| black_box(build()))
    });
    g.bench_function("build + sign + stream, 4 KiB window (OpenSSL P-256)", |b| {
        b.iter(|| {
            let req = build();
            let post = Post::new(&config, post_params, &req).unwrap();
            black_box(stream(&post, &mut window))
        })
    });
    g.bench_function("sign only (OpenSSL P-256)", |b| {
        b.iter(|| black_box(host.sign_sha256(black_box(&[7u8; 32])).unwrap()))
    });
    g.bench_function("sign only (core software P-256, for comparison)", |b| {
        b.iter(|| black_box(soft.sign_sha256(black_box(&[7u8; 32])).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
