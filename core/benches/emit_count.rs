//! Instruction-count harness for `valgrind --tool=callgrind` (load-independent, unlike the
//! criterion figures): runs one part of one message kind N times, exactly as the criterion benches
//! time it, so `(Ir(N) - Ir(0)) / N` is its instruction count; `sign` runs the software ECDSA sign
//! alone for comparison. Not a criterion bench: `cargo bench` runs it without arguments and it
//! only prints how to use it (see docs/performance.md).
//!
//! `emit_count KIND N [WINDOW] [PART]`: WINDOW is the driver's buffer in bytes (default 512, 4096
//! for `reg`) or `whole` (one window one byte longer than the request); PART is `rest` (default: payload
//! digest + emission), `digest` or `emit` (lengths + streaming through the window).
use mpagent_core::agent::messages::{sign_message, MessageBody};
use mpagent_core::agent::outbound::Post;
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::agent::signed::{MessageSigner, SignedMessage};
use mpagent_core::config::AgentConfig;
use mpagent_core::guid::Guid;
use mpagent_core::sink::Emit;
use mpagent_core::wire::clientauth::{payload_digest, ClientIdSignature};
use mpagent_core::wire::registration::{AgentType, RequestType};
use std::hint::black_box;

mod fixture;
use fixture::{stream, NOW};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(what), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!(
            "usage: emit_count reg|reg_window|ddr|state|status|policy|hinv|sign|sha|sizes N \
             [WINDOW|whole] [rest|digest|emit]"
        );
        return;
    };
    let what = what.as_str();
    let signer = fixture::signer();
    let cert = fixture::certificate(&signer);
    let cert = cert.as_slice();
    let config = fixture::config();
    let identity = SigningIdentity {
        signer: &signer,
        cert_der: cert,
    };
    let post_params = fixture::registration_post();
    let req = build_request(
        &config,
        &identity,
        AgentType::Client,
        RequestType::Registration,
        None,
        NOW,
    )
    .unwrap();
    let smsid = fixture::SMSID;
    let cid = ClientIdSignature::compute(&signer, smsid).unwrap();
    let me = MessageSigner::client(identity, &cid);
    let fixture::Messages {
        ddr,
        hinv,
        state,
        status,
        policy,
    } = fixture::messages(&config);
    // `None`: one window holding the whole request.
    let window: Option<usize> = match args.get(2).map(String::as_str) {
        None => Some(if what == "reg" { 4096 } else { 512 }),
        Some("whole") => None,
        Some(w) => Some(w.parse().expect("WINDOW: bytes or `whole`")),
    };
    let part = match args.get(3).map(String::as_str) {
        None | Some("rest") => Part::Rest,
        Some("digest") => Part::Digest,
        Some("emit") => Part::Emit,
        Some(p) => panic!("unknown part {p}"),
    };
    let mut w4k = vec![0u8; 4096];
    fn kind<B: MessageBody>(
        n: usize,
        config: &AgentConfig<'_>,
        me: &MessageSigner<'_>,
        body: &B,
        window: Option<usize>,
        part: Part,
    ) {
        let msg: SignedMessage<'_> = sign_message(config, me, body, Guid([1; 16]), NOW).unwrap();
        // `whole`: one byte more than the request, so the first pass ends the stream (a window
        // exactly as long as the request takes a second, empty pass to learn that it is the last).
        let mut window = vec![0u8; window.unwrap_or_else(|| msg.request_length().unwrap() + 1)];
        for _ in 0..n {
            let d = part.digest().then(|| payload_digest(body).unwrap());
            let sent = part.emit().then(|| stream(&msg, &mut window));
            black_box((d, sent));
        }
    }
    if what == "sizes" {
        let post = Post::new(&config, post_params, &req).unwrap();
        println!(
            "cert {} B, reg request {} B, data {} B",
            cert.len(),
            mpagent_core::sink::emitted_len(&post).unwrap(),
            mpagent_core::sink::emitted_len(&req.data).unwrap()
        );
        for (name, m) in [
            (
                "ddr",
                sign_message(&config, &me, &ddr, Guid([1; 16]), NOW).unwrap(),
            ),
            (
                "state",
                sign_message(&config, &me, &state, Guid([1; 16]), NOW).unwrap(),
            ),
            (
                "status",
                sign_message(&config, &me, &status, Guid([1; 16]), NOW).unwrap(),
            ),
            (
                "policy",
                sign_message(&config, &me, &policy, Guid([1; 16]), NOW).unwrap(),
            ),
            (
                "hinv",
                sign_message(&config, &me, &hinv, Guid([1; 16]), NOW).unwrap(),
            ),
        ] {
            println!(
                "{name}: body {} request {}",
                m.body_length(),
                m.request_length().unwrap()
            );
        }
        return;
    }
    if what == "digests" {
        // SHA-256 of each kind's whole request as streamed through 512 B windows and through one
        // window: a quick check that a change to the emitters left every byte as it was.
        let whole = |m: &dyn Emit| {
            let len = mpagent_core::sink::emitted_len(m).unwrap();
            let mut bytes = Vec::new();
            for cap in [512, len + 1] {
                let mut window = vec![0u8; cap];
                let mut off = 0;
                loop {
                    let n = mpagent_core::agent::signed::fill_window(m, off, &mut window).unwrap();
                    bytes.extend_from_slice(&window[..n]);
                    off += n;
                    if n < cap {
                        break;
                    }
                }
            }
            assert_eq!(bytes.len(), 2 * len);
            let d = mpagent_core::sink::sha256_of(&|o: &mut dyn mpagent_core::sink::Sink| {
                o.write(&bytes)
            })
            .unwrap();
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let post = Post::new(&config, post_params, &req).unwrap();
        println!("reg {}", whole(&post));
        let bodies: [(&str, &dyn MessageBodyDyn); 5] = [
            ("ddr", &ddr),
            ("state", &state),
            ("status", &status),
            ("policy", &policy),
            ("hinv", &hinv),
        ];
        for (name, b) in bodies {
            let m = b.sign(&config, &me);
            println!("{name} {}", whole(&m));
        }
        return;
    }
    match what {
        // Registration as `benches/registration.rs` and `io::exchange` now stream it: `fill_window`
        // (each window pass stops once its window is full; no counting pass).
        "reg" => {
            let len =
                mpagent_core::sink::emitted_len(&Post::new(&config, post_params, &req).unwrap())
                    .unwrap();
            let mut window = vec![0u8; window.unwrap_or(len + 1)];
            for _ in 0..n {
                let digest = part
                    .digest()
                    .then(|| mpagent_core::sink::sha256_of(&req.data).unwrap());
                let sent = part.emit().then(|| {
                    let post = Post::new(&config, post_params, &req).unwrap();
                    stream(&post, &mut window)
                });
                black_box((digest, sent));
            }
        }
        // Registration as `io::exchange` streamed it before: count, then one full pass through a
        // `WindowSink` per window (a baseline for the skipping sinks).
        "reg_window" => {
            for _ in 0..n {
                let digest = mpagent_core::sink::sha256_of(&req.data).unwrap();
                let post = Post::new(&config, post_params, &req).unwrap();
                let total = mpagent_core::sink::emitted_len(&post).unwrap();
                let mut off = 0;
                while off < total {
                    let mut w = mpagent_core::sink::WindowSink::new(&mut w4k, off);
                    post.emit(&mut w).unwrap();
                    off += w.filled();
                }
                black_box((digest, off));
            }
        }
        "sha" => {
            let data = vec![7u8; 65536];
            for _ in 0..n {
                black_box(
                    mpagent_core::sink::sha256_of(&|o: &mut dyn mpagent_core::sink::Sink| {
                        o.write(black_box(&data))
                    })
                    .unwrap(),
                );
            }
        }
        "sign" => {
            for _ in 0..n {
                black_box(
                    mpagent_core::sign::Signer::sign_sha256(&signer, black_box(&[7u8; 32]))
                        .unwrap(),
                );
            }
        }
        "ddr" => kind(n, &config, &me, &ddr, window, part),
        "state" => kind(n, &config, &me, &state, window, part),
        "status" => kind(n, &config, &me, &status, window, part),
        "policy" => kind(n, &config, &me, &policy, window, part),
        "hinv" => kind(n, &config, &me, &hinv, window, part),
        _ => eprintln!("unknown kind {what}"),
    }
}

/// Which part of a message's non-sign cost to run.
#[derive(Clone, Copy)]
enum Part {
    /// Payload digest and emission.
    Rest,
    /// The payload digest (hash of the body) only.
    Digest,
    /// Lengths and streaming through the window only.
    Emit,
}

impl Part {
    fn digest(self) -> bool {
        matches!(self, Self::Rest | Self::Digest)
    }
    fn emit(self) -> bool {
        matches!(self, Self::Rest | Self::Emit)
    }
}

/// `sign_message` for any kind, so `digests` can loop over them.
trait MessageBodyDyn {
    fn sign<'a>(
        &'a self,
        config: &'a AgentConfig<'a>,
        me: &'a MessageSigner<'a>,
    ) -> SignedMessage<'a>;
}

impl<B: MessageBody> MessageBodyDyn for B {
    fn sign<'a>(
        &'a self,
        config: &'a AgentConfig<'a>,
        me: &'a MessageSigner<'a>,
    ) -> SignedMessage<'a> {
        sign_message(config, me, self, Guid([1; 16]), NOW).unwrap()
    }
}
