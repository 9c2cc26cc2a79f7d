//! The host's fast signers: OpenSSL's P-256 (assembly, constant time) and RSA-2048 behind the
//! core's [`Signer`] seam, for the host client, the proxy and the fleet. Boards keep the core's
//! small software [`P256Signer`] and [`RsaSigner`]; these wrap them, so the key, its PKCS#8 form
//! and the certificate code stay the core's, and only the signing of digests goes to OpenSSL.
//! RSA PKCS#1 v1.5 is deterministic, so [`HostRsaSigner`]'s signatures are the core's, byte for
//! byte.
//!
//! Why OpenSSL: the signer receives a SHA-256 digest (the core hashes as it emits), and of the
//! native-speed libraries only OpenSSL signs a given digest (`ECDSA_do_sign`); ring signs whole
//! messages only. Measured figures are in docs/performance.md. OpenSSL draws a random nonce per
//! signature (not RFC 6979), so its signatures verify like the core's but differ byte for byte.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use mpagent_core::sign::rsa::{
    DIGEST_INFO_SHA1, DIGEST_INFO_SHA256, RSA_DEFAULT_EXPONENT, RSA_MODULUS_BITS,
    RSA_PKCS1_DER_MAX_LEN, RSA_SIGNATURE_LEN,
};
use mpagent_core::sign::{
    P256Signer, RsaKeyError, RsaSigner, SignError, SignatureBytes, SignatureScheme, Signer,
};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::Private;
use openssl::rsa::{Padding, Rsa};

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

/// An RSA-2048 key that signs through OpenSSL; dereferences to the core's [`RsaSigner`] for
/// everything else (public key, PKCS#1/PKCS#8, certificates).
#[derive(Clone)]
pub struct HostRsaSigner {
    // Boxed: the core's key with its Montgomery parameters is about 3 KB.
    soft: Box<RsaSigner>,
    key: Rsa<Private>,
}

/// The host RSA signer could not be made.
#[derive(Debug)]
pub enum HostRsaError {
    /// OpenSSL refused to generate, read or check the key.
    OpenSsl(openssl::error::ErrorStack),
    /// The core could not read or write the key (PKCS#1).
    Key(RsaKeyError),
}

impl std::fmt::Display for HostRsaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OpenSsl(e) => write!(f, "OpenSSL refused the RSA-2048 key: {e}"),
            Self::Key(e) => write!(f, "the RSA-2048 key is not usable: {e}"),
        }
    }
}

impl std::error::Error for HostRsaError {}

impl From<openssl::error::ErrorStack> for HostRsaError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Self::OpenSsl(e)
    }
}

impl HostRsaSigner {
    /// Load the same key into OpenSSL (through its PKCS#1 form).
    pub fn new(soft: Box<RsaSigner>) -> Result<Self, HostRsaError> {
        let mut der = [0u8; RSA_PKCS1_DER_MAX_LEN];
        let der = soft.to_pkcs1_der(&mut der).map_err(HostRsaError::Key)?;
        let key = Rsa::private_key_from_der(der)?;
        if !key.check_key()? {
            return Err(HostRsaError::Key(RsaKeyError::Inconsistent));
        }
        Ok(Self { soft, key })
    }

    /// A fresh key from OpenSSL's generator (tens of milliseconds, several times faster than
    /// the core's), read back by the core so both hold the same key.
    pub fn generate() -> Result<Self, HostRsaError> {
        let e = BigNum::from_u32(RSA_DEFAULT_EXPONENT)?;
        let key = Rsa::generate_with_e(RSA_MODULUS_BITS as u32, &e)?;
        let der = key.private_key_to_der()?;
        let soft = Box::new(RsaSigner::from_pkcs1_der(&der).map_err(HostRsaError::Key)?);
        Ok(Self { soft, key })
    }

    /// The core's software signer of the same key.
    pub fn software(&self) -> &RsaSigner {
        &self.soft
    }

