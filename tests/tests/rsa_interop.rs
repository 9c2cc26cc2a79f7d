//! The core's RSA-2048 signer checked by independent implementations: Python `cryptography`
//! (OpenSSL) for the key, the signatures (`interop/verify_rsa.py`), a whole registration request
//! (`interop/verify_registration.py`) and the certificate (`interop/check_cert.py --key rsa`),
//! and the OpenSSL CLI for the certificate (`x509 -text`, `verify -check_ss_sig`).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mpagent_core::agent::registration::SigningIdentity;
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::Guid;
use mpagent_core::identity::{build_self_signed_rsa, CertParams, MAX_RSA_CERT_LEN};
use mpagent_core::profile;
use mpagent_core::sign::rsa::{RSA_PKCS8_DER_MAX_LEN, RSA_SPKI_DER_MAX_LEN};
use mpagent_core::sign::{RsaSigner, SignatureScheme, Signer};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::registration::AgentType;
use mpagent_tests::{capture_registration, run_python};
use rand_core::{OsRng, RngCore};

/// 2026-11-23T10:00:00Z.
const NOW: UnixTime = UnixTime(1_795_428_000);

/// One key generated on the "device" for the whole file (generation is the slow part).
fn key() -> &'static RsaSigner {
    static KEY: OnceLock<RsaSigner> = OnceLock::new();
    KEY.get_or_init(|| RsaSigner::generate(&mut OsRng).expect("RSA key generation"))
}

fn cert(params: &CertParams<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_RSA_CERT_LEN];
    let n = build_self_signed_rsa(params, key(), &mut out).expect("RSA certificate");
    out[..n].to_vec()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use mpagent_core::sink::{Sha256Sink, Sink};
    let mut h = Sha256Sink::default();
    h.write(data).expect("hash");
    h.finish()
}

#[test]
fn openssl_accepts_the_key_and_verifies_byte_reversed_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let mut buf = [0u8; RSA_PKCS8_DER_MAX_LEN];
    let pk8 = write(dir.path(), "key.pk8", key.to_pkcs8_der(&mut buf).unwrap());
    let mut buf = [0u8; RSA_SPKI_DER_MAX_LEN];
    let spki = write(dir.path(), "key.spki", key.spki_der(&mut buf).unwrap());

    let mut cases = String::new();
    for len in [0usize, 1, 55, 64, 1000, 4096] {
        let mut msg = vec![0u8; len];
        OsRng.fill_bytes(&mut msg);
        let sig = key.sign_sha256(&sha256(&msg)).unwrap();
        writeln!(cases, "sha256 {} {}", hex(&msg), hex(sig.as_bytes())).unwrap();
    }
    // SHA-1, for sites that send no HashAlgorithm: the caller hashes, the signer pads and signs.
    let msg = "ConfigMgr 2007"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect::<Vec<u8>>();
    let sha1 = sha1_of(&msg);
    let sig = key.sign_sha1(&sha1).unwrap();
    writeln!(cases, "sha1 {} {}", hex(&msg), hex(sig.as_bytes())).unwrap();
    let cases = write(dir.path(), "cases.txt", cases.as_bytes());

    let (ok, out) = run_python(
        "verify_rsa.py",
        &[pk8.as_os_str(), spki.as_os_str(), cases.as_os_str()],
    );
    assert!(ok, "verify_rsa.py refused: {out}");
    assert!(out.contains("OK: 7 signatures verify"), "{out}");
}

/// SHA-1 through OpenSSL, so that the test needs no SHA-1 crate.
fn sha1_of(data: &[u8]) -> [u8; 20] {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "data", data);
    let out = Command::new("openssl")
        .args(["dgst", "-sha1", "-binary"])
        .arg(&path)
        .output()
        .expect("openssl dgst");
    assert!(out.status.success());
    out.stdout.as_slice().try_into().expect("20 bytes")
}

#[test]
fn a_corrupted_signature_is_refused_by_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let mut buf = [0u8; RSA_PKCS8_DER_MAX_LEN];
    let pk8 = write(dir.path(), "key.pk8", key.to_pkcs8_der(&mut buf).unwrap());
    let mut buf = [0u8; RSA_SPKI_DER_MAX_LEN];
    let spki = write(dir.path(), "key.spki", key.spki_der(&mut buf).unwrap());
    let msg = b"tamper with me";
    let mut sig = key.sign_sha256(&sha256(msg)).unwrap().as_bytes().to_vec();
    sig[0] ^= 0x01; // the least significant byte of the big-endian signature
    let cases = write(
        dir.path(),
        "cases.txt",
        format!("sha256 {} {}\n", hex(msg), hex(&sig)).as_bytes(),
    );
    let (ok, out) = run_python(
        "verify_rsa.py",
        &[pk8.as_os_str(), spki.as_os_str(), cases.as_os_str()],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("does not verify"), "{out}");
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

