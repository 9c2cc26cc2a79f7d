//! Applying the site's [`SignatureHash`] (docs/protocol.md §4, §6): hashing emitted bytes with it,
//! signing the digest, and [`SiteHashSigner`], the signer that carries the choice so that every
//! signature and `HashAlgorithm` an agent sends agree.

#[cfg(feature = "sha1-sites")]
use sha2::Digest as _;

use super::{SignError, SignatureBytes, SignatureScheme, Signer};
use crate::config::{ConfigError, SignatureHash};
use crate::sink::{Emit, Overflow, Sha256Sink, Sink};

/// A digest of the kind a [`SignatureHash`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Digest {
    /// SHA-256.
    Sha256([u8; 32]),
    /// SHA-1 (ConfigMgr 2007 form, RSA only).
    #[cfg(feature = "sha1-sites")]
    Sha1([u8; 20]),
}

impl Digest {
    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Sha256(d) => d,
            #[cfg(feature = "sha1-sites")]
            Self::Sha1(d) => d,
        }
    }
}

/// Hashes everything written with a [`SignatureHash`]'s algorithm.
#[derive(Clone)]
pub enum DigestSink {
    /// SHA-256.
    Sha256(Sha256Sink),
    /// SHA-1.
    #[cfg(feature = "sha1-sites")]
    Sha1(sha1::Sha1),
}

impl DigestSink {
    /// An empty hash of `hash`'s algorithm.
    pub fn new(hash: SignatureHash) -> Self {
        match hash {
            SignatureHash::Sha256 => Self::Sha256(Sha256Sink::default()),
            #[cfg(feature = "sha1-sites")]
            SignatureHash::Sha1 => Self::Sha1(sha1::Sha1::default()),
        }
    }
    /// The digest of everything written so far.
    pub fn finish(self) -> Digest {
        match self {
            Self::Sha256(h) => Digest::Sha256(h.finish()),
            #[cfg(feature = "sha1-sites")]
            Self::Sha1(h) => Digest::Sha1(h.finalize().into()),
        }
    }
}

impl Sink for DigestSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        match self {
            Self::Sha256(h) => h.write(bytes),
            #[cfg(feature = "sha1-sites")]
            Self::Sha1(h) => {
                h.update(bytes);
                Ok(())
            }
        }
    }
}

/// The digest of everything `item` emits, with `hash`'s algorithm.
// Kept out of line: inlined, the hash state and the emitters' frame sit under the signing chain in
// the caller's frame (size-probe `measure`: request build+sign peak stack).
#[inline(never)]
pub fn digest_of(hash: SignatureHash, item: &dyn Emit) -> Result<Digest, Overflow> {
    let mut h = DigestSink::new(hash);
    item.emit(&mut h)?;
    Ok(h.finish())
}

/// Sign `digest` with the matching method of `signer`.
pub fn sign_digest(signer: &dyn Signer, digest: &Digest) -> Result<SignatureBytes, SignError> {
    match digest {
        Digest::Sha256(d) => signer.sign_sha256(d),
        #[cfg(feature = "sha1-sites")]
        Digest::Sha1(d) => signer.sign_sha1(d),
    }
}

/// The `HashAlgorithm` to send with `signer`'s signatures (`None`: send none, SHA-1).
pub fn hash_algorithm_oid(signer: &dyn Signer) -> Option<&'static str> {
    signer.signature_hash().hash_algorithm_oid(signer.scheme())
}

/// A signer that signs with the site's [`SignatureHash`] (from the configuration). Without the
/// wrapper a signer uses SHA-256, what current sites expect.
#[derive(Debug, Clone)]
pub struct SiteHashSigner<S> {
    inner: S,
    hash: SignatureHash,
}

impl<S: Signer> SiteHashSigner<S> {
    /// Wrap `inner`; refused for SHA-1 with an ECDSA key ([`SignatureHash::check`]).
    pub fn new(inner: S, hash: SignatureHash) -> Result<Self, ConfigError> {
        hash.check(inner.scheme())?;
        Ok(Self { inner, hash })
    }
    /// The wrapped signer.
    pub fn inner(&self) -> &S {
        &self.inner
    }
    /// The hash it signs with.
    pub fn hash(&self) -> SignatureHash {
        self.hash
    }
}

