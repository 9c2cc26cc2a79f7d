//! Host cost of the messages after registration, per kind: build + sign + stream the whole HTTP
//! request through a small window (what `io::send_message` does), against the one ECDSA sign each
//! message needs (`PayloadSignature`; `ClientIDSignature` is cached), and everything but that sign.
//! For the 64 KiB hardware inventory, the window size is swept to show the RAM/time trade-off of
//! re-emitting per window (RAM stays constant: the window is the only buffer).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpagent_core::agent::messages::{sign_message, MessageBody, PolicyBodyRequest};
use mpagent_core::agent::registration::SigningIdentity;
use mpagent_core::agent::signed::{MessageSigner, SignedMessage};
use mpagent_core::config::AgentConfig;
use mpagent_core::guid::Guid;
use mpagent_core::sign::Signer;
use mpagent_core::wire::clientauth::{payload_digest, ClientIdSignature};
use mpagent_core::wire::report::MAX_NAMESPACE_LEN;

mod fixture;
use fixture::{stream, NOW};

/// The window the driver streams requests through in these figures.
const WINDOW: usize = 512;

fn bench(c: &mut Criterion) {
    let signer = fixture::signer();
    let cert = fixture::certificate(&signer);
    let config = fixture::config();
    let smsid = fixture::SMSID;
    let cid = ClientIdSignature::compute(&signer, smsid).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &signer,
            cert_der: &cert,
        },
        &cid,
    );
    let fixture::Messages {
        ddr,
        hinv,
        state,
        status,
        policy,
    } = fixture::messages(&config);

    let mut window = vec![0u8; WINDOW];
    let mut g = c.benchmark_group("messages");
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(4));

    g.bench_function("ECDSA P-256 sign only (one per message)", |b| {
        b.iter(|| black_box(signer.sign_sha256(black_box(&[7u8; 32])).unwrap()))
    });

    fn kind<B: MessageBody>(
        g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
        config: &AgentConfig<'_>,
        me: &MessageSigner<'_>,
        body: &B,
        window: &mut [u8],
    ) {
        let msg: SignedMessage<'_> = sign_message(config, me, body, Guid([1; 16]), NOW).unwrap();
        eprintln!(
            "{name}: body {} B (UTF-16LE + NUL), request {} B, {} windows of {} B",
            msg.body_length(),
            msg.request_length().unwrap(),
            msg.request_length().unwrap().div_ceil(window.len()),
            window.len()
        );
        g.bench_function(format!("{name}: total (hash + sign + stream)"), |b| {
            b.iter(|| {
                let msg = sign_message(config, me, body, Guid([1; 16]), NOW).unwrap();
                black_box(stream(&msg, window))
            })
        });
        g.bench_function(format!("{name}: all but the sign (hash + stream)"), |b| {
            b.iter(|| {
                let d = payload_digest(body).unwrap();
                black_box((d, stream(&msg, window)))
            })
        });
    }

    kind(&mut g, "DDR heartbeat", &config, &me, &ddr, &mut window);
    kind(&mut g, "state message", &config, &me, &state, &mut window);
    kind(&mut g, "status message", &config, &me, &status, &mut window);
    kind(&mut g, "policy request", &config, &me, &policy, &mut window);
    kind(
        &mut g,
        "hardware inventory 64 KiB",
        &config,
        &me,
        &hinv,
        &mut window,
    );

    // The 64 KiB inventory through other windows: constant RAM either way, fewer passes when larger.
    let msg = sign_message(&config, &me, &hinv, Guid([1; 16]), NOW).unwrap();
    for w in [1460usize, 4096, 16_384] {
        let mut win = vec![0u8; w];
        g.bench_function(
            format!("hardware inventory 64 KiB: stream only, {w} B window"),
            |b| b.iter(|| black_box(stream(&msg, &mut win))),
        );
    }
    g.bench_function(
        "hardware inventory 64 KiB: stream only, 512 B window",
        |b| b.iter(|| black_box(stream(&msg, &mut window))),
    );
    g.bench_function("hardware inventory 64 KiB: one pass (hash)", |b| {
        b.iter(|| black_box(payload_digest(&hinv).unwrap()))
    });

    g.bench_function("policy body GET: token + sign + head", |b| {
        b.iter(|| {
            let req = PolicyBodyRequest::new(
                &config,
                &signer,
                smsid,
                "http://<mp>/SMS_MP/.sms_pol?{c6fe32fb-7e9c-4776-abe3-2a6d107447f1}.2_00",
                NOW,
            )
            .unwrap();
            black_box(stream(&req, &mut window))
        })
    });
    g.finish();

    eprintln!(
        "RAM of one send (besides the caller's window of {WINDOW} B): SignedMessage {} B, \
         ClientIdSignature {} B (cached by the caller), PolicyBodyRequest {} B; per instance a \
         {MAX_NAMESPACE_LEN} B namespace string and the XML writer's 64 B encode chunk on the stack",
        std::mem::size_of::<SignedMessage<'_>>(),
        std::mem::size_of::<ClientIdSignature>(),
        std::mem::size_of::<PolicyBodyRequest<'_>>(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
