//! On-device key generation (FIPS 186-5 A.1.3 in spirit, probable primes): two random 1024-bit
//! primes with their top two bits set (so `n` has exactly 2048 bits), `|p − q| > 2^924`,
//! `gcd(e, p − 1) = 1`, CRT values from modular inverses and `d = e⁻¹ mod (p−1)(q−1)` (RFC 8017
//! allows any `d` that inverts `e` modulo λ(n); only the CRT values are used to sign).
//!
//! Prime search without allocation: a random odd start, then odd offsets from it. The start's
//! residues modulo the first 512 odd primes (3 … 3673) and modulo `e` are computed once; each
//! offset is sieved with small-integer arithmetic and only survivors (about 14 %) get a
//! Miller–Rabin test with base 2; a number that passes then gets 5 more rounds with random
//! bases. For random 1024-bit candidates that is far beyond the error bound FIPS 186-5 asks for.
//! Exponentiations are crypto-bigint's constant-time `pow`.

use crypto_bigint::modular::montgomery_reduction;
use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::subtle::ConditionallySelectable;
use crypto_bigint::zeroize::Zeroize;
use crypto_bigint::{Limb, U1024, U2048};
use rand_core::CryptoRngCore;

use super::{odd_params, uint_from_be, RsaKeyError, RsaSigner, HALF};

/// Bytes of a prime.
const PRIME_BYTES: usize = 128;
/// Random starts tried for one prime before the RNG is declared broken. The expected distance
/// from a random start to the next prime is ln(2^1024) ≈ 710, far below [`MAX_OFFSET`].
const MAX_STARTS: usize = 16;
/// Offsets searched from one start.
const MAX_OFFSET: u32 = 1 << 16;
/// Candidates given the base-2 test for one prime before giving up (about 48 are expected; more
/// than this happens with probability about 2^-60).
const MAX_TESTED: usize = 2048;
/// Miller–Rabin rounds with random bases after the base-2 round.
const MR_RANDOM_ROUNDS: usize = 5;
/// `(p, q)` pairs tried before giving up.
const MAX_KEY_ATTEMPTS: usize = 8;
/// FIPS 186-5 A.1.3: `|p − q| > 2^(nlen/2 − 100)`.
const MIN_PQ_DISTANCE_BITS: usize = 1024 - 100;

/// A fresh key with public exponent `e` (odd, ≥ 3), written into `key` (left partly written
/// on error: the caller wipes it).
pub(super) fn generate_into(
    key: &mut RsaSigner,
    rng: &mut impl CryptoRngCore,
    e: u32,
) -> Result<(), RsaKeyError> {
    if e < 3 || e.is_multiple_of(2) {
        return Err(RsaKeyError::Unsupported);
    }
    for _ in 0..MAX_KEY_ATTEMPTS {
        let a = random_prime(rng, e)?;
        let b = random_prime(rng, e)?;
        let (p, q) = if a > b { (a, b) } else { (b, a) };
        if p.wrapping_sub(&q).bits_vartime() <= MIN_PQ_DISTANCE_BITS {
            continue;
        }
        if from_primes_into(key, p, q, e).is_ok() {
            return Ok(());
        }
    }
    Err(RsaKeyError::Generation)
}

/// The key of two primes `p > q`, written into `key` field by field and checked as an imported
/// one would be.
///
/// The integers are worked out in their own frame ([`set_integers`]), which is gone when the
/// Montgomery parameters and the checks run: the peak is the larger of the two, not the sum.
#[inline(never)]
fn from_primes_into(key: &mut RsaSigner, p: U1024, q: U1024, e: u32) -> Result<(), RsaKeyError> {
    set_integers(key, p, q, e)?;
    key.set_params()?;
    key.check_consistency()
}

