//! RSA-2048 with PKCS#1 v1.5 signatures, without allocation (docs/protocol.md §6: what real sites
//! take).
//!
//! - Integers are fixed-size `crypto-bigint` values: [`U2048`] for the modulus, [`U1024`] for
//!   the CRT halves. Exponentiation is Montgomery arithmetic with a fixed 4-bit window and a
//!   constant-time table lookup (crypto-bigint's `pow`), over the full width of the secret
//!   exponents; the CRT recombination is Garner's formula, also in Montgomery form.
//! - Every signature is checked before it leaves (`s^e mod n == m`), so a fault in one CRT half
//!   (glitch, bit flip, bad key) yields [`SignError::Crypto`] instead of a signature that gives
//!   the key away (the Bellcore attack).
//! - EMSA-PKCS1-v1_5 (RFC 8017 §9.2) is written by hand: `00 01 FF…FF 00 DigestInfo`, with the
//!   SHA-256 DigestInfo, or SHA-1 for sites that send no `HashAlgorithm` (docs/protocol.md §4).
//! - The wire form ([`Signer::sign_sha256`]) is the signature **byte-reversed** (CryptoAPI
//!   little-endian, docs/protocol.md §6); [`RsaSigner::sign_pkcs1v15_sha256`] gives the big-endian
//!   RFC 8017 form that X.509 and every other verifier use.
//! - Keys: generated on the device ([`RsaSigner::generate`], see `keygen.rs`), or provisioned as
//!   PKCS#1 `RSAPrivateKey` / PKCS#8 DER (`pkcs.rs`), which are also what keys export to. The
//!   certificate takes [`RsaSigner::spki_der`].
//!
//! No blinding: nothing in the signing path branches on or indexes by secret data, and the
//! [`Signer`] seam carries no RNG. The secret integers are zeroized on drop; intermediate values
//! on the stack are not.
//!
//! Cost on a Cortex-M4 (`opt-level = "s"`, counted under QEMU, `boards/size-probe --features
//! rsa-measure`): a signature is about 73 M instructions and 12.4 KB of stack (crypto-bigint's
//! 1024-bit exponentiation alone: 29 M and 5.7 KB); a checked import in place
//! ([`RsaSigner::load_pkcs1_der`]) 63 M and 11.7 KB; a key generation in place 3.4 G on average
//! (1.4–5.4 G over 8 keys) and 14 KB. An [`RsaSigner`] holds the key with its Montgomery
//! parameters: about 3.3 KB on a 32-bit target, which is why keys are written in place
//! ([`RsaSigner::empty`], then `load_*`/`generate_in_place`): returned by value, each frame on
//! the way holds a copy (the by-value constructors are for hosts). About 17 KB of flash for
//! import, signing and certificate, 11 KB more for generation.

mod keygen;
mod pkcs;
#[cfg(test)]
mod tests;

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::subtle::ConstantTimeEq;
use crypto_bigint::zeroize::Zeroize;
use crypto_bigint::{Limb, Uint, Word, U1024, U2048};

use super::{SignError, SignatureBytes, SignatureScheme, Signer};

pub use pkcs::{RSA_PKCS1_DER_MAX_LEN, RSA_PKCS8_DER_MAX_LEN, RSA_SPKI_DER_MAX_LEN};

/// Size of the modulus, in bits. Only RSA-2048 keys are taken.
pub const RSA_MODULUS_BITS: usize = 2048;
/// Length of a signature (and of the modulus) in bytes.
pub const RSA_SIGNATURE_LEN: usize = RSA_MODULUS_BITS / 8;
/// Public exponent of generated keys (F4).
pub const RSA_DEFAULT_EXPONENT: u32 = 65_537;

/// Limbs of the modulus.
const FULL: usize = U2048::LIMBS;
/// Limbs of a prime (CRT half).
const HALF: usize = U1024::LIMBS;

/// DigestInfo prefix of SHA-256 (RFC 8017 §9.2 note 1; public for signers that pad elsewhere): `SEQUENCE { SEQUENCE { 2.16.840.1.101.
/// 3.4.2.1, NULL }, OCTET STRING (32) }`, followed by the digest.
pub const DIGEST_INFO_SHA256: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// DigestInfo prefix of SHA-1: `SEQUENCE { SEQUENCE { 1.3.14.3.2.26, NULL }, OCTET STRING (20) }`.
pub const DIGEST_INFO_SHA1: [u8; 15] = [
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];

