//! The `Signer` seam and the software signers: ECDSA P-256 ([`P256Signer`]) and RSA-2048
//! PKCS#1 v1.5 ([`RsaSigner`]).
//!
//! A signer takes a SHA-256 digest and returns the signature bytes exactly as they go on the wire
//! (docs/protocol.md §6): raw `r‖s` for ECDSA P-256 ([profile]), byte-reversed PKCS#1 v1.5 for RSA.
//! Everything above this module is algorithm-agnostic; a secure element implements the trait as
//! well. Which hash is signed is the site's choice ([`crate::config::SignatureHash`]), carried by
//! the signer ([`Signer::signature_hash`], [`SiteHashSigner`]) and applied by [`hash`].

pub mod hash;
mod p256;
pub mod rsa;

pub use self::hash::{hash_algorithm_oid, SiteHashSigner};
pub use self::p256::P256Signer;
pub use self::rsa::{RsaKeyError, RsaSigner};

use crate::config::SignatureHash;
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
    /// The `HashAlgorithm` OID sent with this scheme's SHA-256 signatures (see
    /// [`SignatureHash::hash_algorithm_oid`] for what is actually sent).
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
    /// The signer cannot do this (e.g. SHA-1 with an ECDSA key: see [`Signer::sign_sha1`]).
    Unsupported,
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
    /// Sign a SHA-1 digest, in the same wire form as [`sign_sha256`](Self::sign_sha256). Only
    /// for sites that send no `HashAlgorithm` (ConfigMgr 2007, docs/protocol.md §4), which take RSA only;
    /// the default answers [`SignError::Unsupported`].
    fn sign_sha1(&self, digest: &[u8; 20]) -> Result<SignatureBytes, SignError> {
        let _ = digest;
        Err(SignError::Unsupported)
    }
    /// The hash this signer's messages are signed with; SHA-256 unless the site's configuration
    /// says otherwise ([`SiteHashSigner`]).
    fn signature_hash(&self) -> SignatureHash {
        SignatureHash::Sha256
    }
}

impl<T: Signer + ?Sized> Signer for &T {
    fn scheme(&self) -> SignatureScheme {
        (**self).scheme()
    }
    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        (**self).sign_sha256(digest)
    }
    fn sign_sha1(&self, digest: &[u8; 20]) -> Result<SignatureBytes, SignError> {
        (**self).sign_sha1(digest)
    }
    fn signature_hash(&self) -> SignatureHash {
        (**self).signature_hash()
    }
}