/// `n`, `e`, `d` and the CRT values of the primes `p > q`, into `key`.
#[inline(never)]
fn set_integers(key: &mut RsaSigner, p: U1024, q: U1024, e: u32) -> Result<(), RsaKeyError> {
    let (lo, hi) = p.mul_wide(&q);
    key.n = hi.concat(&lo);
    key.e = e;
    key.p = p;
    key.q = q;
    let pm1 = p.wrapping_sub(&U1024::ONE);
    let qm1 = q.wrapping_sub(&U1024::ONE);
    let e_half = U1024::from_u32(e);
    key.dp = invert(&e_half, &pm1)?;
    key.dq = invert(&e_half, &qm1)?;
    key.qinv = invert(&q, &p)?;
    let (lo, hi) = pm1.mul_wide(&qm1);
    key.d = invert(&U2048::from_u32(e), &hi.concat(&lo))?;
    Ok(())
}

fn invert<const L: usize>(
    x: &crypto_bigint::Uint<L>,
    modulus: &crypto_bigint::Uint<L>,
) -> Result<crypto_bigint::Uint<L>, RsaKeyError> {
    let (inverse, exists) = x.inv_mod(modulus);
    if bool::from(exists) {
        Ok(inverse)
    } else {
        Err(RsaKeyError::Inconsistent)
    }
}

/// A random 1024-bit probable prime `p` with its top two bits set and `p mod e ≠ 1`.
fn random_prime(rng: &mut impl CryptoRngCore, e: u32) -> Result<U1024, RsaKeyError> {
    let mut tested = 0usize;
    for _ in 0..MAX_STARTS {
        let mut bytes = [0u8; PRIME_BYTES];
        rng.fill_bytes(&mut bytes);
        if let Some(top) = bytes.first_mut() {
            *top |= 0xC0;
        }
        if let Some(low) = bytes.last_mut() {
            *low |= 1;
        }
        let mut residues = [0u16; SMALL_PRIMES.len()];
        for (r, prime) in residues.iter_mut().zip(SMALL_PRIMES.iter()) {
            *r = rem_small(&bytes, *prime);
        }
        let e_residue = rem_be(&bytes, e);
        let start = uint_from_be::<HALF>(&bytes);
        bytes.zeroize();
        let start = start.ok_or(RsaKeyError::Generation)?;

        let mut offset = 0u32;
        while offset < MAX_OFFSET {
            let survives = residues
                .iter()
                .zip(SMALL_PRIMES.iter())
                .all(|(r, prime)| !(u32::from(*r) + offset).is_multiple_of(u32::from(*prime)))
                && (u64::from(e_residue) + u64::from(offset)) % u64::from(e) != 1;
            if survives {
                let (candidate, carry) = start.adc(&U1024::from_u32(offset), Limb::ZERO);
                if carry != Limb::ZERO {
                    break; // ran past 2^1024: draw a new start
                }
                tested += 1;
                if tested > MAX_TESTED {
                    return Err(RsaKeyError::Generation);
                }
                if is_probable_prime(&candidate, rng)? {
                    return Ok(candidate);
                }
            }
            offset += 2;
        }
    }
    Err(RsaKeyError::Generation)
}

/// A big-endian number modulo a 16-bit `m`, in 32-bit arithmetic (one `udiv` a byte on the M4).
fn rem_small(bytes: &[u8], m: u16) -> u16 {
    let m = u32::from(m);
    let r = bytes
        .iter()
        .fold(0u32, |r, b| ((r << 8) | u32::from(*b)) % m);
    r as u16 // < m
}

/// A big-endian number modulo a 32-bit `m`.
fn rem_be(bytes: &[u8], m: u32) -> u32 {
    let m = u64::from(m);
    let r = bytes
        .iter()
        .fold(0u64, |r, b| ((r << 8) | u64::from(*b)) % m);
    r as u32 // < m
}

