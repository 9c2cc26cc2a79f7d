//! Known answers from OpenSSL / Python `cryptography` (see `testdata/README.md`), cross-checks
//! against the `rsa` crate, malformed keys, and the CRT fault check.

extern crate std;

use std::vec::Vec;

use rand_core::{OsRng, RngCore};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePublicKey;
use sha2::Digest;

use super::*;
use crate::sign::{SignError, SignatureScheme, Signer};

const PK1: &[u8] = include_bytes!("testdata/rsa2048.pk1.der");
const PK8: &[u8] = include_bytes!("testdata/rsa2048.pk8.der");
const SPKI: &[u8] = include_bytes!("testdata/rsa2048.spki.der");
const PK1_E32: &[u8] = include_bytes!("testdata/rsa2048-e32.pk1.der");
const P256_PK8: &[u8] = include_bytes!("testdata/p256.pk8.der");
const KAT_SHA256: &[u8] = include_bytes!("testdata/kat-sha256.sig");
const KAT_SHA1: &[u8] = include_bytes!("testdata/kat-sha1.sig");
const KAT_MESSAGE: &[u8] = b"mpagent RSA-2048 known-answer test";

fn fixture() -> RsaSigner {
    RsaSigner::from_pkcs1_der(PK1).unwrap()
}

fn reference(der: &[u8]) -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::from_pkcs1_der(der).unwrap()
}

#[test]
fn known_answers_from_python_cryptography() {
    let key = fixture();
    let sha256: [u8; 32] = sha2::Sha256::digest(KAT_MESSAGE).into();
    assert_eq!(
        key.sign_pkcs1v15_sha256(&sha256).unwrap().as_slice(),
        KAT_SHA256
    );
    let sha1: [u8; 20] = sha1::Sha1::digest(KAT_MESSAGE).into();
    assert_eq!(key.sign_pkcs1v15_sha1(&sha1).unwrap().as_slice(), KAT_SHA1);
}

#[test]
fn wire_form_is_byte_reversed_and_scheme_is_rsa() {
    let key = fixture();
    assert_eq!(key.scheme(), SignatureScheme::RsaPkcs1Sha256);
    let sha256: [u8; 32] = sha2::Sha256::digest(KAT_MESSAGE).into();
    let wire = key.sign_sha256(&sha256).unwrap();
    let mut reversed = KAT_SHA256.to_vec();
    reversed.reverse();
    assert_eq!(wire.as_bytes(), reversed.as_slice());
    let sha1: [u8; 20] = sha1::Sha1::digest(KAT_MESSAGE).into();
    let wire = (&key as &dyn Signer).sign_sha1(&sha1).unwrap();
    let mut reversed = KAT_SHA1.to_vec();
    reversed.reverse();
    assert_eq!(wire.as_bytes(), reversed.as_slice());
}

#[test]
fn ecdsa_signers_refuse_sha1() {
    let p256 = crate::sign::P256Signer::from_secret_bytes(&[7u8; 32]).unwrap();
    assert_eq!(p256.sign_sha1(&[0u8; 20]), Err(SignError::Unsupported));
}

#[test]
fn signatures_match_the_rsa_crate_for_random_digests() {
    let key = fixture();
    let reference = reference(PK1);
    for _ in 0..8 {
        let mut digest = [0u8; 32];
        OsRng.fill_bytes(&mut digest);
        let ours = key.sign_pkcs1v15_sha256(&digest).unwrap();
        let theirs = reference
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
            .unwrap();
        assert_eq!(ours.as_slice(), theirs.as_slice());
        reference
            .to_public_key()
            .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &ours)
            .unwrap();
    }
}

#[test]
fn der_round_trips_byte_for_byte_with_openssl() {
    let key = fixture();
    let mut buf = [0u8; RSA_PKCS8_DER_MAX_LEN];
    assert_eq!(key.to_pkcs1_der(&mut buf).unwrap(), PK1);
    assert_eq!(key.to_pkcs8_der(&mut buf).unwrap(), PK8);
    assert_eq!(key.spki_der(&mut buf).unwrap(), SPKI);
    let from8 = RsaSigner::from_pkcs8_der(PK8).unwrap();
    assert_eq!(from8.modulus_be(), key.modulus_be());
    assert_eq!(from8.public_exponent(), 65_537);
    // The 32-bit exponent: the longest `e` we take, and the maxima hold.
    let wide = RsaSigner::from_pkcs1_der(PK1_E32).unwrap();
    assert_eq!(wide.public_exponent(), 4_294_967_291);
    assert_eq!(wide.to_pkcs1_der(&mut buf).unwrap(), PK1_E32);
    assert!(wide.to_pkcs8_der(&mut buf).unwrap().len() <= RSA_PKCS8_DER_MAX_LEN);
    assert!(wide.spki_der(&mut buf).unwrap().len() <= RSA_SPKI_DER_MAX_LEN);
    let spki = wide.spki_der(&mut buf).unwrap();
    let theirs = rsa::RsaPublicKey::from_public_key_der(spki).unwrap();
    assert_eq!(theirs, reference(PK1_E32).to_public_key());
}

