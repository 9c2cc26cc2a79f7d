//! The core's self-signed certificates checked by independent implementations: Python
//! `cryptography` (`tests/interop/check_cert.py`, which also verifies the self-signature) and the
//! OpenSSL CLI (`x509 -text`, `verify -check_ss_sig`). A corrupted certificate must fail both.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN, MAX_CERT_TIME};
use mpagent_core::profile;
use mpagent_core::sign::P256Signer;
use mpagent_core::time::UnixTime;
use mpagent_tests::run_python;
use rand_core::OsRng;

/// 2026-11-23T10:00:00Z.
const NOW: UnixTime = UnixTime(1_795_428_000);

fn build(params: &CertParams<'_>, signer: &P256Signer) -> Vec<u8> {
    let mut out = [0u8; MAX_CERT_LEN];
    let n = build_self_signed_p256(params, signer, &mut out).expect("build certificate");
    out[..n].to_vec()
}

fn fixed_signer() -> P256Signer {
    let secret: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
    P256Signer::from_secret_bytes(&secret).expect("key")
}

fn write(dir: &Path, name: &str, der: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, der).expect("write certificate");
    path
}

/// `check_cert.py PATH --cn … --not-before … --not-after …`.
fn python_check(path: &Path, params: &CertParams<'_>) -> (bool, String) {
    let nb = params.not_before.0.to_string();
    let na = params.not_after.0.to_string();
    let args: [&OsStr; 7] = [
        path.as_os_str(),
        "--cn".as_ref(),
        params.common_name.as_ref(),
        "--not-before".as_ref(),
        nb.as_ref(),
        "--not-after".as_ref(),
        na.as_ref(),
    ];
    run_python("check_cert.py", &args)
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

/// `openssl x509 -text` must parse it; returns the text.
fn openssl_text(der: &Path) -> String {
    let (ok, text) = openssl(&[
        "x509".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-noout".as_ref(),
        "-text".as_ref(),
        "-in".as_ref(),
        der.as_os_str(),
    ]);
    assert!(
        ok,
        "openssl x509 -text failed for {}:\n{text}",
        der.display()
    );
    text
}

/// Convert to PEM and run `openssl verify -check_ss_sig -attime AT -CAfile cert.pem cert.pem`
/// (pinned time, so that the result does not depend on the machine's clock).
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

/// Everything an independent checker should accept about a good certificate.
fn assert_accepted(dir: &Path, name: &str, der: &[u8], params: &CertParams<'_>) {
    let path = write(dir, name, der);
    let (ok, text) = python_check(&path, params);
    assert!(ok, "check_cert.py rejected {name}:\n{text}");

    let text = openssl_text(&path);
    for needle in [
        "Version: 3 (0x2)",
        "Signature Algorithm: ecdsa-with-SHA256",
        "NIST CURVE: P-256",
        "X509v3 Key Usage: critical",
        "Digital Signature, Data Encipherment",
        "1.3.6.1.4.1.311.101.2, 1.3.6.1.4.1.311.101",
        "CA:FALSE",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(
            text.contains(needle),
            "openssl text of {name} lacks {needle:?}:\n{text}"
        );
    }

    let (ok, text) = openssl_self_verify(&path, params.not_before);
    assert!(
        ok && text.contains(": OK"),
        "openssl verify rejected {name}:\n{text}"
    );
}

#[test]
fn fixed_key_certificate_is_accepted_by_python_and_openssl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let params = CertParams {
        common_name: profile::DEFAULT_CERT_CN,
        not_before: NOW.minus(profile::CERT_BACKDATE_SECS),
        not_after: NOW.plus(profile::CERT_VALIDITY_SECS),
        serial: *b"MPAGENT-SERIAL-1",
    };
    let der = build(&params, &fixed_signer());
    assert_eq!(der.len(), 404, "the fixed-key certificate changed size");
    assert_accepted(dir.path(), "fixed.der", &der, &params);
}

#[test]
fn random_key_certificates_are_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..4 {
        let signer = P256Signer::generate(&mut OsRng);
        let params = CertParams::self_signed_now(profile::DEFAULT_CERT_CN, NOW, &mut OsRng);
        let der = build(&params, &signer);
        assert_accepted(dir.path(), &format!("random-{i}.der"), &der, &params);
    }
}

#[test]
fn unusual_names_and_far_dates_are_accepted() {
    // A non-ASCII UTF-8 name, and GeneralizedTime validity through the end of 9999.
    let dir = tempfile::tempdir().expect("temp dir");
    let signer = P256Signer::generate(&mut OsRng);
    let mut params = CertParams::self_signed_now("Gerät-01 (Kühlhaus)", NOW, &mut OsRng);
    params.not_before = UnixTime(2_524_607_999); // 2049-12-31T23:59:59Z, last UTCTime
    params.not_after = MAX_CERT_TIME; // 9999-12-31T23:59:59Z, GeneralizedTime
    let der = build(&params, &signer);
    assert_accepted(dir.path(), "far.der", &der, &params);

    let longest = "L".repeat(mpagent_core::identity::MAX_COMMON_NAME_LEN);
    params.common_name = &longest;
    params.serial = [0xFF; 16];
    let der = build(&params, &signer);
    assert_accepted(dir.path(), "longest.der", &der, &params);
}

#[test]
fn corrupted_certificates_are_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let signer = fixed_signer();
    let params = CertParams::self_signed_now(profile::DEFAULT_CERT_CN, NOW, &mut OsRng);
    let der = build(&params, &signer);
    assert_accepted(dir.path(), "good.der", &der, &params);

    // The last byte belongs to the signature's s value.
    let mut bad_sig = der.clone();
    *bad_sig.last_mut().unwrap() ^= 0x01;
    // A byte of the serial number, in the signed part (still positive, 16 octets).
    let mut bad_tbs = der.clone();
    let at = bad_tbs
        .windows(16)
        .position(|w| w == params.serial)
        .expect("serial present");
    bad_tbs[at + 15] ^= 0x01;

    for (name, bad) in [("bad-sig.der", &bad_sig), ("bad-tbs.der", &bad_tbs)] {
        let path = write(dir.path(), name, bad);
        let (ok, text) = python_check(&path, &params);
        assert!(!ok, "check_cert.py accepted the corrupted {name}:\n{text}");
        assert!(
            text.contains("self-signature does not verify"),
            "check_cert.py failed {name} for another reason:\n{text}"
        );
        let (ok, text) = openssl_self_verify(&path, params.not_before);
        assert!(
            !ok && text.contains("certificate signature failure"),
            "openssl verify did not report a bad signature for {name}:\n{text}"
        );
    }
}
