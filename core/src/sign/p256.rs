//! Software ECDSA P-256 (RFC 6979 deterministic nonces), signature as raw `r‖s` ([profile]).

use p256::ecdsa::signature::hazmat::PrehashSigner;

use super::{SignError, SignatureBytes, SignatureScheme, Signer};

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
