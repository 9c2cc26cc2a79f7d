//! Host cost of one registration with the host's signer ([`HostP256Signer`], OpenSSL P-256):
//! build + sign (what the client does before sending), and the same plus streaming the whole
//! request through a 4 KiB window, against the sign alone and the core's software signer.
//! The RSA-2048 rows ([`HostRsaSigner`], OpenSSL RSA) compare build + sign with one OpenSSL
//! sign in the same run (goal: ≤ 1.25×) and with the core's software RSA.
//! Goal for P-256: build + sign ≤ 50 µs.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpagent_core::agent::outbound::Post;
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::identity::CertParams;
use mpagent_core::sign::Signer;
use mpagent_core::wire::registration::{AgentType, RequestType};
use mpagent_sim::client::state::ClientSigner;
use mpagent_sim::sign::{HostP256Signer, HostRsaSigner};

#[path = "../../core/benches/fixture/mod.rs"]
mod fixture;
use fixture::{stream, NOW};

fn bench(c: &mut Criterion) {
    let soft = fixture::signer();
    let host = HostP256Signer::new(soft.clone()).unwrap();
    let cert = fixture::certificate(&soft);
    let config = fixture::config();
    let identity = SigningIdentity {
        signer: &host,
        cert_der: &cert,
    };
    let post_params = fixture::registration_post();
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

    let rsa = HostRsaSigner::generate().unwrap();
    let params = CertParams::self_signed_now("FLT0000001", NOW, &mut rand_core::OsRng);
    let rsa_cert = ClientSigner::Rsa(rsa.clone())
        .self_signed_cert(&params)
        .unwrap();
    let rsa_identity = SigningIdentity {
        signer: &rsa,
        cert_der: &rsa_cert,
    };
    g.bench_function("build + sign (OpenSSL RSA-2048)", |b| {
        b.iter(|| {
            black_box(
                build_request(
                    &config,
                    &rsa_identity,
                    AgentType::Client,
                    RequestType::Registration,
                    None,
                    NOW,
                )
                .unwrap(),
            )
        })
    });
    g.bench_function("sign only (OpenSSL RSA-2048)", |b| {
        b.iter(|| black_box(rsa.sign_sha256(black_box(&[7u8; 32])).unwrap()))
    });
    g.bench_function("sign only (core software RSA-2048, for comparison)", |b| {
        b.iter(|| black_box(rsa.software().sign_sha256(black_box(&[7u8; 32])).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
