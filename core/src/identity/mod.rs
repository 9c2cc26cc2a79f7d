//! The device's identity: its self-signed X.509 v3 certificate (docs/protocol.md §7, mixed mode)
//! and a minimal reader for the fields the agent needs from a provisioned certificate (native
//! mode).
//!
//! Certificates are built with `der` + `spki` directly into the caller's buffer: no allocation and
//! no second copy. The TBSCertificate is encoded once into the output buffer, hashed from there,
//! signed through the [`Signer`](crate::sign::Signer) seam, and the outer `Certificate` is
//! assembled around it in place. Nothing built is parsed back: the P-256 key's
//! SubjectPublicKeyInfo goes into the TBS as the bytes we encoded (only an SPKI handed in from
//! outside is decoded, to check it), and the TBS is encoded in its own frame, gone before the
//! signature is computed (stack).
//!
//! What we put in a self-signed certificate (docs/protocol.md §7, as the public tools do):
//! - version v3, a positive random 16-byte serial, issuer = subject = `CN=<name>` (UTF8String);
//! - validity from a little before now ([`CERT_BACKDATE_SECS`](crate::profile::CERT_BACKDATE_SECS))
//!   for [`CERT_VALIDITY_SECS`](crate::profile::CERT_VALIDITY_SECS); UTCTime up to 2049,
//!   GeneralizedTime from 2050 on (RFC 5280 §4.1.2.5);
//! - key usage (critical) digitalSignature + dataEncipherment, extended key usage SMS signing
//!   (`1.3.6.1.4.1.311.101.2`) and SMS encryption (`1.3.6.1.4.1.311.101`), basic constraints
//!   CA:FALSE, and a subject key identifier (RFC 7093 method 1: the leftmost 160 bits of the
//!   SHA-256 of the public key, since the core carries no SHA-1).
//! - ECDSA P-256: signature algorithm ecdsa-with-SHA256 (no parameters) and the signature as a DER
//!   `Ecdsa-Sig-Value` (the signer's raw `r‖s` is converted). An RSA signer
//!   ([`SignatureScheme::RsaPkcs1Sha256`](crate::sign::SignatureScheme)) gets
//!   sha256WithRSAEncryption (NULL parameters) and its byte-reversed wire signature turned back
//!   to big-endian: [`build_self_signed_rsa`] for the software RSA-2048 key, or any signer with
//!   its SubjectPublicKeyInfo through [`build_self_signed`].

mod cert;
mod parse;

use crate::profile;
use crate::sign::SignError;
use crate::time::UnixTime;

pub use cert::{
    build_self_signed, build_self_signed_p256, build_self_signed_p256_point, build_self_signed_rsa,
    MAX_CERT_LEN, MAX_RSA_CERT_LEN, P256_SPKI_LEN,
};
pub use der::asn1::ObjectIdentifier;
pub use parse::{cert_has_eku, cert_public_key_p256, cert_spki_der, cert_validity};

/// Extended key usage "SMS signing" (docs/protocol.md §7).
pub const EKU_SMS_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.101.2");
/// Extended key usage "SMS encryption" (docs/protocol.md §7).
pub const EKU_SMS_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.101");

/// Longest common name accepted, in bytes (RFC 5280 `ub-common-name` is 64 characters; we count
/// bytes so that [`MAX_CERT_LEN`] is a true bound).
pub const MAX_COMMON_NAME_LEN: usize = 64;

/// Latest time a certificate can carry: 9999-12-31T23:59:59Z (RFC 5280 "no well-defined
/// expiration date").
pub const MAX_CERT_TIME: UnixTime = UnixTime(253_402_300_799);

/// Building or reading a certificate failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CertError {
    /// The output buffer cannot hold the certificate ([`MAX_CERT_LEN`] always suffices for P-256,
    /// [`MAX_RSA_CERT_LEN`] for RSA-2048).
    BufferTooSmall,
    /// DER encoding failed (should not happen with valid parameters).
    Encoding,
    /// The common name is empty or longer than [`MAX_COMMON_NAME_LEN`] bytes.
    InvalidName,
    /// `not_before` is after `not_after`, or a time is past [`MAX_CERT_TIME`].
    InvalidValidity,
    /// The serial number is zero.
    InvalidSerial,
    /// The SubjectPublicKeyInfo handed in, or the P-256 point read, is not a valid key.
    InvalidKey,
    /// The bytes read are not a well-formed DER X.509 certificate.
    Malformed,
    /// Well-formed, but not what was asked for (e.g. the key is not EC P-256).
    Unsupported,
    /// The signer failed.
    Sign(SignError),
}

impl From<SignError> for CertError {
    fn from(e: SignError) -> Self {
        Self::Sign(e)
    }
}

/// What goes into a self-signed certificate besides the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CertParams<'a> {
    /// Subject and issuer CN (1..=[`MAX_COMMON_NAME_LEN`] bytes of UTF-8).
    pub common_name: &'a str,
    /// Start of validity.
    pub not_before: UnixTime,
    /// End of validity (inclusive, as in X.509).
    pub not_after: UnixTime,
    /// Serial number, big-endian, from the caller's RNG; must not be zero. Encoded as a positive
    /// INTEGER (a leading zero octet is added when the top bit is set).
    pub serial: [u8; 16],
}

impl<'a> CertParams<'a> {
    /// Parameters for a certificate made now: valid from `now - CERT_BACKDATE_SECS` for
    /// `CERT_VALIDITY_SECS` (capped at [`MAX_CERT_TIME`]), with a random positive 16-byte serial.
    pub fn self_signed_now(
        common_name: &'a str,
        now: UnixTime,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Self {
        let mut serial = [0u8; 16];
        rng.fill_bytes(&mut serial);
        if let Some(first) = serial.first_mut() {
            // Positive, non-zero, and always 16 octets long once encoded.
            *first = (*first & 0x7F) | 0x40;
        }
        Self {
            common_name,
            not_before: now.minus(profile::CERT_BACKDATE_SECS),
            not_after: now.plus(profile::CERT_VALIDITY_SECS).min(MAX_CERT_TIME),
            serial,
        }
    }
}

#[cfg(test)]
mod tests;