#[test]
fn small_buffers_are_refused() {
    let key = fixture();
    let mut buf = [0u8; 293];
    assert_eq!(key.spki_der(&mut buf), Err(RsaKeyError::BufferTooSmall));
    let mut buf = [0u8; 1188];
    assert_eq!(key.to_pkcs1_der(&mut buf), Err(RsaKeyError::BufferTooSmall));
    assert_eq!(key.to_pkcs8_der(&mut buf), Err(RsaKeyError::BufferTooSmall));
}

#[test]
fn other_algorithms_are_told_apart() {
    assert_eq!(
        RsaSigner::from_pkcs8_der(P256_PK8).err(),
        Some(RsaKeyError::NotRsa)
    );
    // A PKCS#8 key where PKCS#1 is expected, and the reverse.
    assert_eq!(
        RsaSigner::from_pkcs1_der(PK8).err(),
        Some(RsaKeyError::Malformed)
    );
    assert_eq!(
        RsaSigner::from_pkcs8_der(PK1).err(),
        Some(RsaKeyError::Malformed)
    );
}

#[test]
fn truncated_or_padded_der_is_malformed() {
    for len in [0, 1, 2, 4, 100, PK1.len() / 2, PK1.len() - 1] {
        assert_eq!(
            RsaSigner::from_pkcs1_der(&PK1[..len]).err(),
            Some(RsaKeyError::Malformed),
            "{len}"
        );
    }
    let mut padded = PK1.to_vec();
    padded.push(0);
    assert_eq!(
        RsaSigner::from_pkcs1_der(&padded).err(),
        Some(RsaKeyError::Malformed)
    );
    for len in [0, 3, 26, PK8.len() - 1] {
        assert!(RsaSigner::from_pkcs8_der(&PK8[..len]).is_err(), "{len}");
    }
}

/// Offsets of the INTEGERs in the fixture: 0 version, 1 n, 2 e, 3 d, 4 p, 5 q, 6 dp, 7 dq, 8 qinv
/// (value start, value length).
fn integers(der: &[u8]) -> Vec<(usize, usize)> {
    use der::{Decode, Reader};
    let mut out = Vec::new();
    let mut reader = der::SliceReader::new(der).unwrap();
    let header = der::Header::decode(&mut reader).unwrap();
    assert_eq!(header.tag, der::Tag::Sequence);
    while !reader.is_finished() {
        let h = der::Header::decode(&mut reader).unwrap();
        let start = usize::try_from(reader.position()).unwrap();
        let len = usize::try_from(h.length).unwrap();
        reader.read_slice(h.length).unwrap();
        out.push((start, len));
    }
    out
}

#[test]
fn inconsistent_or_unsupported_numbers_are_refused() {
    let ints = integers(PK1);
    assert_eq!(ints.len(), 9);
    // A flipped low bit in any of n, d, p, q, dp, dq, qinv: the numbers no longer fit together.
    for (field, (start, len)) in ints.iter().enumerate().skip(1) {
        if field == 2 {
            continue;
        }
        let mut bad = PK1.to_vec();
        bad[start + len - 1] ^= 0x02;
        assert_eq!(
            RsaSigner::from_pkcs1_der(&bad).err(),
            Some(RsaKeyError::Inconsistent),
            "field {field}"
        );
    }
    // e = 65539: still odd and well-formed, but e·dp ≢ 1.
    let (e_at, e_len) = ints[2];
    assert_eq!(&PK1[e_at..e_at + e_len], &[0x01, 0x00, 0x01]);
    let mut bad = PK1.to_vec();
    bad[e_at + 2] = 0x03;
    assert_eq!(
        RsaSigner::from_pkcs1_der(&bad).err(),
        Some(RsaKeyError::Inconsistent)
    );
    // An even e.
    bad[e_at + 2] = 0x00;
    assert_eq!(
        RsaSigner::from_pkcs1_der(&bad).err(),
        Some(RsaKeyError::Unsupported)
    );
    // Version 1 (multi-prime) is not taken.
    let mut bad = PK1.to_vec();
    assert_eq!(bad[ints[0].0], 0);
    bad[ints[0].0] = 1;
    assert_eq!(
        RsaSigner::from_pkcs1_der(&bad).err(),
        Some(RsaKeyError::Unsupported)
    );
}

