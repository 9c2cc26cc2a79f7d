//! Signed messages after registration (DDR, hardware inventory, state, status, policy request),
//! captured as the core sends them — streamed through a small window — and checked by an
//! independent implementation (`interop/verify_message.py`: Python's XML parser + OpenSSL through
//! `cryptography`): well-formed XML, `<Body Length>`, and both clientauth signatures verified with
//! the key of the `PublicKey` certificate.

use mpagent_core::agent::messages::{request_assignments, sign_message, MessageBody};
use mpagent_core::agent::registration::SigningIdentity;
use mpagent_core::agent::signed::{fill_window, MessageSigner, SignedMessage};
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::identity::{
    build_self_signed_p256, build_self_signed_rsa, CertParams, MAX_CERT_LEN, MAX_RSA_CERT_LEN,
};
use mpagent_core::sign::{P256Signer, RsaSigner};
use mpagent_core::sink::Overflow;
use mpagent_core::time::UnixTime;
use mpagent_core::wire::clientauth::ClientIdSignature;
use mpagent_core::wire::report::{
    BasicDiscovery, InstanceContent, InstanceSource, InstanceWriter, Namespace, Report,
    ReportIdentity, ReportType, ReportVersion,
};
use mpagent_core::wire::state_message::StateMessage;
use mpagent_core::wire::status::StatusMessage;
use mpagent_tests::{emit_to_vec, run_python};

const NOW: UnixTime = UnixTime(1_795_428_000); // 2026-11-23T10:00:00Z
const WINDOW: usize = 512;

fn smsid() -> Smsid {
    Smsid::parse(b"GUID:5b1d7e3c-0f4a-4b8e-9c2d-6a7b8c9d0e1f").unwrap()
}

fn config() -> AgentConfig<'static> {
    AgentConfig::new(
        "PS1",
        SiteMode::Mixed,
        "http://mp.corp.example:8080",
        "PRINTER-0042",
        "printer-0042.corp.example",
    )
    .unwrap()
}

fn p256_identity(secret: u8) -> (P256Signer, Vec<u8>) {
    let signer = P256Signer::from_secret_bytes(&[secret; 32]).unwrap();
    let params = CertParams::self_signed_now("PRINTER-0042", NOW, &mut rand_core::OsRng);
    let mut buf = [0u8; MAX_CERT_LEN];
    let len = build_self_signed_p256(&params, &signer, &mut buf).unwrap();
    (signer, buf[..len].to_vec())
}

/// The request as it goes out of the driver: window by window through a small buffer.
fn capture(msg: &SignedMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; WINDOW];
    loop {
        let n = fill_window(msg, out.len(), &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
        if n < WINDOW {
            break;
        }
    }
    assert_eq!(
        out,
        emit_to_vec(msg),
        "windowed and one-shot emissions differ"
    );
    out
}

fn verify(request: &[u8]) -> (bool, String) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), request).unwrap();
    run_python("verify_message.py", &[f.path().as_os_str()])
}

fn must_verify(request: &[u8], expect: &str) {
    let (ok, out) = verify(request);
    assert!(ok, "independent verifier refused our message: {out}");
    assert!(out.contains(expect), "{out}");
}

/// A deterministic inventory of `items` services (about 350 bytes of UTF-16 each).
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
                    p.prop("DisplayName", "Spooler & <friends>")?;
                    p.prop("State", if i % 3 == 0 { "Running" } else { "Stopped" })?;
                    p.prop_u64("ProcessId", u64::from(i) * 7919 % 65_536)
                },
            )?;
        }
        Ok(())
    }
}

fn sign<'a, B: MessageBody>(
    cfg: &AgentConfig<'a>,
    me: &MessageSigner<'a>,
    body: &'a B,
) -> SignedMessage<'a> {
    sign_message(cfg, me, body, Guid::random(&mut rand_core::OsRng), NOW).unwrap()
}