#[test]
fn independent_verifier_accepts_an_rsa_registration() {
    assert_eq!(key().scheme(), SignatureScheme::RsaPkcs1Sha256);
    let cert = cert(&CertParams::self_signed_now(
        "PRINTER-0042",
        NOW,
        &mut OsRng,
    ));
    let id = SigningIdentity {
        signer: key(),
        cert_der: &cert,
    };
    let req = capture_registration(
        &config(),
        &id,
        AgentType::Client,
        NOW,
        Guid::random(&mut OsRng),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "request.bin", &req);
    let (ok, out) = run_python("verify_registration.py", &[path.as_os_str()]);
    assert!(ok, "independent verifier refused our RSA request: {out}");
    assert!(
        out.contains("1.2.840.113549.1.1.11 signature verifies"),
        "{out}"
    );

    // The same request with one character of <Data> changed does not verify.
    let needle: Vec<u8> = "Value=\"PRINTER"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut bad = req.clone();
    let at = bad
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("name in body");
    bad[at + 14] = b'Q';
    let path = write(dir.path(), "tampered.bin", &bad);
    let (ok, out) = run_python("verify_registration.py", &[path.as_os_str()]);
    assert!(!ok, "tampered request passed: {out}");
    assert!(out.contains("signature does not verify"), "{out}");
}

fn openssl(args: &[&OsStr]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `openssl verify -check_ss_sig -attime AT -CAfile cert.pem cert.pem` on a DER certificate.
fn openssl_self_verify(der: &Path, at: UnixTime) -> (bool, String) {
    let pem = der.with_extension("pem");
    let (ok, text) = openssl(&[
        "x509".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        der.as_os_str(),
        "-out".as_ref(),
        pem.as_os_str(),
    ]);
    if !ok {
        return (false, text);
    }
    let at = at.0.to_string();
    openssl(&[
        "verify".as_ref(),
        "-check_ss_sig".as_ref(),
        "-attime".as_ref(),
        at.as_ref(),
        "-CAfile".as_ref(),
        pem.as_os_str(),
        pem.as_os_str(),
    ])
}

fn python_check(path: &Path, params: &CertParams<'_>) -> (bool, String) {
    let nb = params.not_before.0.to_string();
    let na = params.not_after.0.to_string();
    let args: [&OsStr; 9] = [
        path.as_os_str(),
        "--cn".as_ref(),
        params.common_name.as_ref(),
        "--not-before".as_ref(),
        nb.as_ref(),
        "--not-after".as_ref(),
        na.as_ref(),
        "--key".as_ref(),
        "rsa".as_ref(),
    ];
    run_python("check_cert.py", &args)
}

#[test]
fn rsa_certificate_is_accepted_by_python_and_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let params = CertParams::self_signed_now(profile::DEFAULT_CERT_CN, NOW, &mut OsRng);
    let der = cert(&params);
    assert_eq!(der.len(), 800);
    let path = write(dir.path(), "rsa.der", &der);

    let (ok, text) = python_check(&path, &params);
    assert!(ok, "check_cert.py --key rsa rejected it:\n{text}");

    let (ok, text) = openssl(&[
        "x509".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-noout".as_ref(),
        "-text".as_ref(),
        "-in".as_ref(),
        path.as_os_str(),
    ]);
    assert!(ok, "openssl x509 -text failed:\n{text}");
    for needle in [
        "Version: 3 (0x2)",
        "Signature Algorithm: sha256WithRSAEncryption",
        "Public Key Algorithm: rsaEncryption",
        "Public-Key: (2048 bit)",
        "Exponent: 65537 (0x10001)",
        "X509v3 Key Usage: critical",
        "Digital Signature, Data Encipherment",
        "1.3.6.1.4.1.311.101.2, 1.3.6.1.4.1.311.101",
        "CA:FALSE",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(
            text.contains(needle),
            "openssl text lacks {needle:?}:\n{text}"
        );
    }

    let (ok, text) = openssl_self_verify(&path, params.not_before);
    assert!(
        ok && text.contains(": OK"),
        "openssl verify rejected it:\n{text}"
    );

    // A flipped bit in the signature (its last byte) or in the signed part (the serial).
    let mut bad_sig = der.clone();
    *bad_sig.last_mut().unwrap() ^= 0x01;
    let mut bad_tbs = der.clone();
    let at = bad_tbs
        .windows(16)
        .position(|w| w == params.serial)
        .expect("serial present");
    bad_tbs[at + 15] ^= 0x01;
    for (name, bad) in [("bad-sig.der", &bad_sig), ("bad-tbs.der", &bad_tbs)] {
        let path = write(dir.path(), name, bad);
        let (ok, text) = python_check(&path, &params);
        assert!(
            !ok && text.contains("self-signature does not verify"),
            "{name}:\n{text}"
        );
        let (ok, text) = openssl_self_verify(&path, params.not_before);
        assert!(
            !ok && text.contains("certificate signature failure"),
            "{name}:\n{text}"
        );
    }
}

