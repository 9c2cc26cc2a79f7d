//! Signature checks (docs/protocol.md §6): certificates from hex DER (x509-cert), the algorithm
//! from the `HashAlgorithm` OID, ECDSA P-256 (raw `r‖s`) and RSA PKCS#1 v1.5 (byte-reversed,
//! CryptoAPI order) with SHA-256, and SHA-1 RSA for requests without the attribute.

use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use sha2::Digest;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};

/// OID of `HashAlgorithm` for RSA PKCS#1 v1.5 with SHA-256 [confirmed].
pub const OID_RSA_SHA256: &str = "1.2.840.113549.1.1.11";
/// OID of `HashAlgorithm` for ECDSA P-256 with SHA-256 [profile].
pub const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why a signature or certificate was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("bad hex in {0}")]
    Hex(&'static str),
    #[error("unknown HashAlgorithm {0:?}")]
    UnknownAlgorithm(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("HashAlgorithm {alg} does not fit a {key} certificate key")]
    KeyMismatch {
        alg: &'static str,
        key: &'static str,
    },
    #[error("signature has the wrong length for {0}")]
    SignatureLength(&'static str),
    #[error("signature does not verify ({0})")]
    Invalid(&'static str),
}

/// The signature algorithms the emulator accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigAlg {
    /// `1.2.840.10045.4.3.2`: ECDSA P-256 + SHA-256, raw `r‖s` (64 bytes).
    EcdsaP256Sha256,
    /// `1.2.840.113549.1.1.11`: RSA PKCS#1 v1.5 + SHA-256, signature byte-reversed.
    RsaSha256,
    /// No `HashAlgorithm` (ConfigMgr 2007): RSA PKCS#1 v1.5 + SHA-1, byte-reversed.
    RsaSha1,
}

impl SigAlg {
    /// From the `HashAlgorithm` attribute (absent or empty → SHA-1 RSA).
    pub fn from_oid(oid: Option<&str>) -> Result<SigAlg, VerifyError> {
        match oid.map(str::trim) {
            None | Some("") => Ok(SigAlg::RsaSha1),
            Some(OID_RSA_SHA256) => Ok(SigAlg::RsaSha256),
            Some(OID_ECDSA_SHA256) => Ok(SigAlg::EcdsaP256Sha256),
            Some(other) => Err(VerifyError::UnknownAlgorithm(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SigAlg::EcdsaP256Sha256 => "ECDSA P-256 SHA-256",
            SigAlg::RsaSha256 => "RSA SHA-256",
            SigAlg::RsaSha1 => "RSA SHA-1",
        }
    }
}

/// A public key taken from a certificate.
#[derive(Clone, Debug)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl PublicKey {
    fn kind(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "P-256",
            PublicKey::Rsa(_) => "RSA",
        }
    }
}

/// A parsed certificate: its DER, its key, its SHA-256 thumbprint (hex upper); the subject on
/// demand ([`Cert::subject`]: formatting it costs more than the rest of a registration's
/// certificate handling, and only imports record it).
#[derive(Clone, Debug)]
pub struct Cert {
    pub der: Vec<u8>,
    pub key: PublicKey,
    pub thumbprint: String,
}

impl Cert {
    /// The subject as RFC 4514 text (the DER was parsed once already, so this cannot fail
    /// differently; an unparsable one gives an empty string).
    pub fn subject(&self) -> String {
        x509_cert::Certificate::from_der(&self.der)
            .map(|c| c.tbs_certificate.subject.to_string())
            .unwrap_or_default()
    }
}

/// Hex to bytes, accepting either case and surrounding whitespace.
pub fn decode_hex(s: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(VerifyError::Hex(what));
    }
    // Straight into a buffer of the right size (`hex::decode` collects through an iterator,
    // which showed up in the MP's profile: a certificate and a signature per registration).
    let mut out = vec![0u8; s.len() / 2];
    hex::decode_to_slice(s, &mut out).map_err(|_| VerifyError::Hex(what))?;
    Ok(out)
}

/// SHA-256 thumbprint of a DER certificate, hex upper case.
pub fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(sha2::Sha256::digest(der))
}

/// A certificate's validity period as Unix seconds (`notBefore`, `notAfter`).
pub fn validity(der: &[u8]) -> Result<(u64, u64), VerifyError> {
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| VerifyError::Certificate(e.to_string()))?;
    let v = &cert.tbs_certificate.validity;
    let secs = |t: x509_cert::time::Time| t.to_unix_duration().as_secs();
    Ok((secs(v.not_before), secs(v.not_after)))
}

