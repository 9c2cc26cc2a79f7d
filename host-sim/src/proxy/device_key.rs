//! The keys and certificates the proxy makes for its devices (docs/protocol.md §4 [profile]: the
//! device has no key; the proxy makes one of its own kind and keeps it with a self-signed
//! certificate).
//!
//! Why not `ClientSigner::generate` + `self_signed_cert`: for P-256 those derive the public key
//! and sign the certificate with the core's software P-256 (`build_self_signed_p256` takes the
//! core's `P256Signer`), two scalar multiplications that were most of the proxy's CPU per new
//! device. Here OpenSSL makes the key, encodes it (PKCS#8, SPKI) and signs the certificate, which
//! the core's generic `build_self_signed` builds. The proxy never signs with a device key again
//! (it signs the device's messages with its own), so no software signer is needed at all.
//! RSA device keys come from a pool made ahead of time ([`rsa_pool`]).

use anyhow::{anyhow, Result};
use mpagent_core::identity::{build_self_signed, CertParams, MAX_RSA_CERT_LEN};
use mpagent_core::sign::{SignError, SignatureBytes, SignatureScheme, Signer};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};

use std::sync::OnceLock;

use crate::client::state::{ClientSigner, KeyKind};
use crate::sign::RsaKeyPool;

/// A device's new key (PKCS#8 DER) and its self-signed certificate (DER).
pub struct DeviceIdentity {
    /// The key, PKCS#8 DER (readable by `ClientSigner::from_pkcs8_der`).
    pub key_pk8: Vec<u8>,
    /// The self-signed certificate, CN = `params`' name.
    pub cert_der: Vec<u8>,
}

/// A fresh key of `kind` and its self-signed certificate made with `params`.
pub fn make(kind: KeyKind, params: &CertParams<'_>) -> Result<DeviceIdentity> {
    match kind {
        KeyKind::P256 => make_p256(params).map_err(|e| anyhow!("making a P-256 device key: {e}")),
        KeyKind::Rsa2048 => {
            let signer = ClientSigner::Rsa(
                rsa_pool()
                    .take()
                    .map_err(|e| anyhow!("making an RSA-2048 device key: {e}"))?,
            );
            Ok(DeviceIdentity {
                cert_der: signer.self_signed_cert(params)?,
                key_pk8: signer.to_pkcs8_der()?,
            })
        }
    }
}

/// RSA-2048 keys kept ready for new devices: generating one takes tens of milliseconds, which
/// would otherwise hold the proxy's serving thread on every new device of an RSA site.
pub fn rsa_pool() -> &'static RsaKeyPool {
    static POOL: OnceLock<RsaKeyPool> = OnceLock::new();
    POOL.get_or_init(|| RsaKeyPool::new(RSA_KEYS_READY))
}

/// Keys [`rsa_pool`] keeps ready (a burst of new devices beyond it waits for key generation).
pub const RSA_KEYS_READY: usize = 32;

fn make_p256(params: &CertParams<'_>) -> Result<DeviceIdentity> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = EcKey::generate(&group)?;
    let pkey = PKey::from_ec_key(key.clone())?;
    // Uncompressed point (OpenSSL's default), named curve: the SPKI the core would write.
    let spki = pkey.public_key_to_der()?;
    let key_pk8 = pkey.private_key_to_pkcs8()?;
    let mut cert = vec![0u8; MAX_RSA_CERT_LEN];
    let n = build_self_signed(params, &spki, &OpenSslP256(key), &mut cert)
        .map_err(|e| anyhow!("building the certificate: {e:?}"))?;
    cert.truncate(n);
    Ok(DeviceIdentity {
        key_pk8,
        cert_der: cert,
    })
}

/// An OpenSSL P-256 key as the core's [`Signer`] (signs as [`crate::sign::HostP256Signer`]).
struct OpenSslP256(EcKey<Private>);

impl Signer for OpenSslP256 {
    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::EcdsaP256Sha256
    }

    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        crate::sign::sign_p256_digest(&self.0, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::transport::unix_now;
    use mpagent_core::identity::{cert_public_key_p256, cert_spki_der};
    use p256::ecdsa::signature::Verifier;

    fn check(kind: KeyKind) {
        let params = CertParams::self_signed_now("DEV-1", unix_now(), &mut rand_core::OsRng);
        let made = make(kind, &params).unwrap();
        // The key reads back as the host client reads keys, and is the certificate's.
        let signer = ClientSigner::from_pkcs8_der(&made.key_pk8).unwrap();
        assert_eq!(signer.kind(), kind);
        assert_eq!(
            signer.spki_der().unwrap(),
            cert_spki_der(&made.cert_der).unwrap()
        );
        // Two keys made in a row differ.
        let again = make(kind, &params).unwrap();
        assert_ne!(again.key_pk8, made.key_pk8);
    }

    #[test]
    fn p256_keys_are_pkcs8_the_host_reads_and_their_certificates_verify() {
        check(KeyKind::P256);
        let params = CertParams::self_signed_now("DEV-2", unix_now(), &mut rand_core::OsRng);
        let made = make(KeyKind::P256, &params).unwrap();
        // The self-signature verifies with the certificate's own key (x509-cert parses it).
        use x509_cert::der::{Decode, Encode};
        let cert = x509_cert::Certificate::from_der(&made.cert_der).unwrap();
        let tbs = cert.tbs_certificate.to_der().unwrap();
        let point = cert_public_key_p256(&made.cert_der).unwrap();
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
        let sig =
            p256::ecdsa::Signature::from_der(cert.signature.raw_bytes()).expect("DER ECDSA-Sig");
        key.verify(&tbs, &sig).unwrap();
        let mut bad = tbs.clone();
        bad[10] ^= 1;
        assert!(key.verify(&bad, &sig).is_err());
    }

    #[test]
    fn rsa_keys_follow_the_proxys_kind() {
        check(KeyKind::Rsa2048);
    }
}
