//! The host's fast ECDSA P-256 signer: OpenSSL's P-256 (assembly, constant time) behind the
//! core's [`Signer`] seam, for the host client and the fleet. Boards keep the core's small
//! software [`P256Signer`]; this one wraps it, so the key, its PKCS#8 form and the certificate
//! code stay the core's, and only the signing of digests goes to OpenSSL.
//!
//! Why OpenSSL: the signer receives a SHA-256 digest (the core hashes as it emits), and of the
//! native-speed libraries only OpenSSL signs a given digest (`ECDSA_do_sign`); ring signs whole
//! messages only. Measured figures are in docs/performance.md. OpenSSL draws a random nonce per
//! signature (not RFC 6979), so its signatures verify like the core's but differ byte for byte.

use std::ops::Deref;

use mpagent_core::sign::{P256Signer, SignError, SignatureBytes, SignatureScheme, Signer};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::Private;

/// A P-256 key that signs through OpenSSL; dereferences to the core's [`P256Signer`] for
/// everything else (public key, PKCS#8, certificates).
#[derive(Clone)]
pub struct HostP256Signer {
    soft: P256Signer,
    key: EcKey<Private>,
}

impl HostP256Signer {
    /// Load the same key into OpenSSL. Fails only if OpenSSL refuses the key.
    pub fn new(soft: P256Signer) -> Result<Self, openssl::error::ErrorStack> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let secret = BigNum::from_slice(&soft.secret_bytes())?;
        let mut ctx = BigNumContext::new()?;
        let mut public = EcPoint::new(&group)?;
        public.mul_generator2(&group, &secret, &mut ctx)?;
        let key = EcKey::from_private_components(&group, &secret, &public)?;
        key.check_key()?;
        Ok(Self { soft, key })
    }

    /// A fresh key from the OS RNG.
    pub fn generate() -> Result<Self, openssl::error::ErrorStack> {
        Self::new(P256Signer::generate(&mut rand_core::OsRng))
    }

    /// The core's software signer of the same key.
    pub fn software(&self) -> &P256Signer {
        &self.soft
    }
}

impl Deref for HostP256Signer {
    type Target = P256Signer;
    fn deref(&self) -> &P256Signer {
        &self.soft
    }
}

impl Signer for HostP256Signer {
    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::EcdsaP256Sha256
    }

    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        sign_p256_digest(&self.key, digest)
    }
}

/// ECDSA P-256 over a SHA-256 `digest` with OpenSSL: raw `r‖s`, 32 bytes each (the profile's
/// wire form), from OpenSSL's `ECDSA_SIG`. Also the proxy's device-certificate signer.
pub(crate) fn sign_p256_digest(
    key: &EcKey<Private>,
    digest: &[u8; 32],
) -> Result<SignatureBytes, SignError> {
    let sig = EcdsaSig::sign(digest, key).map_err(|_| SignError::Crypto)?;
    let mut raw = [0u8; 64];
    let (r, s) = raw.split_at_mut(32);
    let rv = sig.r().to_vec_padded(32).map_err(|_| SignError::Crypto)?;
    let sv = sig.s().to_vec_padded(32).map_err(|_| SignError::Crypto)?;
    r.copy_from_slice(&rv);
    s.copy_from_slice(&sv);
    SignatureBytes::from_slice(&raw).ok_or(SignError::Crypto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;

    #[test]
    fn signatures_verify_with_the_software_key_and_bind_the_digest() {
        let host = HostP256Signer::new(P256Signer::from_secret_bytes(&[7u8; 32]).unwrap()).unwrap();
        let digest = [0x42u8; 32];
        for _ in 0..8 {
            let sig = host.sign_sha256(&digest).unwrap();
            assert_eq!(sig.as_bytes().len(), 64);
            let parsed = p256::ecdsa::Signature::from_slice(sig.as_bytes()).unwrap();
            host.verifying_key()
                .verify_prehash(&digest, &parsed)
                .unwrap();
            let mut other = digest;
            other[31] ^= 1;
            assert!(host
                .verifying_key()
                .verify_prehash(&other, &parsed)
                .is_err());
        }
        assert_eq!(host.scheme(), SignatureScheme::EcdsaP256Sha256);
        assert_eq!(host.software().secret_bytes(), [7u8; 32]);
    }

    #[test]
    fn short_r_and_s_are_left_padded() {
        // Over many signatures some r or s has a leading zero byte (1 in 128 each): the padding
        // must keep them verifying.
        let host = HostP256Signer::generate().unwrap();
        for i in 0..600u32 {
            let mut digest = [0u8; 32];
            digest[..4].copy_from_slice(&i.to_be_bytes());
            let sig = host.sign_sha256(&digest).unwrap();
            let parsed = p256::ecdsa::Signature::from_slice(sig.as_bytes()).unwrap();
            host.verifying_key()
                .verify_prehash(&digest, &parsed)
                .unwrap();
        }
    }
}