/// Montgomery parameters of a public dummy modulus, written over the secret ones on drop (and
/// what an empty key holds).
const DUMMY_HALF_PARAMS: DynResidueParams<HALF> = DynResidueParams::new(&U1024::MAX);

/// An RSA key could not be read, written, checked or generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RsaKeyError {
    /// The bytes are not well-formed DER of the expected structure.
    Malformed,
    /// A PKCS#8 key of another algorithm (e.g. EC): try another loader.
    NotRsa,
    /// Well-formed RSA, but not what this signer takes: a modulus other than 2048 bits, a
    /// public exponent wider than 32 bits or even, a multi-prime key, or primes over 1024 bits.
    Unsupported,
    /// The numbers do not form a key: `n ≠ p·q`, or a CRT value or `d` does not match.
    Inconsistent,
    /// The output buffer is too small (see the `*_MAX_LEN` constants).
    BufferTooSmall,
    /// Key generation gave up: the RNG does not look random.
    Generation,
}

/// A software RSA-2048 private key that signs PKCS#1 v1.5 (see the module documentation).
#[derive(Clone)]
pub struct RsaSigner {
    n: U2048,
    /// `None` in an empty key (a dummy 2048-bit one is too long for the const evaluator).
    n_params: Option<DynResidueParams<FULL>>,
    e: u32,
    d: U2048,
    p: U1024,
    q: U1024,
    dp: U1024,
    dq: U1024,
    qinv: U1024,
    p_params: DynResidueParams<HALF>,
    q_params: DynResidueParams<HALF>,
}

impl core::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RsaSigner(RSA-{}, e={})", self.n.bits_vartime(), self.e)
    }
}

impl Drop for RsaSigner {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// The integers of a two-prime key as PKCS#1 lists them, as big-endian bytes (leading zeros
/// allowed).
#[derive(Clone, Copy)]
pub(crate) struct KeyParts<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
    pub d: &'a [u8],
    pub p: &'a [u8],
    pub q: &'a [u8],
    pub dp: &'a [u8],
    pub dq: &'a [u8],
    pub qinv: &'a [u8],
}

impl RsaSigner {
    /// A holder of no key, to be filled in place by [`generate_in_place`](Self::generate_in_place),
    /// [`load_pkcs1_der`](Self::load_pkcs1_der) or [`load_pkcs8_der`](Self::load_pkcs8_der):
    /// a key is ~3.3 KB, and returning one by value through several frames costs that much
    /// stack in each of them. An empty holder signs nothing: its signatures fail their own
    /// check ([`SignError::Crypto`]).
    pub const fn empty() -> Self {
        Self {
            n: U2048::ZERO,
            n_params: None,
            e: 0,
            d: U2048::ZERO,
            p: U1024::ZERO,
            q: U1024::ZERO,
            dp: U1024::ZERO,
            dq: U1024::ZERO,
            qinv: U1024::ZERO,
            p_params: DUMMY_HALF_PARAMS,
            q_params: DUMMY_HALF_PARAMS,
        }
    }