/// Parses a DER certificate and extracts its P-256 or RSA key (nothing else is accepted).
pub fn parse_cert(der: &[u8]) -> Result<Cert, VerifyError> {
    let bad = |e: &dyn std::fmt::Display| VerifyError::Certificate(e.to_string());
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| bad(&e))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let key = if spki.algorithm.oid == OID_EC_PUBLIC_KEY {
        // The point straight from the BIT STRING (no re-encoding of the SPKI): the same checks
        // as `from_public_key_der`, the named curve and a valid point on it.
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if curve != Some(OID_P256_CURVE) {
            return Err(VerifyError::Certificate(
                "EC key is not a P-256 key: named curve is not prime256v1".into(),
            ));
        }
        let point = spki.subject_public_key.as_bytes().ok_or_else(|| {
            VerifyError::Certificate("EC key is not a P-256 key: unused bits in the key".into())
        })?;
        PublicKey::P256(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|e| VerifyError::Certificate(format!("EC key is not a P-256 key: {e}")))?,
        )
    } else if spki.algorithm.oid == OID_RSA_ENCRYPTION {
        let spki_der = spki.to_der().map_err(|e| bad(&e))?;
        PublicKey::Rsa(
            rsa::RsaPublicKey::from_public_key_der(&spki_der)
                .map_err(|e| VerifyError::Certificate(format!("RSA key: {e}")))?,
        )
    } else {
        return Err(VerifyError::Certificate(format!(
            "unsupported key algorithm {}",
            spki.algorithm.oid
        )));
    };
    Ok(Cert {
        der: der.to_vec(),
        key,
        thumbprint: thumbprint(der),
    })
}

/// DigestInfo prefix of SHA-1 for PKCS#1 v1.5 (RFC 8017 §9.2 note 1).
const SHA1_PREFIX: [u8; 15] = [
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];