#[test]
fn only_2048_bit_moduli_are_taken() {
    let key = fixture();
    let mut n = [0u8; 384];
    n[128..].copy_from_slice(&key.modulus_be());
    fn parts(n: &[u8]) -> KeyParts<'_> {
        KeyParts {
            n,
            e: &[1, 0, 1],
            d: &[1],
            p: &[3],
            q: &[5],
            dp: &[1],
            dq: &[1],
            qinv: &[1],
        }
    }
    // Leading zeros are fine (and then the other numbers are wrong).
    assert_eq!(
        from_parts(&parts(&n)).err(),
        Some(RsaKeyError::Inconsistent)
    );
    n[0] = 1; // 3072 bits
    assert_eq!(from_parts(&parts(&n)).err(), Some(RsaKeyError::Unsupported));
    let mut short = key.modulus_be();
    short[0] = 0x7F; // 2047 bits
    assert_eq!(
        from_parts(&parts(&short)).err(),
        Some(RsaKeyError::Unsupported)
    );
    let modulus = key.modulus_be();
    let mut wide_e = parts(&modulus);
    wide_e.e = &[1, 0, 0, 0, 1];
    assert_eq!(from_parts(&wide_e).err(), Some(RsaKeyError::Unsupported));
}

#[test]
fn random_corruptions_never_load() {
    // One flipped bit anywhere (every 7th byte, to keep debug builds quick): never a key.
    for at in (0..PK1.len()).step_by(7) {
        let mut bad = PK1.to_vec();
        bad[at] ^= 0x10;
        assert!(RsaSigner::from_pkcs1_der(&bad).is_err(), "byte {at}");
    }
}

/// The fixture's key with one CRT value replaced, bypassing the import checks.
fn faulty(replace: impl FnOnce(&mut RsaSigner)) -> RsaSigner {
    let mut key = fixture();
    replace(&mut key);
    key
}

#[test]
fn crt_fault_check_withholds_a_faulty_signature() {
    let digest = [0x5Au8; 32];
    let flip = |x: &mut U1024| *x = x.wrapping_add(&U1024::ONE);
    for key in [
        faulty(|k| flip(&mut k.dp)),
        faulty(|k| flip(&mut k.dq)),
        faulty(|k| flip(&mut k.qinv)),
    ] {
        assert_eq!(key.sign_pkcs1v15_sha256(&digest), Err(SignError::Crypto));
        assert_eq!(key.sign_sha256(&digest), Err(SignError::Crypto));
    }
    // The untouched key signs.
    assert!(faulty(|_| {}).sign_pkcs1v15_sha256(&digest).is_ok());
}

#[test]
fn emsa_encoding_is_rfc_8017() {
    let em = emsa_pkcs1_v15(&DIGEST_INFO_SHA256, &[0xAB; 32]).unwrap();
    assert_eq!(&em[..2], &[0x00, 0x01]);
    assert!(em[2..256 - 52].iter().all(|b| *b == 0xFF));
    assert_eq!(em[256 - 52], 0x00);
    assert_eq!(&em[256 - 51..256 - 32], &DIGEST_INFO_SHA256);
    assert_eq!(&em[256 - 32..], &[0xAB; 32]);
    // Too long for 8 bytes of padding.
    assert!(emsa_pkcs1_v15(&[0u8; 200], &[0u8; 46]).is_none());
}

#[test]
fn generated_keys_are_valid_and_distinct() {
    let a = RsaSigner::generate(&mut OsRng).unwrap();
    let b = RsaSigner::generate(&mut OsRng).unwrap();
    assert_ne!(a.modulus_be(), b.modulus_be());
    for key in [&a, &b] {
        assert_eq!(key.public_exponent(), RSA_DEFAULT_EXPONENT);
        assert_eq!(key.modulus_be()[0] & 0x80, 0x80);
        let mut buf = [0u8; RSA_PKCS8_DER_MAX_LEN];
        // OpenSSL-independent check of the whole key (rsa crate: primes, d, CRT values).
        let reference = reference(key.to_pkcs1_der(&mut buf).unwrap());
        reference.validate().unwrap();
        let digest = [0x33u8; 32];
        let sig = key.sign_pkcs1v15_sha256(&digest).unwrap();
        reference
            .to_public_key()
            .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &sig)
            .unwrap();
        let again = RsaSigner::from_pkcs8_der(key.to_pkcs8_der(&mut buf).unwrap()).unwrap();
        assert_eq!(again.sign_pkcs1v15_sha256(&digest).unwrap(), sig);
    }
}

/// An RNG stuck at zero gives degenerate Miller–Rabin bases: generation stops, quickly.
struct Stuck;

impl RngCore for Stuck {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        dest.fill(0);
        Ok(())
    }
}

impl rand_core::CryptoRng for Stuck {}

#[test]
fn a_stuck_rng_fails_generation() {
    assert_eq!(
        RsaSigner::generate(&mut Stuck).err(),
        Some(RsaKeyError::Generation)
    );
}

