//! Host cost of one registration: build + sign + stream the whole HTTP request through a
//! 4 KiB window (what the driver does), against the ECDSA sign alone, so the share of everything
//! but the sign is visible.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpagent_core::agent::outbound::Post;
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::sign::Signer;
use mpagent_core::wire::registration::{AgentType, RequestType};

mod fixture;
use fixture::{stream, NOW};

fn bench(c: &mut Criterion) {
    let signer = fixture::signer();
    let cert = fixture::certificate(&signer);
    let cert = cert.as_slice();
    let config = fixture::config();
    let identity = SigningIdentity {
        signer: &signer,
        cert_der: cert,
    };
    let post_params = fixture::registration_post();
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
        b.iter(|| black_box(fixture::certificate(&signer)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
