extern crate std;

use std::vec::Vec;

use der::asn1::{BitStringRef, UintRef};
use der::{Reader, SliceReader};
use p256::ecdsa::signature::Verifier;
use rand_core::OsRng;
use sha2::Digest;

use super::cert::{OID_ECDSA_WITH_SHA256, OID_SHA256_WITH_RSA};
use super::parse::CertView;
use super::*;
use crate::sign::{P256Signer, SignError, SignatureBytes, SignatureScheme, Signer};

/// 2026-11-23T10:00:00Z, the spec's example time.
const NOW: UnixTime = UnixTime(1_795_428_000);
const SERIAL: [u8; 16] = *b"MPAGENT-SERIAL-1";
const EKU_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const EKU_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// Known answer for [`fixed_signer`] + [`fixed_params`]: length and SHA-256 of the DER.
const KAT_LEN: usize = 404;
const KAT_SHA256: &str = "f15cc85991dfb675222c64b95e3e83ec831e116e2bb265c00f2b0e08b74eacfe";

fn fixed_signer() -> P256Signer {
    let mut secret = [0u8; 32];
    for (i, b) in secret.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    P256Signer::from_secret_bytes(&secret).unwrap()
}

fn fixed_params() -> CertParams<'static> {
    CertParams {
        common_name: profile::DEFAULT_CERT_CN,
        not_before: NOW.minus(profile::CERT_BACKDATE_SECS),
        not_after: NOW.plus(profile::CERT_VALIDITY_SECS),
        serial: SERIAL,
    }
}

fn build(params: &CertParams<'_>, signer: &P256Signer) -> Vec<u8> {
    let mut out = [0u8; MAX_CERT_LEN];
    let n = build_self_signed_p256(params, signer, &mut out).unwrap();
    out[..n].to_vec()
}

fn hex(bytes: &[u8]) -> std::string::String {
    bytes.iter().map(|b| std::format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn point_of(signer: &P256Signer) -> [u8; 65] {
    signer
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .try_into()
        .unwrap()
}

/// Verify the certificate's ECDSA signature over its TBS with the key it carries.
fn verify_p256(der: &[u8]) {
    let view = CertView::parse(der).unwrap();
    assert_eq!(view.sig_alg.oid, OID_ECDSA_WITH_SHA256);
    assert!(view.sig_alg.parameters.is_none());
    // Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } → r‖s.
    let sig_der = view.signature.as_bytes().unwrap();
    let mut rs = [0u8; 64];
    let mut r = SliceReader::new(sig_der).unwrap();
    r.sequence(|seq| {
        for half in rs.chunks_mut(32) {
            let int: UintRef<'_> = seq.decode()?;
            let bytes = int.as_bytes();
            half[32 - bytes.len()..].copy_from_slice(bytes);
        }
        Ok(())
    })
    .unwrap();
    r.finish(()).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&rs).unwrap();
    let vk =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&cert_public_key_p256(der).unwrap()).unwrap();
    vk.verify(view.tbs, &sig).unwrap();
}