/// UTF-16LE of `s`, to find text in a captured request.
fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sha1_sites_get_no_hash_algorithm_and_python_verifies_sha1() {
    use mpagent_core::agent::messages::sign_message;
    use mpagent_core::agent::signed::MessageSigner;
    use mpagent_core::config::SignatureHash;
    use mpagent_core::guid::Smsid;
    use mpagent_core::sign::SiteHashSigner;
    use mpagent_core::wire::clientauth::ClientIdSignature;
    use mpagent_core::wire::status::StatusMessage;
    use mpagent_tests::emit_to_vec;

    let legacy = SiteHashSigner::new(key().clone(), SignatureHash::Sha1).unwrap();
    let cert = cert(&CertParams::self_signed_now(
        "PRINTER-0042",
        NOW,
        &mut OsRng,
    ));
    let id = SigningIdentity {
        signer: &legacy,
        cert_der: &cert,
    };
    let dir = tempfile::tempdir().unwrap();

    // Registration: no HashAlgorithm attribute; OpenSSL verifies the signature as SHA-1.
    let req = capture_registration(
        &config(),
        &id,
        AgentType::Client,
        NOW,
        Guid::random(&mut OsRng),
    );
    assert!(!contains(&req, &utf16("HashAlgorithm")));
    assert!(contains(&req, &utf16("<Data SMSID=\"\" RequestType=")));
    let path = write(dir.path(), "request.bin", &req);
    let (ok, out) = run_python("verify_registration.py", &[path.as_os_str()]);
    assert!(ok, "independent verifier refused the SHA-1 request: {out}");
    assert!(
        out.contains("no HashAlgorithm (RSA SHA-1) signature verifies"),
        "{out}"
    );

    // A signed message: no HashAlgorithm property; both signatures verify as SHA-1.
    let smsid = Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap();
    let cid = ClientIdSignature::compute(&legacy, smsid).unwrap();
    let me = MessageSigner::client(id, &cid);
    let cfg = config();
    let status = StatusMessage {
        message_type: "device-online",
        smsid,
        machine_name: cfg.netbios_name,
        site_code: cfg.site_code,
        time: NOW.to_datetime(),
        properties: &[("Firmware", "1.0")],
        qualifiers: &[],
    };
    let msg = sign_message(&cfg, &me, &status, Guid::random(&mut OsRng), NOW).unwrap();
    let bytes = emit_to_vec(&msg);
    assert!(!contains(&bytes, &utf16("HashAlgorithm")));
    let path = write(dir.path(), "message.bin", &bytes);
    let (ok, out) = run_python("verify_message.py", &[path.as_os_str()]);
    assert!(ok, "independent verifier refused the SHA-1 message: {out}");
    assert!(
        out.contains("no HashAlgorithm (RSA SHA-1) ClientIDSignature and PayloadSignature verify"),
        "{out}"
    );

    // The SHA-256 signature of the same key, sent without the OID, is refused: the verifier
    // really hashes with SHA-1 when the OID is absent.
    let sha256_cid = ClientIdSignature::compute(key(), smsid).unwrap();
    let wrong = hex(sha256_cid.signature().as_bytes());
    let right = hex(cid.signature().as_bytes());
    let mut text = bytes.clone();
    let (r, w) = (utf16(&right), utf16(&wrong));
    let at = text
        .windows(r.len())
        .position(|x| x == r.as_slice())
        .expect("ClientIDSignature in the header");
    text[at..at + r.len()].copy_from_slice(&w);
    let path = write(dir.path(), "sha256-as-sha1.bin", &text);
    let (ok, out) = run_python("verify_message.py", &[path.as_os_str()]);
    assert!(!ok, "{out}");
    assert!(out.contains("ClientIDSignature does not verify"), "{out}");
}
