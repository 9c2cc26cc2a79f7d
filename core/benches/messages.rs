//! Host cost of the messages after registration, per kind: build + sign + stream the whole HTTP
//! request through a small window (what `io::send_message` does), against the one ECDSA sign each
//! message needs (`PayloadSignature`; `ClientIDSignature` is cached), and everything but that sign.
//! For the 64 KiB hardware inventory, the window size is swept to show the RAM/time trade-off of
//! re-emitting per window (RAM stays constant: the window is the only buffer).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpagent_core::agent::messages::{
    request_assignments, sign_message, MessageBody, PolicyBodyRequest,
};
use mpagent_core::agent::registration::SigningIdentity;
use mpagent_core::agent::signed::{fill_window, MessageSigner, SignedMessage};
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
use mpagent_core::sign::{P256Signer, Signer};
use mpagent_core::sink::{Emit, Overflow};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::clientauth::{payload_digest, ClientIdSignature};
use mpagent_core::wire::report::{
    BasicDiscovery, InstanceContent, InstanceSource, InstanceWriter, Namespace, Report,
    ReportIdentity, ReportType, ReportVersion, MAX_NAMESPACE_LEN,
};
use mpagent_core::wire::state_message::StateMessage;
use mpagent_core::wire::status::StatusMessage;

const NOW: UnixTime = UnixTime(1_795_428_000);
/// The window the driver streams requests through in these figures.
const WINDOW: usize = 512;

/// Hardware inventory: `items` services of ~545 bytes of UTF-16 each (120 items ≈ 64 KiB).
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

/// Stream through `window` as `io::send_message` does; returns the request length.
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
    let smsid = Smsid(Guid([0x42; 16]));
    let cid = ClientIdSignature::compute(&signer, smsid).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &signer,
            cert_der: cert,
        },
        &cid,
    );
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