#[test]
fn known_answer_fixed_key() {
    let signer = fixed_signer();
    let cert = build(&fixed_params(), &signer);
    std::println!(
        "fixed-key certificate ({} bytes): {}",
        cert.len(),
        hex(&cert)
    );
    // Deterministic: RFC 6979 nonces, no randomness anywhere.
    assert_eq!(build(&fixed_params(), &signer), cert);
    assert_eq!(cert.len(), KAT_LEN);
    assert_eq!(hex(&sha2::Sha256::digest(&cert)), KAT_SHA256);

    // Structure: SEQUENCE { SEQUENCE { [0] { INTEGER 2 }, INTEGER serial (16 octets) …
    let len = (cert.len() - 4) as u16;
    assert_eq!(cert[..4], [0x30, 0x82, (len >> 8) as u8, len as u8]);
    assert_eq!(cert[4..6], [0x30, 0x82]);
    assert_eq!(cert[8..15], [0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x10]);
    assert_eq!(cert[15..31], SERIAL);

    // What our reader sees.
    assert_eq!(
        cert_validity(&cert).unwrap(),
        (
            UnixTime(NOW.0 - 86_400),
            UnixTime(NOW.0 + 10 * 365 * 86_400)
        )
    );
    assert!(cert_has_eku(&cert, &EKU_SMS_SIGNING).unwrap());
    assert!(cert_has_eku(&cert, &EKU_SMS_ENCRYPTION).unwrap());
    assert!(!cert_has_eku(&cert, &EKU_SERVER_AUTH).unwrap());
    assert_eq!(cert_public_key_p256(&cert).unwrap(), point_of(&signer));

    let view = CertView::parse(&cert).unwrap();
    let (critical, ku) = view.extension(&cert::OID_KEY_USAGE).unwrap().unwrap();
    assert!(critical);
    assert_eq!(ku, [0x03, 0x02, 0x04, 0x90]); // digitalSignature | dataEncipherment
    let (critical, bc) = view
        .extension(&cert::OID_BASIC_CONSTRAINTS)
        .unwrap()
        .unwrap();
    assert!(!critical);
    assert_eq!(bc, [0x30, 0x00]); // CA:FALSE
    let (_, ski) = view.extension(&cert::OID_SUBJECT_KEY_ID).unwrap().unwrap();
    let digest = sha2::Sha256::digest(point_of(&signer));
    assert_eq!(ski[..2], [0x04, 20]);
    assert_eq!(ski[2..], digest[..20]);
    verify_p256(&cert);
}

/// The P-256 builder writes the SPKI it encoded without parsing it back; a caller's SPKI goes
/// through a decode first. Both routes must give the same certificate.
#[test]
fn p256_builder_matches_the_spki_route() {
    let signer = fixed_signer();
    let mut spki = [0u8; P256_SPKI_LEN];
    let spki = cert::p256_spki_der(&point_of(&signer), &mut spki).unwrap();
    let mut out = [0u8; MAX_CERT_LEN];
    let n = build_self_signed(&fixed_params(), spki, &signer, &mut out).unwrap();
    assert_eq!(&out[..n], build(&fixed_params(), &signer).as_slice());
    assert_eq!(n, KAT_LEN);
}

#[test]
fn p256_point_builder_matches_the_software_signer_route() {
    let signer = fixed_signer();
    let mut out = [0u8; MAX_CERT_LEN];
    let n = build_self_signed_p256_point(&fixed_params(), &point_of(&signer), &signer, &mut out)
        .unwrap();
    assert_eq!(out[..n], build(&fixed_params(), &signer)[..]);
    verify_p256(&out[..n]);
    assert_eq!(
        build_self_signed_p256_point(&fixed_params(), &point_of(&signer), &FakeRsa, &mut out),
        Err(CertError::InvalidKey)
    );
}

#[test]
fn random_keys_verify_and_fit() {
    for _ in 0..8 {
        let signer = P256Signer::generate(&mut OsRng);
        let params = CertParams::self_signed_now(profile::DEFAULT_CERT_CN, NOW, &mut OsRng);
        let cert = build(&params, &signer);
        assert!(cert.len() <= MAX_CERT_LEN);
        assert_eq!(cert_public_key_p256(&cert).unwrap(), point_of(&signer));
        assert_eq!(
            cert_validity(&cert).unwrap(),
            (params.not_before, params.not_after)
        );
        verify_p256(&cert);
    }
}

#[test]
fn max_cert_len_is_a_tight_bound() {
    // Longest name, GeneralizedTime on both ends, a serial that needs a sign octet: try serials
    // until the DER signature also reaches its longest (72 bytes, both r and s with the top bit).
    let name = "X".repeat(MAX_COMMON_NAME_LEN);
    let signer = fixed_signer();
    let mut longest = 0;
    for i in 0..64u8 {
        let mut serial = [0xFF; 16];
        serial[15] = i;
        let params = CertParams {
            common_name: &name,
            not_before: UnixTime(2_600_000_000),
            not_after: MAX_CERT_TIME,
            serial,
        };
        let cert = build(&params, &signer);
        verify_p256(&cert);
        longest = longest.max(cert.len());
    }
    assert_eq!(longest, MAX_CERT_LEN);
}

