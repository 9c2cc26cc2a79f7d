//! The `Signer` seam and the software ECDSA P-256 signer.
//!
//! A signer takes a SHA-256 digest and returns the signature bytes exactly as they go on the wire
//! (spec §6): raw `r‖s` for ECDSA P-256 ([profile]), byte-reversed PKCS#1 v1.5 for RSA. Everything
//! above this module is algorithm-agnostic; a secure element or an RSA signer implements the trait.

use p256::ecdsa::signature::hazmat::PrehashSigner;

use crate::profile;

/// Largest signature any signer returns (RSA-4096 would need 512).
pub const MAX_SIGNATURE_LEN: usize = 256;

/// Which signature scheme a signer uses; decides the `HashAlgorithm` OID we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SignatureScheme {
    /// ECDSA P-256 with SHA-256, `r‖s` (our profile).
    EcdsaP256Sha256,
    /// RSA PKCS#1 v1.5 with SHA-256, byte-reversed (what Windows clients send).
    RsaPkcs1Sha256,
}

impl SignatureScheme {
    /// The `HashAlgorithm` OID sent with this scheme.
    pub fn hash_algorithm_oid(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => profile::ECDSA_P256_SHA256_OID,
            Self::RsaPkcs1Sha256 => profile::RSA_SHA256_OID,
        }
    }
}

/// Signing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SignError {
    /// The key rejected the operation (e.g. a degenerate digest or a broken key).
    Crypto,
    /// A hardware signer did not answer.
    Device,
}

/// Signature bytes as they go on the wire, in a fixed buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes {
    buf: [u8; MAX_SIGNATURE_LEN],
    len: usize,
}

impl core::fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SignatureBytes({} bytes)", self.len)
    }
}

impl SignatureBytes {
    /// Copy `bytes` in; `None` if longer than [`MAX_SIGNATURE_LEN`].
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut buf = [0u8; MAX_SIGNATURE_LEN];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self {
            buf,
            len: bytes.len(),
        })
    }
    /// The signature.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// Anything that can sign a SHA-256 digest with the identity's key.
pub trait Signer {
    /// The scheme, which fixes the wire format of the signature.
    fn scheme(&self) -> SignatureScheme;
    /// Sign a SHA-256 digest; returns the wire bytes.
    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError>;
}

impl<T: Signer + ?Sized> Signer for &T {
    fn scheme(&self) -> SignatureScheme {
        (**self).scheme()
    }
    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        (**self).sign_sha256(digest)
    }
}

/// Software ECDSA P-256 (RFC 6979 deterministic nonces), signature as raw `r‖s`.
#[derive(Clone)]
pub struct P256Signer {
    key: p256::ecdsa::SigningKey,
}

impl P256Signer {
    /// Wrap an existing key.
    pub fn new(key: p256::ecdsa::SigningKey) -> Self {
        Self { key }
    }
    /// Load from the 32-byte big-endian secret scalar.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Result<Self, SignError> {
        let key =
            p256::ecdsa::SigningKey::from_bytes(secret.into()).map_err(|_| SignError::Crypto)?;
        Ok(Self { key })
    }
    /// A fresh key from the caller's cryptographic RNG.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore) -> Self {
        Self {
            key: p256::ecdsa::SigningKey::random(rng),
        }
    }
    /// The secret scalar (for persisting the identity).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes().into()
    }
    /// The underlying key.
    pub fn signing_key(&self) -> &p256::ecdsa::SigningKey {
        &self.key
    }
    /// The public key.
    pub fn verifying_key(&self) -> &p256::ecdsa::VerifyingKey {
        self.key.verifying_key()
    }
}

impl Signer for P256Signer {
    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::EcdsaP256Sha256
    }
    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        let sig: p256::ecdsa::Signature = self
            .key
            .sign_prehash(digest)
            .map_err(|_| SignError::Crypto)?;
        SignatureBytes::from_slice(&sig.to_bytes()).ok_or(SignError::Crypto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;

    #[test]
    fn p256_signature_is_raw_r_s_and_verifies() {
        let s = P256Signer::from_secret_bytes(&[7u8; 32]).unwrap();
        let digest = [0x42u8; 32];
        let sig = s.sign_sha256(&digest).unwrap();
        assert_eq!(sig.as_bytes().len(), 64);
        let parsed = p256::ecdsa::Signature::from_slice(sig.as_bytes()).unwrap();
        s.verifying_key().verify_prehash(&digest, &parsed).unwrap();
        let mut other = digest;
        other[0] ^= 1;
        assert!(s.verifying_key().verify_prehash(&other, &parsed).is_err());
    }
}