/// 1024 bits, top two bits set, the product of two 512-bit primes (Python, seed 7).
const COMPOSITE_1024: &str = "E5A5FDBAAEFE49EFF735310C6701E5E3E4C02CC56E37AE0186B96CB365D93E3ACE86BE864763FDA64C1D5CE0A525A083CDD18E9F29CA7ED5859A8C51AF82767550D748D02899E7349DCCB3E60ADEEAFB59B791388E087C77C775D63F10DAD9B22EEB2FA0C6FBA81A0CF9A19143E469A245CA3246C1E57D6042A7A595A36CD7F9";

#[test]
fn primality_test_tells_primes_from_composites() {
    let key = fixture();
    for prime in [key.p, key.q] {
        assert_eq!(keygen::is_probable_prime(&prime, &mut OsRng), Ok(true));
        // Its odd neighbours at distance 2 and 4 cannot both be prime (one is divisible by 3).
        let a = prime.wrapping_add(&U1024::from_u8(2));
        let b = prime.wrapping_add(&U1024::from_u8(4));
        let both = keygen::is_probable_prime(&a, &mut OsRng).unwrap()
            && keygen::is_probable_prime(&b, &mut OsRng).unwrap();
        assert!(!both);
    }
    let bytes: Vec<u8> = (0..COMPOSITE_1024.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&COMPOSITE_1024[i..i + 2], 16).unwrap())
        .collect();
    let composite = uint_from_be::<HALF>(&bytes).unwrap();
    assert_eq!(keygen::is_probable_prime(&composite, &mut OsRng), Ok(false));
}

/// A key from its PKCS#1 integers, by value.
fn from_parts(parts: &KeyParts<'_>) -> Result<RsaSigner, RsaKeyError> {
    let mut key = RsaSigner::empty();
    key.set_parts(parts)?;
    Ok(key)
}

#[test]
fn an_empty_key_signs_nothing() {
    let key = RsaSigner::empty();
    assert_eq!(
        key.sign_pkcs1v15_sha256(&[0x5A; 32]),
        Err(SignError::Crypto)
    );
    assert_eq!(key.sign_sha1(&[0x5A; 20]), Err(SignError::Crypto));
}

#[test]
fn loading_in_place_gives_the_same_key_and_signatures() {
    let digest = [0x42u8; 32];
    let by_value = RsaSigner::from_pkcs8_der(PK8).unwrap();
    // Over a holder that held another key: every field is rewritten.
    let mut slot = RsaSigner::from_pkcs1_der(PK1_E32).unwrap();
    slot.load_pkcs8_der(PK8).unwrap();
    assert_eq!(slot.modulus_be(), by_value.modulus_be());
    assert_eq!(
        slot.sign_pkcs1v15_sha256(&digest).unwrap(),
        by_value.sign_pkcs1v15_sha256(&digest).unwrap()
    );
    let mut der = [0u8; RSA_PKCS1_DER_MAX_LEN];
    assert_eq!(slot.to_pkcs1_der(&mut der).unwrap(), PK1);
    let mut fresh = RsaSigner::empty();
    fresh.load_pkcs1_der(PK1).unwrap();
    assert_eq!(fresh.to_pkcs1_der(&mut der).unwrap(), PK1);
}

#[test]
fn a_failed_load_in_place_leaves_the_holder_empty() {
    let mut slot = RsaSigner::from_pkcs1_der(PK1).unwrap();
    let mut bad = PK1.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x01; // qinv no longer matches
    assert_eq!(slot.load_pkcs1_der(&bad), Err(RsaKeyError::Inconsistent));
    assert_eq!(slot.public_exponent(), 0);
    assert_eq!(slot.modulus_be(), [0u8; RSA_SIGNATURE_LEN]);
    assert_eq!(slot.sign_pkcs1v15_sha256(&[1; 32]), Err(SignError::Crypto));
    let mut slot = RsaSigner::from_pkcs1_der(PK1).unwrap();
    assert_eq!(
        slot.load_pkcs8_der(b"\x30\x00"),
        Err(RsaKeyError::Malformed)
    );
    assert_eq!(slot.public_exponent(), 0);
}

#[test]
fn generating_in_place_gives_the_by_value_key() {
    let by_value = RsaSigner::generate(&mut SplitMix(7)).unwrap();
    let mut slot = RsaSigner::from_pkcs1_der(PK1).unwrap();
    slot.generate_in_place(&mut SplitMix(7)).unwrap();
    let (mut a, mut b) = ([0u8; RSA_PKCS1_DER_MAX_LEN], [0u8; RSA_PKCS1_DER_MAX_LEN]);
    assert_eq!(
        slot.to_pkcs1_der(&mut a).unwrap(),
        by_value.to_pkcs1_der(&mut b).unwrap()
    );
}

/// A seeded test RNG (SplitMix64): the same seed gives the same key.
struct SplitMix(u64);

impl RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for SplitMix {}