#[test]
fn self_signed_now_uses_the_profile() {
    let p = CertParams::self_signed_now("dev-01", NOW, &mut OsRng);
    assert_eq!(p.common_name, "dev-01");
    assert_eq!(p.not_before, NOW.minus(profile::CERT_BACKDATE_SECS));
    assert_eq!(p.not_after, NOW.plus(profile::CERT_VALIDITY_SECS));
    assert!((0x40..0x80).contains(&p.serial[0]));
    // Near the end of time the validity is capped rather than unencodable.
    let late = CertParams::self_signed_now("dev-01", UnixTime(253_300_000_000), &mut OsRng);
    assert_eq!(late.not_after, MAX_CERT_TIME);
    let cert = build(&late, &fixed_signer());
    assert_eq!(cert_validity(&cert).unwrap().1, MAX_CERT_TIME);
}

#[test]
fn utc_time_until_2049_generalized_time_from_2050() {
    let signer = fixed_signer();
    let last_utc = UnixTime(2_524_607_999); // 2049-12-31T23:59:59Z
    let first_gen = UnixTime(2_524_608_000); // 2050-01-01T00:00:00Z
    let params = CertParams {
        not_before: last_utc,
        not_after: first_gen,
        ..fixed_params()
    };
    let cert = build(&params, &signer);
    let needle_utc = b"\x17\x0d491231235959Z";
    let needle_gen = b"\x18\x0f20500101000000Z";
    assert!(cert.windows(needle_utc.len()).any(|w| w == needle_utc));
    assert!(cert.windows(needle_gen.len()).any(|w| w == needle_gen));
    assert_eq!(cert_validity(&cert).unwrap(), (last_utc, first_gen));
}

#[test]
fn invalid_parameters_are_refused() {
    let signer = fixed_signer();
    let mut out = [0u8; MAX_CERT_LEN];
    let long = "n".repeat(MAX_COMMON_NAME_LEN + 1);
    let cases = [
        (
            CertParams {
                common_name: "",
                ..fixed_params()
            },
            CertError::InvalidName,
        ),
        (
            CertParams {
                common_name: &long,
                ..fixed_params()
            },
            CertError::InvalidName,
        ),
        (
            CertParams {
                not_before: NOW,
                not_after: NOW.minus(1),
                ..fixed_params()
            },
            CertError::InvalidValidity,
        ),
        (
            CertParams {
                not_after: MAX_CERT_TIME.plus(1),
                ..fixed_params()
            },
            CertError::InvalidValidity,
        ),
        (
            CertParams {
                serial: [0; 16],
                ..fixed_params()
            },
            CertError::InvalidSerial,
        ),
    ];
    for (params, err) in cases {
        assert_eq!(build_self_signed_p256(&params, &signer, &mut out), Err(err));
    }
    // A one-second validity and a serial of 1 are fine.
    let ok = CertParams {
        not_before: NOW,
        not_after: NOW,
        serial: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ..fixed_params()
    };
    let cert = build(&ok, &signer);
    assert_eq!(cert_validity(&cert).unwrap(), (NOW, NOW));
    verify_p256(&cert);
}

#[test]
fn short_buffers_are_refused_without_panicking() {
    let signer = fixed_signer();
    let len = build(&fixed_params(), &signer).len();
    let mut out = [0u8; MAX_CERT_LEN];
    for n in 0..len {
        assert_eq!(
            build_self_signed_p256(&fixed_params(), &signer, &mut out[..n]),
            Err(CertError::BufferTooSmall),
            "buffer of {n}"
        );
    }
    assert_eq!(
        build_self_signed_p256(&fixed_params(), &signer, &mut out[..len]),
        Ok(len)
    );
}

/// A stand-in for an RSA signer: fixed "wire" bytes, byte-reversed like CryptoAPI's.
struct FakeRsa;

impl Signer for FakeRsa {
    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::RsaPkcs1Sha256
    }
    fn sign_sha256(&self, _digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        let wire: Vec<u8> = (0..=255u8).collect();
        Ok(SignatureBytes::from_slice(&wire).unwrap())
    }
}

/// An RSA-2048 SubjectPublicKeyInfo (the modulus is not a real one).
fn rsa_spki() -> Vec<u8> {
    let mut v = unhex("30820122300d06092a864886f70d01010105000382010f003082010a0282010100");
    v.extend((0..256).map(|i| if i == 0 { 0xC5 } else { i as u8 }));
    v.extend(unhex("0203010001"));
    assert_eq!(v.len(), 294);
    v
}