    /// A fresh RSA-2048 key with `e` = 65537 from the caller's cryptographic RNG.
    ///
    /// Slow on a microcontroller: about 3.4 G instructions on a Cortex-M4 on average, varying
    /// from key to key with the distance to the next primes (1.4–5.4 G over 8 keys); see the
    /// module documentation. Fails only when the RNG is broken ([`RsaKeyError::Generation`]).
    /// Returns the key by value; [`generate_in_place`](Self::generate_in_place) writes it where
    /// it stays.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore) -> Result<Self, RsaKeyError> {
        let mut key = Self::empty();
        key.generate_in_place(rng)?;
        Ok(key)
    }

    /// [`generate`](Self::generate), written over `self` (the same key for the same RNG
    /// output). On error `self` is left empty.
    pub fn generate_in_place(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<(), RsaKeyError> {
        let done = keygen::generate_into(self, rng, RSA_DEFAULT_EXPONENT);
        self.wipe_on_error(done)
    }

    /// Load a PKCS#1 `RSAPrivateKey` (DER). The key is checked: two primes of at most 1024
    /// bits whose product is a 2048-bit modulus, CRT values and `d` that match them, and an odd
    /// public exponent of at most 32 bits. [`load_pkcs1_der`](Self::load_pkcs1_der) writes it
    /// in place.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, RsaKeyError> {
        let mut key = Self::empty();
        key.load_pkcs1_der(der)?;
        Ok(key)
    }

    /// Load a PKCS#8 `PrivateKeyInfo` (DER) holding an rsaEncryption key; [`RsaKeyError::NotRsa`]
    /// for another algorithm. Checked as [`from_pkcs1_der`](Self::from_pkcs1_der);
    /// [`load_pkcs8_der`](Self::load_pkcs8_der) writes it in place.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, RsaKeyError> {
        let mut key = Self::empty();
        key.load_pkcs8_der(der)?;
        Ok(key)
    }

    /// [`from_pkcs1_der`](Self::from_pkcs1_der), written over `self`. On error `self` is left
    /// empty.
    pub fn load_pkcs1_der(&mut self, der: &[u8]) -> Result<(), RsaKeyError> {
        let done = pkcs::decode_pkcs1(der).and_then(|parts| self.set_parts(&parts));
        self.wipe_on_error(done)
    }

    /// [`from_pkcs8_der`](Self::from_pkcs8_der), written over `self`. On error `self` is left
    /// empty.
    pub fn load_pkcs8_der(&mut self, der: &[u8]) -> Result<(), RsaKeyError> {
        match pkcs::decode_pkcs8(der) {
            Ok(pkcs1) => self.load_pkcs1_der(pkcs1),
            Err(e) => self.wipe_on_error(Err(e)),
        }
    }

    /// Overwrite the secret integers and their Montgomery parameters (what [`empty`](Self::empty)
    /// holds), keeping the stores from being optimised out.
    fn wipe(&mut self) {
        self.n = U2048::ZERO;
        self.e = 0;
        self.d.zeroize();
        self.p.zeroize();
        self.q.zeroize();
        self.dp.zeroize();
        self.dq.zeroize();
        self.qinv.zeroize();
        // The parameters hold p and q (and R mod p, which gives p away): overwrite them with a
        // public modulus'.
        self.n_params = None;
        self.p_params = DUMMY_HALF_PARAMS;
        self.q_params = DUMMY_HALF_PARAMS;
        core::hint::black_box(&self.p_params);
        core::hint::black_box(&self.q_params);
    }

    fn wipe_on_error(&mut self, done: Result<(), RsaKeyError>) -> Result<(), RsaKeyError> {
        if done.is_err() {
            self.wipe();
        }
        done
    }

    /// Write the key as PKCS#1 `RSAPrivateKey` DER into `out` ([`RSA_PKCS1_DER_MAX_LEN`]
    /// always suffices); returns the bytes written.
    pub fn to_pkcs1_der<'o>(&self, out: &'o mut [u8]) -> Result<&'o [u8], RsaKeyError> {
        pkcs::encode_pkcs1(self, out)
    }

    /// Write the key as PKCS#8 `PrivateKeyInfo` DER (rsaEncryption, NULL parameters) into `out`
    /// ([`RSA_PKCS8_DER_MAX_LEN`] always suffices).
    pub fn to_pkcs8_der<'o>(&self, out: &'o mut [u8]) -> Result<&'o [u8], RsaKeyError> {
        pkcs::encode_pkcs8(self, out)
    }

    /// Write the public key as a DER SubjectPublicKeyInfo (rsaEncryption, NULL parameters,
    /// PKCS#1 `RSAPublicKey`) into `out` ([`RSA_SPKI_DER_MAX_LEN`] always suffices; 294 bytes
    /// with `e` = 65537).
    pub fn spki_der<'o>(&self, out: &'o mut [u8]) -> Result<&'o [u8], RsaKeyError> {
        pkcs::encode_spki(self, out)
    }

    /// The modulus, big-endian.
    pub fn modulus_be(&self) -> [u8; RSA_SIGNATURE_LEN] {
        let mut out = [0u8; RSA_SIGNATURE_LEN];
        uint_to_be(&self.n, &mut out);
        out
    }

    /// The public exponent.
    pub fn public_exponent(&self) -> u32 {
        self.e
    }

    /// RSASSA-PKCS1-v1_5 signature of a SHA-256 digest, big-endian (RFC 8017, X.509 order).
    pub fn sign_pkcs1v15_sha256(
        &self,
        digest: &[u8; 32],
    ) -> Result<[u8; RSA_SIGNATURE_LEN], SignError> {
        self.sign_digest_info(&DIGEST_INFO_SHA256, digest)
    }

    /// RSASSA-PKCS1-v1_5 signature of a SHA-1 digest, big-endian.
    pub fn sign_pkcs1v15_sha1(
        &self,
        digest: &[u8; 20],
    ) -> Result<[u8; RSA_SIGNATURE_LEN], SignError> {
        self.sign_digest_info(&DIGEST_INFO_SHA1, digest)
    }

    fn sign_digest_info(
        &self,
        prefix: &[u8],
        digest: &[u8],
    ) -> Result<[u8; RSA_SIGNATURE_LEN], SignError> {
        let em = emsa_pkcs1_v15(prefix, digest).ok_or(SignError::Crypto)?;
        let m = uint_from_be::<FULL>(&em).ok_or(SignError::Crypto)?;
        let s = self.private_op(&m)?;
        let mut out = [0u8; RSA_SIGNATURE_LEN];
        uint_to_be(&s, &mut out);
        Ok(out)
    }

    /// RSASP1 with CRT and a fault check: `s = m^d mod n`, verified as `s^e mod n == m`.
    ///
    /// Each step is its own (not inlined) function so that their temporaries do not pile up on
    /// the stack: the peak is one step's, not the sum.
    fn private_op(&self, m: &U2048) -> Result<U2048, SignError> {
        let sp = crt_half(m, &self.p_params, &self.dp);
        let sq = crt_half(m, &self.q_params, &self.dq);
        let s = garner(&sp, &sq, &self.q, &self.qinv, &self.p_params);
        let checked = self
            .n_params
            .as_ref()
            .is_some_and(|n_params| public_op_gives(&s, m, n_params, self.e));
        if checked {
            Ok(s)
        } else {
            Err(SignError::Crypto)
        }
    }

    /// Write and check a key from its PKCS#1 integers.
    ///
    /// Each integer goes straight into its field, and the Montgomery parameters are computed
    /// from the fields: no whole key is built on the stack.
    #[inline(never)]
    pub(crate) fn set_parts(&mut self, parts: &KeyParts<'_>) -> Result<(), RsaKeyError> {
        let unsupported = RsaKeyError::Unsupported;
        let inconsistent = RsaKeyError::Inconsistent;
        self.n = uint_from_be::<FULL>(parts.n).ok_or(unsupported)?;
        self.e = public_exponent_from_be(parts.e).ok_or(unsupported)?;
        self.p = uint_from_be::<HALF>(parts.p).ok_or(unsupported)?;
        self.q = uint_from_be::<HALF>(parts.q).ok_or(unsupported)?;
        self.d = uint_from_be::<FULL>(parts.d).ok_or(inconsistent)?;
        self.dp = uint_from_be::<HALF>(parts.dp).ok_or(inconsistent)?;
        self.dq = uint_from_be::<HALF>(parts.dq).ok_or(inconsistent)?;
        self.qinv = uint_from_be::<HALF>(parts.qinv).ok_or(inconsistent)?;
        self.set_params()?;
        self.check_consistency()
    }

    /// Shape checks of `n` and `e`, then the Montgomery parameters of `n`, `p` and `q` (each
    /// written into its field); the arithmetic checks are
    /// [`check_consistency`](Self::check_consistency).
    #[inline(never)]
    pub(crate) fn set_params(&mut self) -> Result<(), RsaKeyError> {
        if self.n.bits_vartime() != RSA_MODULUS_BITS {
            return Err(RsaKeyError::Unsupported);
        }
        if self.e < 3 || self.e.is_multiple_of(2) {
            return Err(RsaKeyError::Unsupported);
        }
        full_params_into(&self.n, &mut self.n_params)?;
        odd_params_into(&self.p, &mut self.p_params)?;
        odd_params_into(&self.q, &mut self.q_params)
    }

    /// `n = p·q`, `1 < p, q`, `d mod (p−1) = dp < p−1`, same for q, `qinv·q ≡ 1 (mod p)`, and
    /// `e·dp ≡ 1 (mod p−1)`. With these, CRT signing gives `m^d` for every `m`.
    #[inline(never)]
    pub(crate) fn check_consistency(&self) -> Result<(), RsaKeyError> {
        let bad = Err(RsaKeyError::Inconsistent);
        let (lo, hi) = self.p.mul_wide(&self.q);
        if hi.concat(&lo) != self.n || self.p <= U1024::ONE || self.q <= U1024::ONE {
            return bad;
        }
        if self.d >= self.n || self.qinv >= self.p {
            return bad;
        }
        let e = U1024::from_u32(self.e);
        for (prime, d_half) in [(&self.p, &self.dp), (&self.q, &self.dq)] {
            let pm1 = prime.wrapping_sub(&U1024::ONE);
            let (d_mod, ok) = self.d.const_rem(&U1024::ZERO.concat(&pm1));
            let d_mod_half = d_mod.split().1;
            if !bool::from(ok) || d_mod_half != *d_half || *d_half >= pm1 {
                return bad;
            }
            let (lo, hi) = d_half.mul_wide(&e);
            let (ed, ok) = U1024::const_rem_wide((lo, hi), &pm1);
            if !bool::from(ok) || ed != U1024::ONE {
                return bad;
            }
        }
        let (lo, hi) = self.qinv.mul_wide(&self.q);
        let (one, ok) = U1024::const_rem_wide((lo, hi), &self.p);
        if !bool::from(ok) || one != U1024::ONE {
            return bad;
        }
        Ok(())
    }
}

