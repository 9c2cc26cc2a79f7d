//! ECDSA P-256 on the P256-Cortex-M4 assembly (`p256-cortex-m4-sys`), behind the core's
//! [`Signer`]: the board's signer when the feature `p256-asm` is on (the default).
//!
//! Why assembly: the core's software P-256 (RustCrypto `p256`, portable 32-bit field arithmetic)
//! takes about 6.5 M instructions per signature on a Cortex-M4, and every registration, every
//! signed message and the self-signed certificate pay it. P256-Cortex-M4 is hand-written for the
//! M4's `UMAAL` (and the FPU registers as spill space) and signs in a small fraction of that,
//! with less code (figures in docs/size.md and docs/performance.md, measured under QEMU
//! `-icount`). Its routines run in constant time and, with the C define `has_d_cache=1` (the
//! NUCLEO-F767ZI's Cortex-M7 has a data cache; its `.cargo/config.toml` sets it), with a constant
//! RAM access pattern as well. The boards build the library with only what is called (sign, key
//! generation here, the variable-base multiplication for Mbed TLS in [`crate::tls_p256`]:
//! `CFLAGS_thumbv7em_none_eabihf` in their `.cargo/config.toml`).
//!
//! Nonces are RFC 6979 (HMAC-SHA-256 over the secret and the digest, the `rfc6979` crate the core's
//! `p256` uses), so a signature here is byte for byte the core's [`P256Signer`] signature of the
//! same digest with the same key: the known-answer check in `boards/size-probe` compares the two.
//! The wire form is raw `r‖s` like the core's. The key is kept as the library wants it (the
//! secret scalar and the public point as little-endian words), zeroed when the signer is dropped.
//! Only `p256-cortex-m4-sys` is used: the `p256-cortex-m4` wrapper draws `k` from an RNG only.
//!
//! [`P256Signer`]: mpagent_core::sign::P256Signer

use mpagent_core::sign::{SignError, SignatureBytes, SignatureScheme, Signer};
use p256_cortex_m4_sys as sys;
use rand_core::CryptoRngCore;

/// The group order n of P-256, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// DER `SubjectPublicKeyInfo` of an uncompressed P-256 key up to the point: `SEQUENCE {
/// SEQUENCE { id-ecPublicKey, secp256r1 }, BIT STRING (0 unused bits) }`.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Length of the DER `SubjectPublicKeyInfo` from [`AsmP256Signer::spki_der`].
pub const SPKI_LEN: usize = SPKI_PREFIX.len() + 65;

/// A 256-bit big-endian integer as the library's eight little-endian words.
fn to_words(be: &[u8; 32]) -> [u32; 8] {
    let mut words = [0u32; 8];
    // SAFETY: 32-byte output and input, distinct; the function has no alignment requirements.
    unsafe { sys::p256_convert_endianness(words.as_mut_ptr().cast(), be.as_ptr().cast(), 32) };
    words
}

/// The library's eight little-endian words as a 256-bit big-endian integer.
fn to_be_bytes(words: &[u32; 8]) -> [u8; 32] {
    let mut be = [0u8; 32];
    // SAFETY: as in `to_words`.
    unsafe { sys::p256_convert_endianness(be.as_mut_ptr().cast(), words.as_ptr().cast(), 32) };
    be
}

/// ECDSA P-256 on P256-Cortex-M4 with RFC 6979 nonces; signatures as raw `r‖s`.
pub struct AsmP256Signer {
    secret: [u32; 8],
    public_x: [u32; 8],
    public_y: [u32; 8],
}

impl AsmP256Signer {
    /// Load from the 32-byte big-endian secret scalar; refused unless it is in 1..n-1.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Result<Self, SignError> {
        let mut signer = Self {
            secret: to_words(secret),
            public_x: [0; 8],
            public_y: [0; 8],
        };
        // SAFETY: three valid, distinct 8-word buffers, as the function's contract asks.
        let valid = unsafe {
            sys::p256_keygen(
                signer.public_x.as_mut_ptr(),
                signer.public_y.as_mut_ptr(),
                signer.secret.as_ptr(),
            )
        };
        if valid {
            Ok(signer)
        } else {
            Err(SignError::Crypto)
        }
    }

    /// A fresh key from the caller's cryptographic RNG: 32 bytes taken as a big-endian scalar
    /// until one is in 1..n-1 (as the core's `P256Signer::generate` draws them).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        loop {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let signer = Self::from_secret_bytes(&secret);
            zero(&mut secret);
            if let Ok(signer) = signer {
                return signer;
            }
        }
    }

    /// The secret scalar, big-endian (for persisting the identity; the caller zeroes it).
    pub fn secret_bytes(&self) -> [u8; 32] {
        to_be_bytes(&self.secret)
    }

    /// The public key, SEC1 uncompressed (`04 ‖ x ‖ y`).
    pub fn public_key_sec1(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[0] = 0x04;
        out[1..33].copy_from_slice(&to_be_bytes(&self.public_x));
        out[33..].copy_from_slice(&to_be_bytes(&self.public_y));
        out
    }

    /// The public key as a DER `SubjectPublicKeyInfo` (id-ecPublicKey, secp256r1): the bytes the
    /// certificate holds, compared as they are (no curve arithmetic to read a certificate back).
    pub fn spki_der(&self) -> [u8; SPKI_LEN] {
        let mut out = [0u8; SPKI_LEN];
        out[..SPKI_PREFIX.len()].copy_from_slice(&SPKI_PREFIX);
        out[SPKI_PREFIX.len()..].copy_from_slice(&self.public_key_sec1());
        out
    }
}

/// Overwrite `bytes` with zeros in a way the optimiser keeps.
fn zero(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: a valid, aligned, exclusive reference.
        unsafe { core::ptr::write_volatile(b, 0) };
    }
}

impl Drop for AsmP256Signer {
    fn drop(&mut self) {
        for w in self.secret.iter_mut() {
            // SAFETY: a valid, aligned, exclusive reference.
            unsafe { core::ptr::write_volatile(w, 0) };
        }
    }
}

impl Signer for AsmP256Signer {
    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::EcdsaP256Sha256
    }

    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        // RFC 6979 §3.2 as the core's ecdsa crate calls it: x = the secret, h1 = the digest
        // (32 bytes: bits2int takes it whole), no extra data.
        let mut secret = self.secret_bytes();
        let mut k_be: [u8; 32] = rfc6979::generate_k::<sha2::Sha256, _>(
            (&secret).into(),
            (&ORDER).into(),
            digest.into(),
            &[],
        )
        .into();
        zero(&mut secret);
        let mut k = to_words(&k_be);
        zero(&mut k_be);
        let (mut r, mut s) = ([0u32; 8], [0u32; 8]);
        // SAFETY: 8-word outputs, a 32-byte digest whose length is passed, 8-word secret and k.
        let ok = unsafe {
            sys::p256_sign(
                r.as_mut_ptr(),
                s.as_mut_ptr(),
                digest.as_ptr(),
                32,
                self.secret.as_ptr(),
                k.as_ptr(),
            )
        };
        for w in k.iter_mut() {
            // SAFETY: a valid, aligned, exclusive reference.
            unsafe { core::ptr::write_volatile(w, 0) };
        }
        // The library fails for r = 0 or s = 0 (where the software signer fails too).
        if !ok {
            return Err(SignError::Crypto);
        }
        let mut wire = [0u8; 64];
        wire[..32].copy_from_slice(&to_be_bytes(&r));
        wire[32..].copy_from_slice(&to_be_bytes(&s));
        SignatureBytes::from_slice(&wire).ok_or(SignError::Crypto)
    }
}