#[test]
fn rsa_signers_get_sha256_with_rsa_and_a_big_endian_signature() {
    let spki = rsa_spki();
    let mut out = [0u8; 1024];
    let n = build_self_signed(&fixed_params(), &spki, &FakeRsa, &mut out).unwrap();
    let cert = &out[..n];
    std::println!("RSA-2048 certificate: {n} bytes");
    let view = CertView::parse(cert).unwrap();
    assert_eq!(view.sig_alg.oid, OID_SHA256_WITH_RSA);
    assert!(view.sig_alg.parameters.unwrap().is_null());
    let expected: Vec<u8> = (0..=255u8).rev().collect();
    assert_eq!(view.signature, BitStringRef::from_bytes(&expected).unwrap());
    assert_eq!(cert_public_key_p256(cert), Err(CertError::Unsupported));
    assert!(cert_has_eku(cert, &EKU_SMS_SIGNING).unwrap());
    // Too small a buffer is still just that.
    assert_eq!(
        build_self_signed(&fixed_params(), &spki, &FakeRsa, &mut out[..n - 1]),
        Err(CertError::BufferTooSmall)
    );
    // And a SubjectPublicKeyInfo that is not DER is refused.
    assert_eq!(
        build_self_signed(&fixed_params(), &spki[..100], &FakeRsa, &mut out),
        Err(CertError::InvalidKey)
    );
}

#[test]
fn other_curves_are_unsupported() {
    // secp256k1 parameters around a P-256 point: well-formed, but not ours to read.
    let signer = fixed_signer();
    let mut spki = [0u8; P256_SPKI_LEN];
    let n = cert::p256_spki_der(&point_of(&signer), &mut spki)
        .unwrap()
        .len();
    let mut spki = spki[..n].to_vec();
    let p256_params = unhex("06082a8648ce3d030107");
    let k1_params = unhex("06052b8104000a");
    let at = spki
        .windows(p256_params.len())
        .position(|w| w == p256_params)
        .unwrap();
    spki.splice(at..at + p256_params.len(), k1_params);
    spki[1] -= 3;
    spki[3] -= 3;
    let mut out = [0u8; MAX_CERT_LEN];
    let n = build_self_signed(&fixed_params(), &spki, &signer, &mut out).unwrap();
    assert_eq!(cert_public_key_p256(&out[..n]), Err(CertError::Unsupported));
    assert!(cert_validity(&out[..n]).is_ok());
}

/// Made by Python `cryptography`: CN + C, PrintableString, CA:TRUE critical, EKU clientAuth,
/// notAfter 2051 (GeneralizedTime), serial 0x1234567890, P-256 key.
const FOREIGN_P256: &str = "3082016b30820111a00302010202051234567890300a06082a8648ce3d0403023027310b30090603550406130244453118301606035504030c0f666f726569676e2e6578616d706c653020170d3235303130323033303430355a180f32303531303630373038303931305a3027310b30090603550406130244453118301606035504030c0f666f726569676e2e6578616d706c653059301306072a8648ce3d020106082a8648ce3d0301070342000426efcebd0ee9e34a669187e18b3a9122b2f733945b649cc9f9f921e9f9dad81290238bde9cc7bb330d150c67704dd25ae7055205744b6f31bf4070745872d0e6a3283026300f0603551d130101ff040530030101ff30130603551d25040c300a06082b06010505070302300a06082a8648ce3d0403020348003045022100a2545e09f7a21cad3d50f9f232796e493ecbdb2cfb5c32fa101b41cc5e2f197e022068a06215b5c5e53fa99e98a9957752cb32749a9d928bd9fe670474e71368131a";
const FOREIGN_P256_POINT: &str = "0426efcebd0ee9e34a669187e18b3a9122b2f733945b649cc9f9f921e9f9dad81290238bde9cc7bb330d150c67704dd25ae7055205744b6f31bf4070745872d0e6";
/// The same shape with an Ed25519 key and no EKU.
const FOREIGN_ED25519: &str = "308201153081c8a00302010202051234567890300506032b65703027310b30090603550406130244453118301606035504030c0f666f726569676e2e6578616d706c653020170d3235303130323033303430355a180f32303531303630373038303931305a3027310b30090603550406130244453118301606035504030c0f666f726569676e2e6578616d706c65302a300506032b657003210003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8a3133011300f0603551d130101ff040530030101ff300506032b657003410097c85155b92a59aeb06fca0dc2114e7bcd063b630d139b466f585975ea31a5f9e3d280281891a02131239156223baad44116d7d0e14bd7e543c4b593a9e85c0c";

