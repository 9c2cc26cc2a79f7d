//! The registration request the core emits, checked by an independent implementation
//! (`interop/verify_registration.py`: Python's XML parser + OpenSSL through `cryptography`) and
//! against the spec's template written out by hand.

use mpagent_core::agent::registration::SigningIdentity;
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::Guid;
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
use mpagent_core::sign::P256Signer;
use mpagent_core::sink::Emit;
use mpagent_core::sink::SliceSink;
use mpagent_core::time::UnixTime;
use mpagent_core::wire::registration::{
    AgentType, ConfirmationForm, RegistrationData, RequestType,
};
use mpagent_tests::{capture_registration, run_python};

const NOW: UnixTime = UnixTime(1_795_428_000); // 2026-11-23T10:00:00Z

fn identity(secret: u8) -> (P256Signer, Vec<u8>) {
    let signer = P256Signer::from_secret_bytes(&[secret; 32]).unwrap();
    let params = CertParams::self_signed_now("PRINTER-0042", NOW, &mut rand_core::OsRng);
    let mut buf = [0u8; MAX_CERT_LEN];
    let len = build_self_signed_p256(&params, &signer, &mut buf).unwrap();
    (signer, buf[..len].to_vec())
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

fn write_tmp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    f
}

#[test]
fn independent_verifier_accepts_our_registration() {
    for secret in [1u8, 7, 0x42] {
        let (signer, cert) = identity(secret);
        let id = SigningIdentity {
            signer: &signer,
            cert_der: &cert,
        };
        let req = capture_registration(
            &config(),
            &id,
            AgentType::Client,
            NOW,
            Guid::random(&mut rand_core::OsRng),
        );
        let f = write_tmp(&req);
        let (ok, out) = run_python("verify_registration.py", &[f.path().as_os_str()]);
        assert!(ok, "independent verifier refused our request: {out}");
        assert!(
            out.contains("1.2.840.10045.4.3.2 signature verifies"),
            "{out}"
        );
    }
}

#[test]
fn independent_verifier_refuses_a_tampered_registration() {
    let (signer, cert) = identity(9);
    let id = SigningIdentity {
        signer: &signer,
        cert_der: &cert,
    };
    let mut req = capture_registration(
        &config(),
        &id,
        AgentType::Client,
        NOW,
        Guid::random(&mut rand_core::OsRng),
    );
    // Change the NetBIOS name inside <Data> (UTF-16LE 'P' -> 'Q'): same length, still valid XML.
    let needle: Vec<u8> = "Value=\"PRINTER"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let at = req
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("name in body");
    req[at + 14] = b'Q';
    let f = write_tmp(&req);
    let (ok, out) = run_python("verify_registration.py", &[f.path().as_os_str()]);
    assert!(!ok, "tampered request passed: {out}");
    assert!(out.contains("signature does not verify"), "{out}");
}

#[test]
fn signature_from_another_key_is_refused_by_the_verifier() {
    let (_, cert) = identity(3);
    let other = P256Signer::from_secret_bytes(&[4u8; 32]).unwrap();
    let id = SigningIdentity {
        signer: &other,
        cert_der: &cert,
    };
    let req = capture_registration(
        &config(),
        &id,
        AgentType::Client,
        NOW,
        Guid::random(&mut rand_core::OsRng),
    );
    let f = write_tmp(&req);
    let (ok, out) = run_python("verify_registration.py", &[f.path().as_os_str()]);
    assert!(!ok, "{out}");
}

/// Known answer: the `<Data>` element is exactly the spec's §4 template, filled in by hand here.
#[test]
fn data_element_matches_the_spec_template() {
    let (_, cert) = identity(5);
    let data = RegistrationData {
        hash_algorithm_oid: Some("1.2.840.10045.4.3.2"),
        smsid: None,
        request_type: RequestType::Registration,
        timestamp: NOW.to_datetime(),
        agent_type: AgentType::Client,
        encryption_cert: &cert,
        signing_cert: &cert,
        netbios_name: "PRINTER-0042",
        fqdn: "printer-0042.corp.example",
        locale_id: 1033,
        confirmation_form: ConfirmationForm::Current,
    };
    let hex: String = cert.iter().map(|b| format!("{b:02X}")).collect();
    let expected = format!(
        "<Data HashAlgorithm=\"1.2.840.10045.4.3.2\" SMSID=\"\" RequestType=\"Registration\" TimeStamp=\"2026-11-23T10:00:00Z\">\
<AgentInformation AgentIdentity=\"mpagent\" AgentVersion=\"{v}\" AgentType=\"0\" />\
<Certificates><Encryption Encoding=\"HexBinary\" KeyType=\"1\">{hex}</Encryption><Signing Encoding=\"HexBinary\" KeyType=\"1\">{hex}</Signing></Certificates>\
<DiscoveryProperties><Property Name=\"Netbios Name\" Value=\"PRINTER-0042\" /><Property Name=\"FQ Name\" Value=\"printer-0042.corp.example\" />\
<Property Name=\"Locale ID\" Value=\"1033\" /><Property Name=\"InternetFlag\" Value=\"0\" /></DiscoveryProperties></Data>",
        v = env!("CARGO_PKG_VERSION")
    );
    let mut buf = vec![0u8; 8192];
    let mut sink = SliceSink::new(&mut buf);
    data.emit(&mut sink).unwrap();
    let want: Vec<u8> = expected.encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(sink.written(), want.as_slice());
}
