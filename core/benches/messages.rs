//! Host cost of the messages after registration, per kind, split so the overhead share is
//! visible: the one ECDSA sign each message needs (`PayloadSignature`;
//! `ClientIDSignature` is cached), building the message without that sign (the payload digest,
//! the lengths, the header: `sign_message` with a [`fixture::Presigned`] signer), and emitting it
//! (streaming the whole HTTP request as `io::send_message` does) through a 512 B window, a 4 KiB
//! window and one window holding the whole request. RAM stays constant whatever the window: it
//! is the only buffer. A table of the shares, rest / (rest + sign), closes the run.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpagent_core::agent::messages::{sign_message, MessageBody, PolicyBodyRequest};
use mpagent_core::agent::registration::SigningIdentity;
use mpagent_core::agent::signed::{MessageParams, MessageSigner, SignedMessage};
use mpagent_core::config::AgentConfig;
use mpagent_core::guid::Guid;
use mpagent_core::sign::Signer;
use mpagent_core::sink::{Overflow, Sink};
use mpagent_core::wire::clientauth::ClientIdSignature;

mod fixture;
use fixture::{median_us, stream, Breakdown, Presigned, NOW, WINDOWS};

/// Appends to a `Vec` (the host's render buffer).
struct VecSink<'v>(&'v mut Vec<u8>);

impl Sink for VecSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Bench one kind: build without the sign, then emit through each of [`WINDOWS`].
fn kind<B: MessageBody>(
    g: &mut Group<'_>,
    kind: &'static str,
    config: &AgentConfig<'_>,
    presigned: &MessageSigner<'_>,
    body: &B,
) -> Breakdown {
    let build = || sign_message(config, presigned, body, Guid([1; 16]), NOW).unwrap();
    let msg: SignedMessage<'_> = build();
    let request_len = msg.request_length().unwrap();
    g.bench_function(
        format!("{kind}: build without the sign (digest, lengths)"),
        |b| b.iter(|| black_box(build())),
    );
    let build_us = median_us(|| {
        black_box(build());
    });
    let mut emit = [0.0; 3];
    for (w, e) in WINDOWS.iter().zip(&mut emit) {
        let mut window = vec![0u8; w.unwrap_or(request_len + 1)];
        let name = match w {
            Some(w) => format!("{kind}: emit through a {w} B window"),
            None => format!("{kind}: emit through one window ({request_len} B request)"),
        };
        g.bench_function(name, |b| b.iter(|| black_box(stream(&msg, &mut window))));
        *e = median_us(|| {
            black_box(stream(&msg, &mut window));
        });
    }
    // The host's render-once path (host-sim's fleet): the body rendered once into a reused
    // buffer, then signed and sent from those bytes, so it is not rendered a second time.
    let mut rendered = Vec::new();
    let mut whole = vec![0u8; request_len + 1];
    let mut once = || {
        rendered.clear();
        body.emit(&mut VecSink(&mut rendered)).unwrap();
        let bytes = &rendered[..];
        let copy = |o: &mut dyn Sink| o.write(bytes);
        let params = MessageParams {
            endpoint: body.endpoint(),
            reply_mode: body.reply_mode(),
            message_id: Guid([1; 16]),
            now: NOW,
        };
        let m = SignedMessage::new(config, presigned, params, &copy).unwrap();
        black_box(stream(&m, &mut whole))
    };
    assert_eq!(
        once(),
        request_len,
        "{kind}: the render-once request has another length"
    );
    g.bench_function(
        format!("{kind}: rendered once, build + emit (one window)"),
        |b| b.iter(&mut once),
    );
    let once_us = median_us(|| {
        once();
    });
    // PayloadSignature covers the octet part: the body, its UTF-16 NUL and the CRLF.
    let signed_len = msg.body_length() + 2;
    Breakdown {
        kind,
        request_len,
        build: build_us,
        emit,
        signed_len,
        sha: fixture::sha256_us(signed_len),
        once: Some(once_us),
    }
}

fn bench(c: &mut Criterion) {
    let signer = fixture::signer();
    let cert = fixture::certificate(&signer);
    let config = fixture::config();
    let smsid = fixture::SMSID;
    let cid = ClientIdSignature::compute(&signer, smsid).unwrap();
    let presigned = Presigned::new(&signer);
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &presigned,
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

    let mut g = c.benchmark_group("messages");
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(3));

    let sign = || black_box(signer.sign_sha256(black_box(&[7u8; 32])).unwrap());
    g.bench_function("ECDSA P-256 sign only (one per message)", |b| b.iter(sign));
    let sign_us = median_us(|| {
        sign();
    });

    let rows = [
        kind(&mut g, "DDR heartbeat", &config, &me, &ddr),
        kind(&mut g, "state message", &config, &me, &state),
        kind(&mut g, "status message", &config, &me, &status),
        kind(&mut g, "policy request", &config, &me, &policy),
        kind(&mut g, "hardware inventory 64 KiB", &config, &me, &hinv),
    ];

    let mut window = vec![0u8; 512];
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

    fixture::print_shares(sign_us, &rows);
    eprintln!(
        "RAM of one send (besides the caller's window): SignedMessage {} B, ClientIdSignature {} B \
         (cached by the caller), PolicyBodyRequest {} B; the XML writer's encode chunk on the stack, \
         one per writer (256 B on 64-bit hosts, 64 B on boards)",
        std::mem::size_of::<SignedMessage<'_>>(),
        std::mem::size_of::<ClientIdSignature>(),
        std::mem::size_of::<PolicyBodyRequest<'_>>(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