/// Verifies `sig` (as decoded from `SignatureValue`) over `msg` with `key` under `alg`.
pub fn verify(key: &PublicKey, alg: SigAlg, msg: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
    match (alg, key) {
        (SigAlg::EcdsaP256Sha256, PublicKey::P256(vk)) => {
            if sig.len() != 64 {
                return Err(VerifyError::SignatureLength("ECDSA P-256 (64 bytes r||s)"));
            }
            let sig = p256::ecdsa::Signature::from_slice(sig)
                .map_err(|_| VerifyError::Invalid("r or s out of range"))?;
            vk.verify(msg, &sig)
                .map_err(|_| VerifyError::Invalid("ECDSA P-256 SHA-256"))
        }
        (SigAlg::RsaSha256 | SigAlg::RsaSha1, PublicKey::Rsa(pk)) => {
            use rsa::traits::PublicKeyParts;
            if sig.len() != pk.size() {
                return Err(VerifyError::SignatureLength("RSA (modulus size)"));
            }
            // CryptoAPI emits the signature little-endian: reverse to the PKCS#1 big-endian order.
            let be: Vec<u8> = sig.iter().rev().copied().collect();
            let (scheme, hashed) = if alg == SigAlg::RsaSha256 {
                (
                    rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    sha2::Sha256::digest(msg).to_vec(),
                )
            } else {
                (
                    rsa::Pkcs1v15Sign {
                        hash_len: Some(20),
                        prefix: SHA1_PREFIX.into(),
                    },
                    sha1::Sha1::digest(msg).to_vec(),
                )
            };
            pk.verify(scheme, &hashed, &be)
                .map_err(|_| VerifyError::Invalid(alg.name()))
        }
        (alg, key) => Err(VerifyError::KeyMismatch {
            alg: alg.name(),
            key: key.kind(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use rand_core::OsRng;

    #[test]
    fn algorithm_oids() {
        assert_eq!(SigAlg::from_oid(None).unwrap(), SigAlg::RsaSha1);
        assert_eq!(SigAlg::from_oid(Some("")).unwrap(), SigAlg::RsaSha1);
        assert_eq!(
            SigAlg::from_oid(Some(OID_RSA_SHA256)).unwrap(),
            SigAlg::RsaSha256
        );
        assert_eq!(
            SigAlg::from_oid(Some(OID_ECDSA_SHA256)).unwrap(),
            SigAlg::EcdsaP256Sha256
        );
        assert!(matches!(
            SigAlg::from_oid(Some("1.2.840.10045.4.3.3")),
            Err(VerifyError::UnknownAlgorithm(_))
        ));
    }

    #[test]
    fn hex_either_case_and_errors() {
        assert_eq!(decode_hex("aBcD", "x").unwrap(), vec![0xAB, 0xCD]);
        assert_eq!(decode_hex(" 00ff\r\n", "x").unwrap(), vec![0x00, 0xFF]);
        for bad in ["", "ABC", "GG", "AB CD"] {
            assert!(decode_hex(bad, "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn garbage_certificates_are_refused() {
        assert!(parse_cert(&[]).is_err());
        assert!(parse_cert(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
        assert!(parse_cert(&[0x30, 0x82, 0x10, 0x00]).is_err());
    }

    /// A self-signed certificate with a key on `curve`, made by OpenSSL.
    fn openssl_cert(
        curve: openssl::nid::Nid,
    ) -> (Vec<u8>, openssl::pkey::PKey<openssl::pkey::Private>) {
        use openssl::{ec, hash, pkey, x509};
        let group = ec::EcGroup::from_curve_name(curve).unwrap();
        let key = pkey::PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "dev1.example.com").unwrap();
        let name = name.build();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, hash::MessageDigest::sha256()).unwrap();
        (b.build().to_der().unwrap(), key)
    }

    #[test]
    fn certificate_keys_are_read_like_openssl_writes_them() {
        let (der, key) = openssl_cert(openssl::nid::Nid::X9_62_PRIME256V1);
        let cert = parse_cert(&der).unwrap();
        let PublicKey::P256(vk) = &cert.key else {
            panic!("not P-256")
        };
        let point = key.ec_key().unwrap().public_key().to_bytes(
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                .unwrap()
                .as_ref(),
            openssl::ec::PointConversionForm::UNCOMPRESSED,
            &mut openssl::bn::BigNumContext::new().unwrap(),
        );
        assert_eq!(
            vk.to_encoded_point(false).as_bytes(),
            point.unwrap().as_slice()
        );
        assert_eq!(
            cert.thumbprint,
            hex::encode_upper(openssl::sha::sha256(&der))
        );
        assert_eq!(cert.subject(), "CN=dev1.example.com");
        // Another curve is refused by name, not taken for P-256.
        let (p384, _) = openssl_cert(openssl::nid::Nid::SECP384R1);
        let e = parse_cert(&p384).unwrap_err();
        assert!(e.to_string().contains("not a P-256 key"), "{e}");
    }

    #[test]
    fn ecdsa_raw_signatures() {
        let sk = p256::ecdsa::SigningKey::random(&mut OsRng);
        let key = PublicKey::P256(*sk.verifying_key());
        let sig: p256::ecdsa::Signature = sk.sign(b"hello");
        let raw = sig.to_bytes();
        verify(&key, SigAlg::EcdsaP256Sha256, b"hello", &raw).unwrap();
        assert!(verify(&key, SigAlg::EcdsaP256Sha256, b"hellO", &raw).is_err());
        // DER-encoded signatures and reversed ones are not our profile.
        assert!(verify(
            &key,
            SigAlg::EcdsaP256Sha256,
            b"hello",
            sig.to_der().as_bytes()
        )
        .is_err());
        let rev: Vec<u8> = raw.iter().rev().copied().collect();
        assert!(verify(&key, SigAlg::EcdsaP256Sha256, b"hello", &rev).is_err());
        assert!(matches!(
            verify(&key, SigAlg::RsaSha256, b"hello", &raw),
            Err(VerifyError::KeyMismatch { .. })
        ));
        assert!(verify(&key, SigAlg::EcdsaP256Sha256, b"hello", &[0u8; 64]).is_err());
    }

    #[test]
    fn rsa_reversed_signatures_sha256_and_sha1() {
        let sk = rsa::RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let key = PublicKey::Rsa(sk.to_public_key());
        let h = sha2::Sha256::digest(b"data");
        let be = sk
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &h)
            .unwrap();
        let le: Vec<u8> = be.iter().rev().copied().collect();
        verify(&key, SigAlg::RsaSha256, b"data", &le).unwrap();
        assert!(
            verify(&key, SigAlg::RsaSha256, b"data", &be).is_err(),
            "unreversed must fail"
        );
        assert!(verify(&key, SigAlg::RsaSha256, b"dat4", &le).is_err());
        assert!(verify(&key, SigAlg::RsaSha1, b"data", &le).is_err());
        assert!(verify(&key, SigAlg::RsaSha256, b"data", &le[1..]).is_err());

        let h1 = sha1::Sha1::digest(b"data");
        let be1 = sk
            .sign(
                rsa::Pkcs1v15Sign {
                    hash_len: Some(20),
                    prefix: SHA1_PREFIX.into(),
                },
                &h1,
            )
            .unwrap();
        let le1: Vec<u8> = be1.iter().rev().copied().collect();
        verify(&key, SigAlg::RsaSha1, b"data", &le1).unwrap();
        assert!(verify(&key, SigAlg::EcdsaP256Sha256, b"data", &le1).is_err());
    }
}