#[test]
fn independent_verifier_accepts_every_message_kind() {
    let (signer, cert) = p256_identity(0x42);
    let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &signer,
            cert_der: &cert,
        },
        &cid,
    );
    let cfg = config();
    let id = ReportIdentity::new(smsid(), cfg.netbios_name);
    let t = NOW.to_datetime();

    let disco = BasicDiscovery {
        fqdn: cfg.fqdn,
        client_version: "5.00.8325.0000",
        platform_id: "mpagent appliance",
        domain: Some("corp.example"),
        ip_addresses: &["10.0.0.42", "fe80::1"],
        mac_addresses: &["00:11:22:33:44:55"],
    };
    let ddr = Report::discovery(id, t, &disco);
    must_verify(
        &capture(&sign(&cfg, &me, &ddr)),
        "OK: MP_DdrEndpoint (5 instances",
    );

    let services = Services { items: 200 };
    let hinv =
        Report::hardware_inventory(id, ReportType::Full, ReportVersion::default(), t, &services);
    let msg = sign(&cfg, &me, &hinv);
    assert!(msg.body_length() >= 64 * 1024, "{}", msg.body_length());
    must_verify(&capture(&msg), "OK: MP_HinvEndpoint (200 instances");

    let delta = Report::hardware_inventory(
        id,
        ReportType::Delta,
        ReportVersion { major: 2, minor: 1 },
        t,
        &|w: &mut InstanceWriter<'_, '_>| {
            w.instance(
                InstanceContent::Update,
                Namespace::Cimv2,
                "Win32_Service",
                |p| {
                    p.prop("Name", "svc00001")?;
                    p.prop("State", "Running")
                },
            )?;
            w.instance(
                InstanceContent::Delete,
                Namespace::Cimv2,
                "Win32_Service",
                |p| p.prop("Name", "svc00002"),
            )
        },
    );
    must_verify(
        &capture(&sign(&cfg, &me, &delta)),
        "OK: MP_HinvEndpoint (2 instances",
    );

    let state = StateMessage {
        details: "<Result code=\"0\"/> with ]]> inside",
        params: &["{F8C7C37F-B42B-4C0A-B050-2BB44DF1098A}", "0"],
        ..StateMessage::new(id, t, "7DC6B6F1-E7F6-43C1-96E0-E1D16BC25C14", 9003, 0, 1)
    };
    must_verify(
        &capture(&sign(&cfg, &me, &state)),
        "OK: MP_RelayEndpoint (state message",
    );

    let status = StatusMessage {
        message_type: "SMS_GenericStatusMessage_Info",
        smsid: smsid(),
        machine_name: cfg.netbios_name,
        site_code: cfg.site_code,
        time: t,
        properties: &[("Message", "toner low")],
        qualifiers: &[("Severity", "Informational")],
    };
    must_verify(
        &capture(&sign(&cfg, &me, &status)),
        "OK: StatusReceiver (status",
    );

    let ra = request_assignments(&cfg, smsid(), "2026-12-07 & <cookie>");
    must_verify(
        &capture(&sign(&cfg, &me, &ra)),
        "OK: MP_PolicyManager (policy request",
    );
}

#[test]
fn rsa_signed_messages_verify_too() {
    // An RSA-2048 key made by OpenSSL (fast), loaded by the core's RSA signer.
    let der = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-outform",
            "DER",
        ])
        .output()
        .expect("openssl runs");
    assert!(der.status.success());
    // OpenSSL writes PKCS#8 or PKCS#1 (traditional) DER depending on its version.
    let signer = RsaSigner::from_pkcs8_der(&der.stdout)
        .or_else(|_| RsaSigner::from_pkcs1_der(&der.stdout))
        .unwrap();
    let params = CertParams::self_signed_now("PRINTER-0042", NOW, &mut rand_core::OsRng);
    let mut buf = vec![0u8; MAX_RSA_CERT_LEN];
    let len = build_self_signed_rsa(&params, &signer, &mut buf).unwrap();
    let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &signer,
            cert_der: &buf[..len],
        },
        &cid,
    );
    let cfg = config();
    let ddr = Report::discovery(
        ReportIdentity::new(smsid(), cfg.netbios_name),
        NOW.to_datetime(),
        &Services { items: 3 },
    );
    must_verify(
        &capture(&sign(&cfg, &me, &ddr)),
        "1.2.840.113549.1.1.11 ClientIDSignature and PayloadSignature verify",
    );
}