    /// EMSA-PKCS1-v1_5 over `prefix ‖ digest` and RSASP1 in OpenSSL (`RSA_private_encrypt` with
    /// type-1 padding is exactly that), byte-reversed to the wire's CryptoAPI order.
    fn sign_digest_info(&self, prefix: &[u8], digest: &[u8]) -> Result<SignatureBytes, SignError> {
        let mut t = [0u8; 64];
        let len = prefix.len() + digest.len();
        let t = t.get_mut(..len).ok_or(SignError::Crypto)?;
        let (p, d) = t.split_at_mut(prefix.len());
        p.copy_from_slice(prefix);
        d.copy_from_slice(digest);
        let mut sig = [0u8; RSA_SIGNATURE_LEN];
        let n = self
            .key
            .private_encrypt(t, &mut sig, Padding::PKCS1)
            .map_err(|_| SignError::Crypto)?;
        if n != RSA_SIGNATURE_LEN {
            return Err(SignError::Crypto);
        }
        sig.reverse();
        SignatureBytes::from_slice(&sig).ok_or(SignError::Crypto)
    }
}

impl Deref for HostRsaSigner {
    type Target = RsaSigner;
    fn deref(&self) -> &RsaSigner {
        &self.soft
    }
}

impl Signer for HostRsaSigner {
    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::RsaPkcs1Sha256
    }

    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        self.sign_digest_info(&DIGEST_INFO_SHA256, digest)
    }

    fn sign_sha1(&self, digest: &[u8; 20]) -> Result<SignatureBytes, SignError> {
        self.sign_digest_info(&DIGEST_INFO_SHA1, digest)
    }
}

