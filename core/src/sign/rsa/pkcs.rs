//! DER of RSA keys, read and written with `der` without allocation: PKCS#1 `RSAPrivateKey`
//! (RFC 8017 A.1.2), PKCS#8 `PrivateKeyInfo` (RFC 5208) around it, and the public key's
//! SubjectPublicKeyInfo (RFC 3279 §2.3.1) for the certificate.
//!
//! Integers are encoded straight from the fixed-size values (no byte buffers in between); the
//! PKCS#8 OCTET STRING and the SPKI BIT STRING wrap the inner structure as it is written.

use crypto_bigint::{Limb, Uint};
use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::{
    Decode, Encode, EncodeValue, FixedTag, Length, Reader, SliceReader, Tag, Tagged, Writer,
};
use spki::AlgorithmIdentifierRef;

use super::{KeyParts, RsaKeyError, RsaSigner};

/// `rsaEncryption` (PKCS#1).
pub(crate) const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Longest PKCS#1 `RSAPrivateKey` we write: a 2048-bit `n` and `d` (INTEGER of 257 bytes), a
/// 32-bit `e` with its top bit set (5 bytes), five CRT values of up to 1024 bits (129 bytes).
pub const RSA_PKCS1_DER_MAX_LEN: usize = 4 + 3 + 261 + 7 + 261 + 5 * 132;
/// Longest PKCS#8 `PrivateKeyInfo` we write: version, rsaEncryption with NULL, OCTET STRING.
pub const RSA_PKCS8_DER_MAX_LEN: usize = 4 + 3 + 15 + 4 + RSA_PKCS1_DER_MAX_LEN;
/// Longest SubjectPublicKeyInfo we write (294 bytes with `e` = 65537).
pub const RSA_SPKI_DER_MAX_LEN: usize = 4 + 15 + 4 + 1 + 4 + 261 + 7;

/// AlgorithmIdentifier of an RSA key: rsaEncryption, NULL parameters (RFC 3279).
fn rsa_algorithm() -> AlgorithmIdentifierRef<'static> {
    AlgorithmIdentifierRef {
        oid: OID_RSA_ENCRYPTION,
        parameters: Some(AnyRef::NULL),
    }
}

/// The integers of a PKCS#1 `RSAPrivateKey`, borrowed from the input.
pub(super) fn decode_pkcs1(der: &[u8]) -> Result<KeyParts<'_>, RsaKeyError> {
    let mut reader = SliceReader::new(der).map_err(|_| RsaKeyError::Malformed)?;
    let parts = reader
        .sequence(|r| {
            // Version 0 is two-prime; 1 (multi-prime, with otherPrimeInfos) is not taken.
            let version: u8 = r.decode()?;
            let parts = KeyParts {
                n: int(r)?,
                e: int(r)?,
                d: int(r)?,
                p: int(r)?,
                q: int(r)?,
                dp: int(r)?,
                dq: int(r)?,
                qinv: int(r)?,
            };
            Ok((version, parts))
        })
        .and_then(|parsed| reader.finish(parsed))
        .map_err(|_| RsaKeyError::Malformed)?;
    match parts {
        (0, parts) => Ok(parts),
        _ => Err(RsaKeyError::Unsupported),
    }
}

/// An unsigned INTEGER's significant bytes.
fn int<'a, R: Reader<'a>>(r: &mut R) -> der::Result<&'a [u8]> {
    Ok(UintRef::decode(r)?.as_bytes())
}

/// The `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (v1) or `OneAsymmetricKey` (v2;
/// attributes and the public key are skipped).
pub(super) fn decode_pkcs8(der: &[u8]) -> Result<&[u8], RsaKeyError> {
    let mut reader = SliceReader::new(der).map_err(|_| RsaKeyError::Malformed)?;
    let (version, algorithm, key) = reader
        .sequence(|r| {
            let version: u8 = r.decode()?;
            let algorithm: AlgorithmIdentifierRef<'_> = r.decode()?;
            let key: OctetStringRef<'_> = r.decode()?;
            // [0] attributes, [1] publicKey (v2): context-specific, skipped.
            while !r.is_finished() {
                let field: AnyRef<'_> = r.decode()?;
                if !matches!(field.tag(), Tag::ContextSpecific { .. }) {
                    return Err(field.tag().unexpected_error(None));
                }
            }
            Ok((version, algorithm, key.as_bytes()))
        })
        .and_then(|parsed| reader.finish(parsed))
        .map_err(|_| RsaKeyError::Malformed)?;
    if version > 1 {
        return Err(RsaKeyError::Malformed);
    }
    if algorithm.oid != OID_RSA_ENCRYPTION {
        return Err(RsaKeyError::NotRsa);
    }
    // RFC 3279 says NULL; absent parameters are seen in the wild and mean the same.
    match algorithm.parameters {
        None => {}
        Some(any) if any.is_null() => {}
        Some(_) => return Err(RsaKeyError::Malformed),
    }
    Ok(key)
}

pub(super) fn encode_pkcs1<'o>(
    key: &RsaSigner,
    out: &'o mut [u8],
) -> Result<&'o [u8], RsaKeyError> {
    encode(&PrivateKey(key), out)
}

pub(super) fn encode_pkcs8<'o>(
    key: &RsaSigner,
    out: &'o mut [u8],
) -> Result<&'o [u8], RsaKeyError> {
    encode(&PrivateKeyInfo(key), out)
}

pub(super) fn encode_spki<'o>(key: &RsaSigner, out: &'o mut [u8]) -> Result<&'o [u8], RsaKeyError> {
    encode(&PublicKeyInfo(key), out)
}