impl Signer for RsaSigner {
    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::RsaPkcs1Sha256
    }
    fn sign_sha256(&self, digest: &[u8; 32]) -> Result<SignatureBytes, SignError> {
        wire_form(&self.sign_pkcs1v15_sha256(digest)?)
    }
    fn sign_sha1(&self, digest: &[u8; 20]) -> Result<SignatureBytes, SignError> {
        wire_form(&self.sign_pkcs1v15_sha1(digest)?)
    }
}

/// CryptoAPI order (docs/protocol.md §6): the big-endian signature byte-reversed.
fn wire_form(be: &[u8; RSA_SIGNATURE_LEN]) -> Result<SignatureBytes, SignError> {
    let mut le = *be;
    le.reverse();
    SignatureBytes::from_slice(&le).ok_or(SignError::Crypto)
}

/// EMSA-PKCS1-v1_5 (RFC 8017 §9.2): `00 01 FF…FF 00 ‖ prefix ‖ digest`, `k` = 256 bytes.
fn emsa_pkcs1_v15(prefix: &[u8], digest: &[u8]) -> Option<[u8; RSA_SIGNATURE_LEN]> {
    let t_len = prefix.len().checked_add(digest.len())?;
    // At least 8 bytes of padding (step 3 of §9.2).
    let ps_end = RSA_SIGNATURE_LEN.checked_sub(t_len.checked_add(1)?)?;
    if ps_end < 2 + 8 {
        return None;
    }
    let mut em = [0xFFu8; RSA_SIGNATURE_LEN];
    let (head, t) = em.split_at_mut_checked(ps_end)?;
    let (sep, t) = t.split_first_mut()?;
    *sep = 0x00;
    let (t_prefix, t_digest) = t.split_at_mut_checked(prefix.len())?;
    t_prefix.copy_from_slice(prefix);
    t_digest.copy_from_slice(digest);
    let (start, _) = head.split_at_mut_checked(2)?;
    start.copy_from_slice(&[0x00, 0x01]);
    Some(em)
}