#[test]
fn reads_certificates_made_elsewhere() {
    let p256 = unhex(FOREIGN_P256);
    let validity = (UnixTime(1_735_787_045), UnixTime(2_569_738_150));
    assert_eq!(cert_validity(&p256).unwrap(), validity);
    assert_eq!(
        cert_public_key_p256(&p256).unwrap()[..],
        unhex(FOREIGN_P256_POINT)[..]
    );
    assert!(cert_has_eku(&p256, &EKU_CLIENT_AUTH).unwrap());
    assert!(!cert_has_eku(&p256, &EKU_SMS_SIGNING).unwrap());
    verify_p256(&p256);

    let ed = unhex(FOREIGN_ED25519);
    assert_eq!(cert_validity(&ed).unwrap(), validity);
    assert_eq!(cert_public_key_p256(&ed), Err(CertError::Unsupported));
    assert!(!cert_has_eku(&ed, &EKU_SMS_SIGNING).unwrap()); // no EKU extension at all
}

/// Run all three readers; they may fail but must not panic.
fn read_all(der: &[u8]) -> [bool; 3] {
    [
        cert_validity(der).is_ok(),
        cert_has_eku(der, &EKU_SMS_SIGNING).is_ok(),
        cert_public_key_p256(der).is_ok(),
    ]
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let cert = build(&fixed_params(), &fixed_signer());
    let foreign = unhex(FOREIGN_P256);
    for good in [&cert[..], &foreign[..]] {
        assert_eq!(read_all(good), [true; 3]);
        // Every truncation.
        for n in 0..good.len() {
            assert_eq!(read_all(&good[..n]), [false; 3], "truncated to {n}");
        }
        // Trailing data.
        let mut longer = good.to_vec();
        longer.push(0);
        assert_eq!(read_all(&longer), [false; 3]);
        // Every byte altered three ways: no panics, whatever the outcome.
        for i in 0..good.len() {
            for f in [|b: u8| b ^ 0x01, |b: u8| b ^ 0x80, |_| 0xFF] {
                let mut bad = good.to_vec();
                bad[i] = f(bad[i]);
                read_all(&bad);
            }
        }
    }
    assert_eq!(cert_validity(&[]), Err(CertError::Malformed));

    // Wrong outer tag (SET), indefinite length, and lengths far beyond the input.
    let mut set = cert.clone();
    set[0] = 0x31;
    let mut indefinite = vec_with(&[0x30, 0x80], &cert[4..]);
    indefinite.extend([0, 0]);
    let huge4 = vec_with(&[0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF], &cert[4..]);
    let huge8 = vec_with(
        &[0x30, 0x88, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        &cert[4..],
    );
    let non_minimal = vec_with(&[0x30, 0x83, 0x00, cert[2], cert[3]], &cert[4..]);
    let mut inner_huge = cert.clone();
    inner_huge[5..8].copy_from_slice(&[0x84, 0xFF, 0xFF]); // TBS claims far more than there is
    for bad in [set, indefinite, huge4, huge8, non_minimal, inner_huge] {
        assert_eq!(cert_validity(&bad), Err(CertError::Malformed));
        assert_eq!(
            cert_has_eku(&bad, &EKU_SMS_SIGNING),
            Err(CertError::Malformed)
        );
        assert_eq!(cert_public_key_p256(&bad), Err(CertError::Malformed));
    }
}

fn vec_with(head: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut v = head.to_vec();
    v.extend_from_slice(tail);
    v
}

#[test]
fn wrong_field_contents_are_caught() {
    let cert = build(&fixed_params(), &fixed_signer());
    // Version 4 (INTEGER 3) does not exist.
    let mut v4 = cert.clone();
    assert_eq!(v4[12], 0x02);
    v4[12] = 0x03;
    assert_eq!(cert_validity(&v4), Err(CertError::Malformed));
    // A point off the curve.
    let point = point_of(&fixed_signer());
    let at = cert.windows(65).position(|w| w == point).unwrap();
    let mut off_curve = cert.clone();
    off_curve[at + 64] ^= 1;
    assert_eq!(cert_public_key_p256(&off_curve), Err(CertError::InvalidKey));
    // A compressed-point marker in place of 0x04.
    let mut marker = cert.clone();
    marker[at] = 0x02;
    assert_eq!(cert_public_key_p256(&marker), Err(CertError::InvalidKey));
    // The EKU extension duplicated (replace the BasicConstraints OID by the EKU one: the
    // structure stays well-formed, but the EKU extension now appears twice).
    let bc_oid = [0x06, 0x03, 0x55, 0x1d, 0x13];
    let at = cert.windows(5).position(|w| w == bc_oid).unwrap();
    let mut dup = cert.clone();
    dup[at + 4] = 0x25;
    assert_eq!(
        cert_has_eku(&dup, &EKU_SMS_SIGNING),
        Err(CertError::Malformed)
    );
    assert!(cert_validity(&dup).is_ok());
}

// ---- Real RSA-2048 keys (`build_self_signed_rsa`) ----

const RSA_PK1: &[u8] = include_bytes!("../sign/rsa/testdata/rsa2048.pk1.der");
/// The same size of key with the longest public exponent taken (`e` = 2^32 − 5).
const RSA_PK1_E32: &[u8] = include_bytes!("../sign/rsa/testdata/rsa2048-e32.pk1.der");

fn build_rsa(params: &CertParams<'_>, signer: &crate::sign::RsaSigner) -> Vec<u8> {
    let mut out = [0u8; MAX_RSA_CERT_LEN];
    let n = build_self_signed_rsa(params, signer, &mut out).unwrap();
    out[..n].to_vec()
}

/// Verify the certificate's RSA signature over its TBS with the key it carries (`rsa` crate).
fn verify_rsa(der: &[u8]) {
    use rsa::pkcs8::DecodePublicKey;
    let view = CertView::parse(der).unwrap();
    assert_eq!(view.sig_alg.oid, OID_SHA256_WITH_RSA);
    assert!(view.sig_alg.parameters.unwrap().is_null());
    let key = rsa::RsaPublicKey::from_public_key_der(cert_spki_der(der).unwrap()).unwrap();
    let digest = sha2::Sha256::digest(view.tbs);
    key.verify(
        rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        &digest,
        view.signature.as_bytes().unwrap(),
    )
    .unwrap();
}

#[test]
fn rsa_certificates_verify_and_carry_the_key() {
    let signer = crate::sign::RsaSigner::from_pkcs1_der(RSA_PK1).unwrap();
    let cert = build_rsa(&fixed_params(), &signer);
    verify_rsa(&cert);
    let mut spki = [0u8; crate::sign::rsa::RSA_SPKI_DER_MAX_LEN];
    assert_eq!(
        cert_spki_der(&cert).unwrap(),
        signer.spki_der(&mut spki).unwrap()
    );
    assert_eq!(cert_public_key_p256(&cert), Err(CertError::Unsupported));
    assert!(cert_has_eku(&cert, &EKU_SMS_SIGNING).unwrap());
    assert_eq!(cert.len(), 800);
    // Deterministic: PKCS#1 v1.5 has no nonce.
    assert_eq!(build_rsa(&fixed_params(), &signer), cert);
    // The P-256 certificate's SPKI is read the same way.
    let p256 = build(&fixed_params(), &fixed_signer());
    assert_eq!(cert_spki_der(&p256).unwrap().len(), P256_SPKI_LEN);
}

#[test]
fn max_rsa_cert_len_is_a_tight_bound() {
    let name = "X".repeat(MAX_COMMON_NAME_LEN);
    let signer = crate::sign::RsaSigner::from_pkcs1_der(RSA_PK1_E32).unwrap();
    let params = CertParams {
        common_name: &name,
        not_before: UnixTime(2_600_000_000),
        not_after: MAX_CERT_TIME,
        serial: [0xFF; 16],
    };
    let cert = build_rsa(&params, &signer);
    verify_rsa(&cert);
    assert_eq!(cert.len(), MAX_RSA_CERT_LEN);
}