#[test]
fn proxy_signed_messages_name_the_client_and_verify_with_the_proxy_cert() {
    let (proxy_key, proxy_cert) = p256_identity(0x77);
    let proxy_smsid = Smsid(Guid([0x12; 16]));
    let cid = ClientIdSignature::compute(&proxy_key, smsid()).unwrap();
    let me = MessageSigner::proxy(
        SigningIdentity {
            signer: &proxy_key,
            cert_der: &proxy_cert,
        },
        &cid,
        proxy_smsid,
    );
    let cfg = config();
    let ddr = Report::discovery(
        ReportIdentity::new(smsid(), cfg.netbios_name),
        NOW.to_datetime(),
        &Services { items: 2 },
    );
    must_verify(
        &capture(&sign(&cfg, &me, &ddr)),
        "for proxy GUID:12121212-1212-1212-1212-121212121212",
    );
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[test]
fn the_verifier_refuses_tampering_and_wrong_keys() {
    let (signer, cert) = p256_identity(9);
    let cfg = config();
    let body = Report::discovery(
        ReportIdentity::new(smsid(), cfg.netbios_name),
        NOW.to_datetime(),
        &Services { items: 5 },
    );

    // A body changed after signing (same length, still well formed).
    let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &signer,
            cert_der: &cert,
        },
        &cid,
    );
    let mut req = capture(&sign(&cfg, &me, &body));
    let needle = utf16("<Name>svc00003</Name>");
    let at = req
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("property in body");
    req[at + 2 * 9] = b'9';
    let (ok, out) = verify(&req);
    assert!(
        !ok && out.contains("PayloadSignature does not verify"),
        "{out}"
    );

    // A ClientIDSignature made for another SMSID.
    let other = ClientIdSignature::compute(&signer, Smsid(Guid([0x01; 16]))).unwrap();
    let forged = ClientIdSignature::from_parts(smsid(), *other.signature());
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &signer,
            cert_der: &cert,
        },
        &forged,
    );
    let (ok, out) = verify(&capture(&sign(&cfg, &me, &body)));
    assert!(
        !ok && out.contains("ClientIDSignature does not verify"),
        "{out}"
    );

    // Signed with a key that is not the certificate's.
    let stranger = P256Signer::from_secret_bytes(&[10; 32]).unwrap();
    let cid = ClientIdSignature::compute(&stranger, smsid()).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &stranger,
            cert_der: &cert,
        },
        &cid,
    );
    let (ok, out) = verify(&capture(&sign(&cfg, &me, &body)));
    assert!(!ok && out.contains("does not verify"), "{out}");
}

/// The request bytes do not depend on the window: one-shot emission, 3-byte, 7-byte and 4 KiB
/// windows give the same request (emission is deterministic, the instance source included).
#[test]
fn emission_is_deterministic_across_windows() {
    let (signer, cert) = p256_identity(3);
    let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &signer,
            cert_der: &cert,
        },
        &cid,
    );
    let cfg = config();
    let body = Report::discovery(
        ReportIdentity::new(smsid(), cfg.netbios_name),
        NOW.to_datetime(),
        &Services { items: 4 },
    );
    let msg = sign(&cfg, &me, &body);
    let whole = emit_to_vec(&msg);
    for w in [3usize, 7, 4096] {
        let mut out = Vec::new();
        let mut buf = vec![0u8; w];
        loop {
            let n = fill_window(&msg, out.len(), &mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
            if n < w {
                break;
            }
        }
        assert_eq!(out, whole, "window {w}");
    }
}

/// The core's discovery and inventory reports framed as body + attachment, captured window by
/// window, checked by the independent framing checker written from docs/protocol.md §5
/// (`interop/report_framing.py`) and by the signature verifier.
#[test]
fn independent_checkers_accept_our_body_plus_attachment_reports() {
    use mpagent_core::agent::signed::MessageParams;
    use mpagent_core::wire::header::ReplyMode;
    use mpagent_core::wire::report_framing::AttachedReport;
    let (signer, cert) = p256_identity(0x43);
    let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &signer,
            cert_der: &cert,
        },
        &cid,
    );
    let cfg = config();
    let id = ReportIdentity::new(smsid(), cfg.netbios_name);
    let t = NOW.to_datetime();
    let disco = BasicDiscovery {
        fqdn: cfg.fqdn,
        client_version: "5.00.8325.0000",
        platform_id: "mpagent appliance",
        domain: None,
        ip_addresses: &["10.0.0.42"],
        mac_addresses: &[],
    };
    let ddr = Report::discovery(id, t, &disco);
    let services = Services { items: 40 };
    let hinv =
        Report::hardware_inventory(id, ReportType::Full, ReportVersion::default(), t, &services);
    for (endpoint, report, instances) in [
        (
            "MP_DdrEndpoint",
            &ddr as &dyn mpagent_core::sink::Emit,
            None,
        ),
        ("MP_HinvEndpoint", &hinv, Some(40)),
    ] {
        let framed = AttachedReport::new(report).unwrap();
        let params = MessageParams {
            endpoint,
            reply_mode: ReplyMode::Async,
            message_id: Guid([0x5A; 16]),
            now: NOW,
        };
        let msg =
            SignedMessage::new_attached(&cfg, &me, params, &framed, Guid([0x5A; 16])).unwrap();
        let request = capture(&msg);
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &request).unwrap();
        let (ok, out) = run_python("report_framing.py", &[f.path().as_os_str()]);
        assert!(ok, "the framing checker refused our {endpoint}: {out}");
        assert!(out.contains(&format!("ENDPOINT={endpoint}\n")), "{out}");
        match instances {
            Some(n) => assert!(out.contains(&format!("INSTANCES={n}\n")), "{out}"),
            None => assert!(!out.contains("INSTANCES=0\n"), "{out}"),
        }
        must_verify(&request, endpoint);
    }
}