/// `m^d mod p` for a 2048-bit `m`, a 1024-bit prime `p` and a secret `d` (constant-time).
#[inline(never)]
fn crt_half(m: &U2048, params: &DynResidueParams<HALF>, d: &U1024) -> U1024 {
    reduce_to_half(m, *params).pow(d).retrieve()
}

/// Garner: `h = qinv·(sp − sq) mod p`, `s = sq + q·h` (< n: no reduction needed).
#[inline(never)]
fn garner(
    sp: &U1024,
    sq: &U1024,
    q: &U1024,
    qinv: &U1024,
    p_params: &DynResidueParams<HALF>,
) -> U2048 {
    let diff = DynResidue::new(sp, *p_params) - DynResidue::new(sq, *p_params);
    let h = (diff * DynResidue::new(qinv, *p_params)).retrieve();
    let (lo, hi) = q.mul_wide(&h);
    hi.concat(&lo).wrapping_add(&U1024::ZERO.concat(sq))
}

/// Whether `s^e mod n == m` (the fault check; `m < n`).
#[inline(never)]
fn public_op_gives(s: &U2048, m: &U2048, n_params: &DynResidueParams<FULL>, e: u32) -> bool {
    let back = pow_public(&DynResidue::new(s, *n_params), e).retrieve();
    bool::from(back.ct_eq(m))
}