/// RSA-2048 keys made ahead of time: a background thread keeps `low_water` keys ready, so
/// whoever needs a fresh key (the proxy for a new device) takes one in microseconds instead of
/// generating it (tens of milliseconds) on its serving thread. [`fill`](Self::fill) makes many
/// at once on every core before a run.
pub struct RsaKeyPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    ready: Mutex<VecDeque<HostRsaSigner>>,
    taken: Condvar,
    low_water: usize,
    /// Measurement only ([`RsaKeyPool::reuse_keys`]): hand keys out again, in turn.
    reuse: std::sync::atomic::AtomicBool,
}

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, VecDeque<HostRsaSigner>> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RsaKeyPool {
    /// A pool that keeps `low_water` keys ready, refilled by one background thread.
    pub fn new(low_water: usize) -> Self {
        let inner = Arc::new(PoolInner {
            ready: Mutex::new(VecDeque::new()),
            taken: Condvar::new(),
            low_water,
            reuse: std::sync::atomic::AtomicBool::new(false),
        });
        let bg = inner.clone();
        // If the thread cannot start, `take` still generates inline: only speed is lost.
        let _ = std::thread::Builder::new()
            .name("rsa-keygen".into())
            .spawn(move || refill(&bg));
        Self { inner }
    }

    /// Make keys on every core until at least `n` are ready.
    pub fn fill(&self, n: usize) -> Result<(), HostRsaError> {
        let missing = n.saturating_sub(self.ready());
        for key in generate_rsa_keys(missing)? {
            self.inner.lock().push_back(key);
        }
        Ok(())
    }

    /// Keys ready now.
    pub fn ready(&self) -> usize {
        self.inner.lock().len()
    }

    /// For load measurements only (the fleet's in-process proxy): from now on, keys the pool
    /// holds are handed out again in turn instead of once, so that a run of more devices than
    /// keys made ahead measures the proxy rather than RSA key generation (≈ 0.25 s of CPU per
    /// key). Each device still gets its own certificate and SMSID. A real proxy never calls it.
    pub fn reuse_keys(&self) {
        self.inner
            .reuse
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// A key never handed out before: a ready one, or (pool empty) one made now. After
    /// [`Self::reuse_keys`], the oldest ready key, kept for its next turn.
    pub fn take(&self) -> Result<HostRsaSigner, HostRsaError> {
        if self.inner.reuse.load(std::sync::atomic::Ordering::Relaxed) {
            let mut ready = self.inner.lock();
            if let Some(key) = ready.pop_front() {
                ready.push_back(key.clone());
                return Ok(key);
            }
        }
        let key = self.inner.lock().pop_front();
        self.inner.taken.notify_one();
        match key {
            Some(k) => Ok(k),
            None => HostRsaSigner::generate(),
        }
    }
}

/// The pool's background thread: generate while fewer than `low_water` keys are ready.
fn refill(pool: &PoolInner) {
    loop {
        {
            let mut ready = pool.lock();
            while ready.len() >= pool.low_water {
                ready = pool.taken.wait(ready).unwrap_or_else(|e| e.into_inner());
            }
        }
        match HostRsaSigner::generate() {
            Ok(key) => pool.lock().push_back(key),
            // OpenSSL cannot make keys: `take` will report it to whoever asks.
            Err(_) => return,
        }
    }
}

/// `n` fresh RSA-2048 keys, made on every core.
pub fn generate_rsa_keys(n: usize) -> Result<Vec<HostRsaSigner>, HostRsaError> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per = n.div_ceil(cores.max(1));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..cores)
            .map(|c| {
                let count = per.min(n.saturating_sub(c * per));
                s.spawn(move || {
                    (0..count)
                        .map(|_| HostRsaSigner::generate())
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut keys = Vec::with_capacity(n);
        for w in workers {
            match w.join() {
                Ok(made) => keys.extend(made?),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        Ok(keys)
    })
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

    #[test]
    fn rsa_signatures_are_the_cores_byte_for_byte() {
        let host = HostRsaSigner::generate().unwrap();
        assert_eq!(host.scheme(), SignatureScheme::RsaPkcs1Sha256);
        for i in 0..16u8 {
            let d256 = [i.wrapping_mul(37); 32];
            let d1 = [i.wrapping_mul(11) ^ 0x5a; 20];
            assert_eq!(
                host.sign_sha256(&d256).unwrap().as_bytes(),
                host.software().sign_sha256(&d256).unwrap().as_bytes()
            );
            assert_eq!(
                host.sign_sha1(&d1).unwrap().as_bytes(),
                host.software().sign_sha1(&d1).unwrap().as_bytes()
            );
        }
    }

    #[test]
    fn rsa_signatures_verify_in_openssl_and_bind_the_digest() {
        // A key the core made, loaded into OpenSSL; OpenSSL verifies the wire bytes reversed
        // back to big-endian against SHA-256 of the message.
        let soft = Box::new(RsaSigner::generate(&mut rand_core::OsRng).unwrap());
        let host = HostRsaSigner::new(soft).unwrap();
        let msg = b"registration request";
        let digest: [u8; 32] = openssl::sha::sha256(msg);
        let mut sig = host.sign_sha256(&digest).unwrap().as_bytes().to_vec();
        assert_eq!(sig.len(), RSA_SIGNATURE_LEN);
        sig.reverse();
        let pkey = openssl::pkey::PKey::from_rsa(host.key.clone()).unwrap();
        let mut v =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
        assert!(v.verify_oneshot(&sig, msg).unwrap());
        let mut v =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
        assert!(!v.verify_oneshot(&sig, b"registration requesT").unwrap());
    }

    #[test]
    fn the_pool_hands_out_distinct_keys_and_refills() {
        let pool = RsaKeyPool::new(2);
        pool.fill(3).unwrap();
        assert!(pool.ready() >= 3);
        let keys: Vec<_> = (0..5).map(|_| pool.take().unwrap()).collect();
        let moduli: std::collections::BTreeSet<_> = keys.iter().map(|k| k.modulus_be()).collect();
        assert_eq!(moduli.len(), 5);
        // The background thread brings it back to its low water mark.
        let t = std::time::Instant::now();
        while pool.ready() < 2 && t.elapsed() < std::time::Duration::from_secs(30) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(pool.ready(), 2);
    }

    #[test]
    fn a_reusing_pool_hands_its_keys_out_in_turn() {
        let pool = RsaKeyPool::new(0);
        pool.fill(2).unwrap();
        pool.reuse_keys();
        let moduli: Vec<_> = (0..4).map(|_| pool.take().unwrap().modulus_be()).collect();
        assert_ne!(moduli[0], moduli[1]);
        assert_eq!(moduli[0], moduli[2]);
        assert_eq!(moduli[1], moduli[3]);
        assert_eq!(pool.ready(), 2, "nothing is used up");
    }
}