fn encode<'o>(value: &impl Encode, out: &'o mut [u8]) -> Result<&'o [u8], RsaKeyError> {
    let len = value
        .encoded_len()
        .and_then(usize::try_from)
        .map_err(|_| RsaKeyError::Malformed)?;
    if len > out.len() {
        return Err(RsaKeyError::BufferTooSmall);
    }
    value
        .encode_to_slice(out)
        .map_err(|_| RsaKeyError::BufferTooSmall)
}

/// A fixed-size integer as a DER INTEGER (unsigned: minimal big-endian bytes, a leading zero
/// when the top bit is set).
struct DerUint<'a, const L: usize>(&'a Uint<L>);

impl<const L: usize> DerUint<'_, L> {
    /// Significant bytes (at least one) and whether a leading zero byte is needed.
    fn shape(&self) -> (usize, bool) {
        let bits = self.0.bits_vartime();
        let bytes = bits.div_ceil(8).max(1);
        (bytes, bits > 0 && bits.is_multiple_of(8))
    }
}

impl<const L: usize> EncodeValue for DerUint<'_, L> {
    fn value_len(&self) -> der::Result<Length> {
        let (bytes, lead) = self.shape();
        Length::try_from(bytes.saturating_add(usize::from(lead)))
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        let (bytes, lead) = self.shape();
        if lead {
            writer.write_byte(0)?;
        }
        let words = self.0.as_words();
        for i in (0..bytes).rev() {
            let byte = words
                .get(i / Limb::BYTES)
                .map_or(0, |w| (w >> (8 * (i % Limb::BYTES))) as u8);
            writer.write_byte(byte)?;
        }
        Ok(())
    }
}

impl<const L: usize> FixedTag for DerUint<'_, L> {
    const TAG: Tag = Tag::Integer;
}

/// `RSAPrivateKey ::= SEQUENCE { version 0, n, e, d, p, q, dp, dq, qinv }`.
struct PrivateKey<'a>(&'a RsaSigner);

impl EncodeValue for PrivateKey<'_> {
    fn value_len(&self) -> der::Result<Length> {
        let k = self.0;
        [
            0u8.encoded_len()?,
            DerUint(&k.n).encoded_len()?,
            k.e.encoded_len()?,
            DerUint(&k.d).encoded_len()?,
            DerUint(&k.p).encoded_len()?,
            DerUint(&k.q).encoded_len()?,
            DerUint(&k.dp).encoded_len()?,
            DerUint(&k.dq).encoded_len()?,
            DerUint(&k.qinv).encoded_len()?,
        ]
        .iter()
        .try_fold(Length::ZERO, |acc, len| acc + *len)
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        let k = self.0;
        0u8.encode(writer)?;
        DerUint(&k.n).encode(writer)?;
        k.e.encode(writer)?;
        DerUint(&k.d).encode(writer)?;
        DerUint(&k.p).encode(writer)?;
        DerUint(&k.q).encode(writer)?;
        DerUint(&k.dp).encode(writer)?;
        DerUint(&k.dq).encode(writer)?;
        DerUint(&k.qinv).encode(writer)
    }
}

impl FixedTag for PrivateKey<'_> {
    const TAG: Tag = Tag::Sequence;
}

/// `RSAPublicKey ::= SEQUENCE { n, e }`.
struct PublicKey<'a>(&'a RsaSigner);

impl EncodeValue for PublicKey<'_> {
    fn value_len(&self) -> der::Result<Length> {
        DerUint(&self.0.n).encoded_len()? + self.0.e.encoded_len()?
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        DerUint(&self.0.n).encode(writer)?;
        self.0.e.encode(writer)
    }
}

impl FixedTag for PublicKey<'_> {
    const TAG: Tag = Tag::Sequence;
}

/// `PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING { RSAPrivateKey } }`.
struct PrivateKeyInfo<'a>(&'a RsaSigner);

impl EncodeValue for PrivateKeyInfo<'_> {
    fn value_len(&self) -> der::Result<Length> {
        let inner = Wrapped::<false, _>(PrivateKey(self.0));
        (0u8.encoded_len()? + rsa_algorithm().encoded_len()?)? + inner.encoded_len()?
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        0u8.encode(writer)?;
        rsa_algorithm().encode(writer)?;
        Wrapped::<false, _>(PrivateKey(self.0)).encode(writer)
    }
}

impl FixedTag for PrivateKeyInfo<'_> {
    const TAG: Tag = Tag::Sequence;
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, BIT STRING { RSAPublicKey } }`.
struct PublicKeyInfo<'a>(&'a RsaSigner);

impl EncodeValue for PublicKeyInfo<'_> {
    fn value_len(&self) -> der::Result<Length> {
        rsa_algorithm().encoded_len()? + Wrapped::<true, _>(PublicKey(self.0)).encoded_len()?
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        rsa_algorithm().encode(writer)?;
        Wrapped::<true, _>(PublicKey(self.0)).encode(writer)
    }
}

impl FixedTag for PublicKeyInfo<'_> {
    const TAG: Tag = Tag::Sequence;
}

/// An encoded structure carried in an OCTET STRING (`BIT = false`) or in a BIT STRING with no
/// unused bits (`BIT = true`), written in place.
struct Wrapped<const BIT: bool, T>(T);

impl<const BIT: bool, T: Encode> EncodeValue for Wrapped<BIT, T> {
    fn value_len(&self) -> der::Result<Length> {
        self.0.encoded_len()? + Length::from(u8::from(BIT))
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        if BIT {
            writer.write_byte(0)?; // unused bits
        }
        self.0.encode(writer)
    }
}

impl<const BIT: bool, T> Tagged for Wrapped<BIT, T> {
    fn tag(&self) -> Tag {
        if BIT {
            Tag::BitString
        } else {
            Tag::OctetString
        }
    }
}