/// `m mod p` for a 2048-bit `m` and a 1024-bit modulus, in Montgomery form: with `R` = 2^1024,
/// `m = hi·R + lo`, so `m ≡ lo + hi·(R mod p)`. Constant-time.
fn reduce_to_half(m: &U2048, params: DynResidueParams<HALF>) -> DynResidue<HALF> {
    let (hi, lo) = m.split();
    // The Montgomery form of 1 is R mod p; as a plain integer it is the radix.
    let radix = DynResidue::new(DynResidue::one(params).as_montgomery(), params);
    DynResidue::new(&lo, params) + DynResidue::new(&hi, params) * radix
}

/// `x^e` for a public exponent: left-to-right square-and-multiply, variable-time in `e` only.
/// Lighter than `pow` (no 16-entry table of 2048-bit values on the stack).
fn pow_public<const L: usize>(x: &DynResidue<L>, e: u32) -> DynResidue<L> {
    let mut acc = DynResidue::one(*x.params());
    for bit in (0..u32::BITS - e.leading_zeros()).rev() {
        acc = acc.square();
        if (e >> bit) & 1 == 1 {
            acc *= x;
        }
    }
    acc
}

/// A public exponent of at most 32 bits from big-endian bytes (leading zeros allowed).
fn public_exponent_from_be(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, b| {
        acc.checked_mul(256).map(|hi| hi | u32::from(*b))
    })
}

/// Montgomery parameters of an odd modulus > 1.
#[inline(never)]
#[allow(deprecated)] // `new_checked` is the non-panicking constructor of crypto-bigint 0.5
fn odd_params<const L: usize>(modulus: &Uint<L>) -> Result<DynResidueParams<L>, RsaKeyError> {
    if *modulus <= Uint::ONE {
        return Err(RsaKeyError::Inconsistent);
    }
    Option::from(DynResidueParams::new_checked(modulus)).ok_or(RsaKeyError::Inconsistent)
}

/// [`odd_params`] written into `out` (out of line: its temporaries and the result do not sit in
/// the caller's frame).
#[inline(never)]
fn odd_params_into<const L: usize>(
    modulus: &Uint<L>,
    out: &mut DynResidueParams<L>,
) -> Result<(), RsaKeyError> {
    *out = odd_params(modulus)?;
    Ok(())
}

/// [`odd_params_into`] for the modulus `n` (`None` if it has none).
#[inline(never)]
fn full_params_into(
    modulus: &U2048,
    out: &mut Option<DynResidueParams<FULL>>,
) -> Result<(), RsaKeyError> {
    *out = None;
    *out = Some(odd_params(modulus)?);
    Ok(())
}

/// Big-endian bytes (leading zeros allowed) into a fixed-size integer; `None` if too large.
pub(crate) fn uint_from_be<const L: usize>(bytes: &[u8]) -> Option<Uint<L>> {
    let mut words = [Word::default(); L];
    for (i, byte) in bytes.iter().rev().enumerate() {
        match words.get_mut(i / Limb::BYTES) {
            Some(word) => *word |= Word::from(*byte) << (8 * (i % Limb::BYTES)),
            None if *byte == 0 => {}
            None => return None,
        }
    }
    Some(Uint::from_words(words))
}

/// A fixed-size integer as big-endian bytes filling `out` (the low `out.len()` bytes).
pub(crate) fn uint_to_be<const L: usize>(x: &Uint<L>, out: &mut [u8]) {
    let words = x.as_words();
    for (i, byte) in out.iter_mut().rev().enumerate() {
        *byte = words
            .get(i / Limb::BYTES)
            .map_or(0, |w| (w >> (8 * (i % Limb::BYTES))) as u8);
    }
}
