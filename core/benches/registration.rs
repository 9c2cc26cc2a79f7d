//! Host cost of one registration: build + sign + stream the whole HTTP request through a
//! 4 KiB window (what the driver does), against the ECDSA sign alone, so the share of everything
//! but the sign is visible.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpagent_core::agent::outbound::{Post, PostParams};
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::agent::signed::fill_window;
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::Guid;
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
use mpagent_core::sign::{P256Signer, Signer};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::header::{endpoint, ReplyMode};
use mpagent_core::wire::registration::{AgentType, RequestType};

const NOW: UnixTime = UnixTime(1_795_428_000);

/// Stream through `window` as `io::exchange` does (one pass per window, each stopping once its
/// window is full); returns the request length.
fn stream(post: &Post<'_>, window: &mut [u8]) -> usize {
    let mut off = 0;
    loop {
        let n = fill_window(post, off, window).unwrap();
        off += n;
        if n < window.len() {
            return off;
        }
    }
}

fn bench(c: &mut Criterion) {
    let signer = P256Signer::from_secret_bytes(&[0x5A; 32]).unwrap();
    let params = CertParams {
        common_name: "BENCH-1",
        not_before: NOW.minus(86_400),
        not_after: NOW.plus(86_400 * 3650),
        serial: [0x11; 16],
    };
    let mut cert = [0u8; MAX_CERT_LEN];
    let len = build_self_signed_p256(&params, &signer, &mut cert).unwrap();
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
        signer: &signer,
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
    let mut window = vec![0u8; 4096];

    c.bench_function("registration: build + sign + stream (total)", |b| {
        b.iter(|| {
            let req = build_request(
                &config,
                &identity,
                AgentType::Client,
                RequestType::Registration,
                None,
                NOW,
            )
            .unwrap();
            let post = Post::new(&config, post_params, &req).unwrap();
            black_box(stream(&post, &mut window))
        })
    });
    c.bench_function("registration: ECDSA P-256 sign only", |b| {
        b.iter(|| black_box(signer.sign_sha256(black_box(&[7u8; 32])).unwrap()))
    });
    let req = build_request(
        &config,
        &identity,
        AgentType::Client,
        RequestType::Registration,
        None,
        NOW,
    )
    .unwrap();
    c.bench_function(
        "registration: everything but the sign (hash Data, lengths, stream)",
        |b| {
            b.iter(|| {
                let digest = mpagent_core::sink::sha256_of(&req.data).unwrap();
                let post = Post::new(&config, post_params, &req).unwrap();
                black_box((digest, stream(&post, &mut window)))
            })
        },
    );
    c.bench_function("certificate: build self-signed P-256", |b| {
        let mut out = [0u8; MAX_CERT_LEN];
        b.iter(|| black_box(build_self_signed_p256(&params, &signer, &mut out).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