/// Miller–Rabin: base 2, then [`MR_RANDOM_ROUNDS`] random bases. `w` is odd and > 3.
/// [`RsaKeyError::Generation`] when the RNG keeps giving degenerate bases (0, 1, −1).
pub(super) fn is_probable_prime(
    w: &U1024,
    rng: &mut impl CryptoRngCore,
) -> Result<bool, RsaKeyError> {
    let w_minus_1 = w.wrapping_sub(&U1024::ONE);
    let s = w_minus_1.trailing_zeros_vartime();
    let d = w_minus_1.shr_vartime(s);
    if !base_two_passes(w, &d, s) {
        return Ok(false);
    }
    let Ok(params) = odd_params(w) else {
        return Ok(false);
    };
    let mut passed = 0;
    // Bases of 0, 1 or −1 are drawn again; a few extra draws cover that (probability ~2^-1022).
    for _ in 0..2 * MR_RANDOM_ROUNDS {
        let mut bytes = [0u8; PRIME_BYTES];
        rng.fill_bytes(&mut bytes);
        let Some(a) = uint_from_be::<HALF>(&bytes) else {
            return Err(RsaKeyError::Generation);
        };
        let Some(x) = pow_of_random_base(&a, &d, &params) else {
            continue;
        };
        if !strong_probable_prime(x, s) {
            return Ok(false);
        }
        passed += 1;
        if passed == MR_RANDOM_ROUNDS {
            return Ok(true);
        }
    }
    Err(RsaKeyError::Generation)
}

/// The rest of a Miller–Rabin round once `x = a^d` is known (`w − 1 = 2^s·d`), for the random
/// bases.
fn strong_probable_prime(mut x: DynResidue<HALF>, s: usize) -> bool {
    let one = DynResidue::one(*x.params());
    let minus_one = -one;
    if x == one || x == minus_one {
        return true;
    }
    for _ in 1..s {
        x = x.square();
        if x == minus_one {
            return true;
        }
        if x == one {
            return false;
        }
    }
    false
}

/// The Miller–Rabin round with base 2, which almost every candidate ends at, in bare Montgomery
/// arithmetic with `R` = 2^1024: since `w` > 2^1023, `R mod w` = `R − w`, so no Montgomery
/// parameters (their `R² mod w` costs about a fifth of an exponentiation) are needed. `2^d` is
/// computed by squaring and doubling (a modular addition, always computed and selected in
/// constant time) over all 1024 bits of `d`: no multiplications at all.
#[inline(never)]
fn base_two_passes(w: &U1024, d: &U1024, s: usize) -> bool {
    let Some(w0) = w.inv_mod2k(Limb::BITS).as_words().first().copied() else {
        return false;
    };
    let mod_neg_inv = Limb(w0.wrapping_neg());
    let square = |x: &U1024| montgomery_reduction(&x.square_wide(), w, mod_neg_inv);
    let one = w.wrapping_neg(); // R mod w: 1 in Montgomery form
    let minus_one = w.wrapping_sub(&one);
    let mut x = one;
    for i in (0..U1024::BITS).rev() {
        x = square(&x);
        let doubled = x.add_mod(&x, w);
        x = U1024::conditional_select(&x, &doubled, d.bit(i).into());
    }
    if x == one || x == minus_one {
        return true;
    }
    for _ in 1..s {
        x = square(&x);
        if x == minus_one {
            return true;
        }
        if x == one {
            return false;
        }
    }
    false
}

/// `a^d mod w` for a random `a` (reduced mod `w`); `None` if the base is 0, 1 or −1.
#[inline(never)]
fn pow_of_random_base(
    a: &U1024,
    d: &U1024,
    params: &DynResidueParams<HALF>,
) -> Option<DynResidue<HALF>> {
    let base = DynResidue::new(a, *params);
    let one = DynResidue::one(*params);
    if base == DynResidue::zero(*params) || base == one || base == -one {
        return None;
    }
    Some(base.pow(d))
}

