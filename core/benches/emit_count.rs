//! Instruction-count harness for `valgrind --tool=callgrind` (load-independent, unlike the
//! criterion figures): runs the non-sign part of one message kind N times, exactly as the
//! criterion benches time it, so `(Ir(N) - Ir(0)) / N` is its instruction count; `sign` runs the
//! software ECDSA sign alone for comparison. Not a criterion bench: `cargo bench` runs it without
//! arguments and it only prints how to use it (see docs/performance.md).
use mpagent_core::agent::messages::{request_assignments, sign_message, MessageBody};
use mpagent_core::agent::outbound::{Post, PostParams};
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::agent::signed::{fill_window, MessageSigner, SignedMessage};
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
use mpagent_core::sign::P256Signer;
use mpagent_core::sink::{Emit, Overflow};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::clientauth::{payload_digest, ClientIdSignature};
use mpagent_core::wire::header::{endpoint, ReplyMode};
use mpagent_core::wire::registration::{AgentType, RequestType};
use mpagent_core::wire::report::{
    BasicDiscovery, InstanceContent, InstanceSource, InstanceWriter, Namespace, Report,
    ReportIdentity, ReportType, ReportVersion,
};
use mpagent_core::wire::state_message::StateMessage;
use mpagent_core::wire::status::StatusMessage;
use std::hint::black_box;
const NOW: UnixTime = UnixTime(1_795_428_000);
struct Services {
    items: u32,
}
impl InstanceSource for Services {
    fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        for i in 0..self.items {
            w.instance(
                InstanceContent::New,
                Namespace::Cimv2,
                "Win32_Service",
                |p| {
                    p.prop_fmt("Name", format_args!("svc{i:05}"))?;
                    p.prop("DisplayName", "Print Spooler service")?;
                    p.prop("State", if i % 3 == 0 { "Running" } else { "Stopped" })?;
                    p.prop_u64("ProcessId", u64::from(i) * 7919 % 65_536)
                },
            )?;
        }
        Ok(())
    }
}
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
    let req = build_request(
        &config,
        &identity,
        AgentType::Client,
        RequestType::Registration,
        None,
        NOW,
    )
    .unwrap();
    let smsid = Smsid(Guid([0x42; 16]));
    let cid = ClientIdSignature::compute(&signer, smsid).unwrap();
    let me = MessageSigner::client(identity, &cid);
    let id = ReportIdentity::new(smsid, "BENCH-1");
    let t = NOW.to_datetime();
    let disco = BasicDiscovery {
        fqdn: "bench-1.local",
        client_version: "5.00.8325.0000",
        platform_id: "mpagent appliance",
        domain: None,
        ip_addresses: &["10.0.0.42"],
        mac_addresses: &["00:11:22:33:44:55"],
    };
    let ddr = Report::discovery(id, t, &disco);
    let services = Services { items: 120 };
    let hinv =
        Report::hardware_inventory(id, ReportType::Full, ReportVersion::default(), t, &services);
    let state = StateMessage {
        details: "<Result code=\"0\"/>",
        params: &["{F8C7C37F-B42B-4C0A-B050-2BB44DF1098A}"],
        ..StateMessage::new(id, t, "7DC6B6F1-E7F6-43C1-96E0-E1D16BC25C14", 9003, 0, 1)
    };
    let status = StatusMessage {
        message_type: "SMS_GenericStatusMessage_Info",
        smsid,
        machine_name: "BENCH-1",
        site_code: config.site_code,
        time: t,
        properties: &[("Message", "toner low")],
        qualifiers: &[],
    };
    let policy = request_assignments(&config, smsid);
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