impl<S: Signer> Signer for SiteHashSigner<S> {
    fn scheme(&self) -> SignatureScheme {
        self.inner.scheme()
    }
    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        self.inner.sign_sha256(digest)
    }
    fn sign_sha1(&self, digest: &[u8; 20]) -> Result<SignatureBytes, SignError> {
        self.inner.sign_sha1(digest)
    }
    fn signature_hash(&self) -> SignatureHash {
        self.hash
    }
}

// Every case here exercises the SHA-1 form next to SHA-256.
#[cfg(all(test, feature = "sha1-sites"))]
mod tests {
    extern crate std;
    use super::*;
    use crate::sign::{P256Signer, RsaSigner};

    const PK1: &[u8] = include_bytes!("rsa/testdata/rsa2048.pk1.der");

    fn rsa_key() -> RsaSigner {
        RsaSigner::from_pkcs1_der(PK1).unwrap()
    }

    fn reversed(sig: &SignatureBytes) -> std::vec::Vec<u8> {
        sig.as_bytes().iter().rev().copied().collect()
    }

    #[test]
    fn digests_match_independent_hashes() {
        let item = |out: &mut dyn Sink| {
            out.write(b"Config")?;
            out.write(b"Mgr")
        };
        let s1: [u8; 20] = sha1::Sha1::digest(b"ConfigMgr").into();
        let s256: [u8; 32] = sha2::Sha256::digest(b"ConfigMgr").into();
        assert_eq!(digest_of(SignatureHash::Sha1, &item), Ok(Digest::Sha1(s1)));
        assert_eq!(
            digest_of(SignatureHash::Sha256, &item),
            Ok(Digest::Sha256(s256))
        );
        assert_eq!(Digest::Sha1(s1).as_bytes(), &s1);
        let refusing = |_: &mut dyn Sink| Err(Overflow);
        assert_eq!(digest_of(SignatureHash::Sha1, &refusing), Err(Overflow));
    }

    #[test]
    fn the_wrapper_decides_the_hash_and_the_oid() {
        let key = rsa_key();
        assert_eq!(key.signature_hash(), SignatureHash::Sha256);
        assert_eq!(
            hash_algorithm_oid(&key),
            Some(crate::profile::RSA_SHA256_OID)
        );
        let legacy = SiteHashSigner::new(rsa_key(), SignatureHash::Sha1).unwrap();
        assert_eq!(legacy.signature_hash(), SignatureHash::Sha1);
        assert_eq!(hash_algorithm_oid(&legacy), None);
        assert_eq!(
            hash_algorithm_oid(&&legacy),
            None,
            "through a reference too"
        );
        assert_eq!(legacy.scheme(), SignatureScheme::RsaPkcs1Sha256);

        // A SHA-1 digest signs as PKCS#1 v1.5 SHA-1 (known-answer tested in rsa/tests.rs),
        // byte-reversed; a SHA-256 digest of the same bytes as PKCS#1 v1.5 SHA-256.
        let x = |out: &mut dyn Sink| out.write(b"x");
        let d = digest_of(SignatureHash::Sha1, &x).unwrap();
        let Digest::Sha1(d1) = d else { panic!("{d:?}") };
        let sig = sign_digest(&legacy, &d).unwrap();
        assert_eq!(
            reversed(&sig),
            key.sign_pkcs1v15_sha1(&d1).unwrap().as_slice()
        );
        let d = digest_of(SignatureHash::Sha256, &x).unwrap();
        let Digest::Sha256(d256) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            sign_digest(&legacy, &d).unwrap(),
            key.sign_sha256(&d256).unwrap()
        );
    }

    #[test]
    fn sha1_is_refused_for_ecdsa() {
        let ec = P256Signer::from_secret_bytes(&[7; 32]).unwrap();
        assert_eq!(
            SiteHashSigner::new(ec.clone(), SignatureHash::Sha1).err(),
            Some(ConfigError::Sha1NeedsRsa)
        );
        let d = digest_of(SignatureHash::Sha1, &|out: &mut dyn Sink| out.write(b"x")).unwrap();
        assert_eq!(sign_digest(&ec, &d), Err(SignError::Unsupported));
        assert!(SiteHashSigner::new(ec, SignatureHash::Sha256).is_ok());
    }
}