/// The first 512 odd primes.
#[rustfmt::skip]
const SMALL_PRIMES: [u16; 512] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59,
    61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137,
    139, 149, 151, 157, 163, 167, 173, 179, 181, 191, 193, 197, 199, 211, 223, 227,
    229, 233, 239, 241, 251, 257, 263, 269, 271, 277, 281, 283, 293, 307, 311, 313,
    317, 331, 337, 347, 349, 353, 359, 367, 373, 379, 383, 389, 397, 401, 409, 419,
    421, 431, 433, 439, 443, 449, 457, 461, 463, 467, 479, 487, 491, 499, 503, 509,
    521, 523, 541, 547, 557, 563, 569, 571, 577, 587, 593, 599, 601, 607, 613, 617,
    619, 631, 641, 643, 647, 653, 659, 661, 673, 677, 683, 691, 701, 709, 719, 727,
    733, 739, 743, 751, 757, 761, 769, 773, 787, 797, 809, 811, 821, 823, 827, 829,
    839, 853, 857, 859, 863, 877, 881, 883, 887, 907, 911, 919, 929, 937, 941, 947,
    953, 967, 971, 977, 983, 991, 997, 1009, 1013, 1019, 1021, 1031, 1033, 1039, 1049, 1051,
    1061, 1063, 1069, 1087, 1091, 1093, 1097, 1103, 1109, 1117, 1123, 1129, 1151, 1153, 1163, 1171,
    1181, 1187, 1193, 1201, 1213, 1217, 1223, 1229, 1231, 1237, 1249, 1259, 1277, 1279, 1283, 1289,
    1291, 1297, 1301, 1303, 1307, 1319, 1321, 1327, 1361, 1367, 1373, 1381, 1399, 1409, 1423, 1427,
    1429, 1433, 1439, 1447, 1451, 1453, 1459, 1471, 1481, 1483, 1487, 1489, 1493, 1499, 1511, 1523,
    1531, 1543, 1549, 1553, 1559, 1567, 1571, 1579, 1583, 1597, 1601, 1607, 1609, 1613, 1619, 1621,
    1627, 1637, 1657, 1663, 1667, 1669, 1693, 1697, 1699, 1709, 1721, 1723, 1733, 1741, 1747, 1753,
    1759, 1777, 1783, 1787, 1789, 1801, 1811, 1823, 1831, 1847, 1861, 1867, 1871, 1873, 1877, 1879,
    1889, 1901, 1907, 1913, 1931, 1933, 1949, 1951, 1973, 1979, 1987, 1993, 1997, 1999, 2003, 2011,
    2017, 2027, 2029, 2039, 2053, 2063, 2069, 2081, 2083, 2087, 2089, 2099, 2111, 2113, 2129, 2131,
    2137, 2141, 2143, 2153, 2161, 2179, 2203, 2207, 2213, 2221, 2237, 2239, 2243, 2251, 2267, 2269,
    2273, 2281, 2287, 2293, 2297, 2309, 2311, 2333, 2339, 2341, 2347, 2351, 2357, 2371, 2377, 2381,
    2383, 2389, 2393, 2399, 2411, 2417, 2423, 2437, 2441, 2447, 2459, 2467, 2473, 2477, 2503, 2521,
    2531, 2539, 2543, 2549, 2551, 2557, 2579, 2591, 2593, 2609, 2617, 2621, 2633, 2647, 2657, 2659,
    2663, 2671, 2677, 2683, 2687, 2689, 2693, 2699, 2707, 2711, 2713, 2719, 2729, 2731, 2741, 2749,
    2753, 2767, 2777, 2789, 2791, 2797, 2801, 2803, 2819, 2833, 2837, 2843, 2851, 2857, 2861, 2879,
    2887, 2897, 2903, 2909, 2917, 2927, 2939, 2953, 2957, 2963, 2969, 2971, 2999, 3001, 3011, 3019,
    3023, 3037, 3041, 3049, 3061, 3067, 3079, 3083, 3089, 3109, 3119, 3121, 3137, 3163, 3167, 3169,
    3181, 3187, 3191, 3203, 3209, 3217, 3221, 3229, 3251, 3253, 3257, 3259, 3271, 3299, 3301, 3307,
    3313, 3319, 3323, 3329, 3331, 3343, 3347, 3359, 3361, 3371, 3373, 3389, 3391, 3407, 3413, 3433,
    3449, 3457, 3461, 3463, 3467, 3469, 3491, 3499, 3511, 3517, 3527, 3529, 3533, 3539, 3541, 3547,
    3557, 3559, 3571, 3581, 3583, 3593, 3607, 3613, 3617, 3623, 3631, 3637, 3643, 3659, 3671, 3673,
];
