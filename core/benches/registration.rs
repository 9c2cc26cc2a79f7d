//! Host cost of one registration, split so the overhead share is visible: the ECDSA
//! sign of `<Data>`, building the request without that sign (hashing `<Data>`: `build_request`
//! with a [`fixture::Presigned`] signer), and emitting it (`Post::new`'s lengths + streaming the
//! HTTP request as `io::exchange` does) through a 512 B window, a 4 KiB window (the host
//! client's buffer) and one window holding the whole request. A share table closes the run.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpagent_core::agent::outbound::Post;
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::config::AgentConfig;
use mpagent_core::sign::Signer;
use mpagent_core::sink::emitted_len;
use mpagent_core::wire::registration::{AgentType, RegistrationRequest, RequestType};

mod fixture;
use fixture::{median_us, stream, Breakdown, Presigned, NOW, WINDOWS};

/// The fixture's registration request, signed by `signer`.
fn build<'a>(
    config: &AgentConfig<'a>,
    signer: &'a dyn Signer,
    cert_der: &'a [u8],
) -> RegistrationRequest<'a> {
    let identity = SigningIdentity { signer, cert_der };
    build_request(
        config,
        &identity,
        AgentType::Client,
        RequestType::Registration,
        None,
        NOW,
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let signer = fixture::signer();
    let cert = fixture::certificate(&signer);
    let cert = cert.as_slice();
    let config = fixture::config();
    let post_params = fixture::registration_post();
    let build = |signer| build(&config, signer, cert);

    c.bench_function(
        "registration: build + sign + stream, 4 KiB window (total)",
        |b| {
            let mut window = vec![0u8; 4096];
            b.iter(|| {
                let req = build(&signer);
                let post = Post::new(&config, post_params, &req).unwrap();
                black_box(stream(&post, &mut window))
            })
        },
    );
    let sign = || black_box(signer.sign_sha256(black_box(&[7u8; 32])).unwrap());
    c.bench_function("registration: ECDSA P-256 sign only", |b| b.iter(sign));
    let sign_us = median_us(|| {
        sign();
    });

    let presigned = Presigned::new(&signer);
    c.bench_function("registration: build without the sign (hash Data)", |b| {
        b.iter(|| black_box(build(&presigned)))
    });
    let build_us = median_us(|| {
        black_box(build(&presigned));
    });
    let req = build(&signer);
    let request_len = emitted_len(&Post::new(&config, post_params, &req).unwrap()).unwrap();
    let mut emit = [0.0; 3];
    for (w, e) in WINDOWS.iter().zip(&mut emit) {
        let mut window = vec![0u8; w.unwrap_or(request_len + 1)];
        let name = match w {
            Some(w) => format!("registration: emit (lengths + stream) through a {w} B window"),
            None => format!("registration: emit through one window ({request_len} B request)"),
        };
        let mut run = || {
            let post = Post::new(&config, post_params, &req).unwrap();
            black_box(stream(&post, &mut window))
        };
        c.bench_function(&name, |b| b.iter(&mut run));
        *e = median_us(|| {
            run();
        });
    }

    c.bench_function("certificate: build self-signed P-256", |b| {
        b.iter(|| black_box(fixture::certificate(&signer)))
    });
    // The signature covers `<Data>`'s UTF-16LE bytes.
    let signed_len = emitted_len(&req.data).unwrap();
    fixture::print_shares(
        sign_us,
        &[Breakdown {
            kind: "registration",
            request_len,
            build: build_us,
            emit,
            signed_len,
            sha: fixture::sha256_us(signed_len),
            once: None,
        }],
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
