//! Host cost of the RSA-2048 signer: one PKCS#1 v1.5 signature (CRT, with its fault check),
//! loading a PKCS#1 key (which checks it), the self-signed certificate, and key generation (few
//! samples: its time varies from key to key with the distance to the next primes).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpagent_core::identity::{build_self_signed_rsa, CertParams, MAX_RSA_CERT_LEN};
use mpagent_core::sign::rsa::RSA_PKCS1_DER_MAX_LEN;
use mpagent_core::sign::{RsaSigner, Signer};
use mpagent_core::time::UnixTime;

const NOW: UnixTime = UnixTime(1_795_428_000);

fn bench(c: &mut Criterion) {
    let signer = RsaSigner::generate(&mut rand_core::OsRng).unwrap();
    let digest = [0x42u8; 32];
    c.bench_function("rsa-2048: sign (wire form)", |b| {
        b.iter(|| black_box(signer.sign_sha256(black_box(&digest)).unwrap()))
    });
    let mut der = [0u8; RSA_PKCS1_DER_MAX_LEN];
    let der = signer.to_pkcs1_der(&mut der).unwrap().to_vec();
    c.bench_function("rsa-2048: load PKCS#1 DER (checked)", |b| {
        b.iter(|| black_box(RsaSigner::from_pkcs1_der(black_box(&der)).unwrap()))
    });
    let params = CertParams {
        common_name: "BENCH-1",
        not_before: NOW.minus(86_400),
        not_after: NOW.plus(86_400 * 3650),
        serial: [0x11; 16],
    };
    c.bench_function("rsa-2048: build self-signed certificate", |b| {
        let mut out = [0u8; MAX_RSA_CERT_LEN];
        b.iter(|| black_box(build_self_signed_rsa(&params, &signer, &mut out).unwrap()))
    });
    let mut slow = c.benchmark_group("rsa-2048 keygen");
    slow.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    slow.bench_function("generate", |b| {
        b.iter(|| black_box(RsaSigner::generate(&mut rand_core::OsRng).unwrap()))
    });
    slow.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
