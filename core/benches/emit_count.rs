//! Instruction-count harness for `valgrind --tool=callgrind` (load-independent, unlike the
//! criterion figures): runs the non-sign part of one message kind N times, exactly as the
//! criterion benches time it, so `(Ir(N) - Ir(0)) / N` is its instruction count; `sign` runs the
//! software ECDSA sign alone for comparison. Not a criterion bench: `cargo bench` runs it without
//! arguments and it only prints how to use it (see docs/performance.md).
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
        eprintln!("usage: emit_count reg|reg_window|ddr|state|status|policy|hinv|sign|sizes N");
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
    let mut w4k = vec![0u8; 4096];
    let mut w512 = vec![0u8; 512];
    fn kind<B: MessageBody>(
        n: usize,
        config: &AgentConfig<'_>,
        me: &MessageSigner<'_>,
        body: &B,
        window: &mut [u8],
    ) {
        let msg: SignedMessage<'_> = sign_message(config, me, body, Guid([1; 16]), NOW).unwrap();
        for _ in 0..n {
            let d = payload_digest(body).unwrap();
            black_box((d, stream(&msg, window)));
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
    match what {
        // Registration as `benches/registration.rs` and `io::exchange` now stream it: `fill_window`
        // (each window pass stops once its window is full; no counting pass).
        "reg" => {
            for _ in 0..n {
                let digest = mpagent_core::sink::sha256_of(&req.data).unwrap();
                let post = Post::new(&config, post_params, &req).unwrap();
                black_box((digest, stream(&post, &mut w4k)));
            }
        }
        // Registration as `io::exchange` streamed it before: count, then one full pass through a
        // `WindowSink` per window (the "before" figure of docs/performance.md).
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
        "ddr" => kind(n, &config, &me, &ddr, &mut w512),
        "state" => kind(n, &config, &me, &state, &mut w512),
        "status" => kind(n, &config, &me, &status, &mut w512),
        "policy" => kind(n, &config, &me, &policy, &mut w512),
        "hinv" => kind(n, &config, &me, &hinv, &mut w512),
        _ => eprintln!("unknown kind {what}"),
    }
}
