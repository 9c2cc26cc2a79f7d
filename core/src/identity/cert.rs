//! Building a self-signed X.509 v3 certificate into a caller buffer.

use der::asn1::{
    AnyRef, BitStringRef, ContextSpecificRef, ObjectIdentifier, OctetStringRef, UintRef,
    Utf8StringRef,
};
use der::{
    Decode, Encode, EncodeValue, FixedTag, Header, Length, Tag, TagMode, TagNumber, Tagged, Writer,
};
use sha2::Digest;
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use super::{
    CertError, CertParams, EKU_SMS_ENCRYPTION, EKU_SMS_SIGNING, MAX_CERT_TIME, MAX_COMMON_NAME_LEN,
};
use crate::sign::rsa::RSA_SPKI_DER_MAX_LEN;
use crate::sign::{P256Signer, RsaSigner, SignatureScheme, Signer, MAX_SIGNATURE_LEN};
use crate::time::UnixTime;

/// Upper bound of a self-signed P-256 certificate from [`build_self_signed_p256`]: a
/// [`MAX_COMMON_NAME_LEN`]-byte name, GeneralizedTime validity, a serial with its top bit set and
/// the longest DER signature. The default name ("ConfigMgr Client") gives 402..=404 bytes.
pub const MAX_CERT_LEN: usize = 506;

/// Length of the DER SubjectPublicKeyInfo of an uncompressed P-256 key.
pub const P256_SPKI_LEN: usize = 91;

/// Upper bound of a self-signed RSA-2048 certificate from [`build_self_signed_rsa`]: as
/// [`MAX_CERT_LEN`], with the longest RSA public key taken (a 32-bit `e` with its top bit set).
/// The default name ("ConfigMgr Client"), UTCTime validity and `e` = 65537 give 800 bytes.
pub const MAX_RSA_CERT_LEN: usize = 903;

pub(super) const OID_ECDSA_WITH_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
pub(super) const OID_SHA256_WITH_RSA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
pub(super) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(super) const OID_SECP256R1: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(super) const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
pub(super) const OID_SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
pub(super) const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
pub(super) const OID_BASIC_CONSTRAINTS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.5.29.19");
pub(super) const OID_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");

/// KeyUsage digitalSignature (bit 0) | dataEncipherment (bit 3): `1001` then 4 unused bits.
const KEY_USAGE_BITS: u8 = 0x90;
const KEY_USAGE_UNUSED_BITS: u8 = 4;

/// A DER signature is at most this much longer than the signer's wire bytes (ECDSA: SEQUENCE
/// header ≤ 4, two INTEGER headers ≤ 2 each, two sign octets).
const SIGNATURE_DER_OVERHEAD: usize = 10;

/// Build a self-signed certificate for a software P-256 key into `out`; returns its length.
///
/// Deterministic: the same key, parameters and serial give the same bytes (RFC 6979 nonces).
/// `out` of [`MAX_CERT_LEN`] bytes always suffices.
// Kept out of line: LTO otherwise inlines it into the driver's task frame, which then sits
// under the signing chain (board stack measurement).
#[inline(never)]
pub fn build_self_signed_p256(
    params: &CertParams<'_>,
    signer: &P256Signer,
    out: &mut [u8],
) -> Result<usize, CertError> {
    let tbs = p256_tbs(params, signer, out)?;
    sign_and_assemble(&tbs, signer, out)
}

/// Build a self-signed certificate for a P-256 key held by any [`Signer`] (an assembly or
/// hardware signer) into `out`; returns its length. `point` is the key's SEC1 uncompressed public
/// key (`04 ‖ x ‖ y`; it is not checked against the key).
///
/// The same bytes as [`build_self_signed_p256`] for the same key, parameters and signature; no
/// DER is decoded (the SPKI is built from the point). A signer of another scheme is refused with
/// [`CertError::InvalidKey`]. `out` of [`MAX_CERT_LEN`] bytes always suffices.
#[inline(never)]
pub fn build_self_signed_p256_point(
    params: &CertParams<'_>,
    point: &[u8; 65],
    signer: &dyn Signer,
    out: &mut [u8],
) -> Result<usize, CertError> {
    if signer.scheme() != SignatureScheme::EcdsaP256Sha256 {
        return Err(CertError::InvalidKey);
    }
    let tbs = p256_point_tbs(params, point, out)?;
    sign_and_assemble(&tbs, signer, out)
}

/// Build a self-signed certificate (sha256WithRSAEncryption) for a software RSA-2048 key into
/// `out`; returns its length.
///
/// Deterministic (PKCS#1 v1.5 signatures are). `out` of [`MAX_RSA_CERT_LEN`] bytes always
/// suffices.
pub fn build_self_signed_rsa(
    params: &CertParams<'_>,
    signer: &RsaSigner,
    out: &mut [u8],
) -> Result<usize, CertError> {
    let tbs = rsa_tbs(params, signer, out)?;
    sign_and_assemble(&tbs, signer, out)
}

/// Build a self-signed certificate for any [`Signer`] into `out`; returns its length.
///
/// `spki_der` is the DER SubjectPublicKeyInfo of the signer's key (it is not checked against the
/// key). The signature algorithm follows [`Signer::scheme`]. The whole certificate is written to
/// `out`; no other buffer larger than one signature is used. A buffer too small for the TBS is
/// refused before signing; one that holds the TBS but not the signature after it costs one
/// signature before [`CertError::BufferTooSmall`].
pub fn build_self_signed(
    params: &CertParams<'_>,
    spki_der: &[u8],
    signer: &dyn Signer,
    out: &mut [u8],
) -> Result<usize, CertError> {
    let tbs = foreign_spki_tbs(params, spki_der, signer.scheme(), out)?;
    sign_and_assemble(&tbs, signer, out)
}

// The three steps below are out of line so that the TBS step's locals (the key, the SPKI and
// extension buffers, the encoder's state: about 2 KB) are gone before the signing chain (about
// 4.9 KB for P-256) runs: the certificate's peak stack is then the larger of the two, not the
// sum.

/// TBS of a P-256 certificate: the SPKI is built here from the point, never parsed back.
#[inline(never)]
fn p256_tbs(
    params: &CertParams<'_>,
    signer: &P256Signer,
    out: &mut [u8],
) -> Result<EncodedTbs, CertError> {
    let point = signer.verifying_key().to_encoded_point(false);
    p256_point_tbs(params, point.as_bytes(), out)
}

/// TBS of a P-256 certificate from the SEC1 uncompressed point.
#[inline(never)]
fn p256_point_tbs(
    params: &CertParams<'_>,
    point: &[u8],
    out: &mut [u8],
) -> Result<EncodedTbs, CertError> {
    let mut spki_buf = [0u8; P256_SPKI_LEN];
    let spki_der = p256_spki_der(point, &mut spki_buf)?;
    let key = SubjectKey {
        spki_der,
        key_bits: point,
    };
    encode_tbs(params, &key, SignatureScheme::EcdsaP256Sha256, out)
}

/// TBS of an RSA certificate, from the signer's SPKI.
#[inline(never)]
fn rsa_tbs(
    params: &CertParams<'_>,
    signer: &RsaSigner,
    out: &mut [u8],
) -> Result<EncodedTbs, CertError> {
    let mut spki_buf = [0u8; RSA_SPKI_DER_MAX_LEN];
    let spki_der = signer
        .spki_der(&mut spki_buf)
        .map_err(|_| CertError::InvalidKey)?;
    foreign_spki_tbs(params, spki_der, signer.scheme(), out)
}

/// TBS around a SubjectPublicKeyInfo handed in as DER: decoded once, to check it and find the
/// key bits for the subject key identifier.
#[inline(never)]
fn foreign_spki_tbs(
    params: &CertParams<'_>,
    spki_der: &[u8],
    scheme: SignatureScheme,
    out: &mut [u8],
) -> Result<EncodedTbs, CertError> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|_| CertError::InvalidKey)?;
    let key = SubjectKey {
        spki_der,
        key_bits: spki.subject_public_key.raw_bytes(),
    };
    encode_tbs(params, &key, scheme, out)
}

/// The subject's public key: its DER SubjectPublicKeyInfo, copied into the TBS as it is, and the
/// key bits inside it (hashed for the subject key identifier).
struct SubjectKey<'a> {
    spki_der: &'a [u8],
    key_bits: &'a [u8],
}

/// A TBS encoded into `out[reserve..reserve + len]` (room for the outer header in front) and its
/// SHA-256, the digest to sign.
struct EncodedTbs {
    reserve: usize,
    len: usize,
    digest: [u8; 32],
}

/// Encode the TBSCertificate straight into its place in `out` and hash it from there.
fn encode_tbs(
    params: &CertParams<'_>,
    key: &SubjectKey<'_>,
    scheme: SignatureScheme,
    out: &mut [u8],
) -> Result<EncodedTbs, CertError> {
    // Parameters.
    if params.common_name.is_empty() || params.common_name.len() > MAX_COMMON_NAME_LEN {
        return Err(CertError::InvalidName);
    }
    let name = Name {
        cn: Utf8StringRef::new(params.common_name).map_err(|_| CertError::InvalidName)?,
    };
    if params.not_before > params.not_after {
        return Err(CertError::InvalidValidity);
    }
    let validity = [Time::new(params.not_before)?, Time::new(params.not_after)?];
    if params.serial.iter().all(|b| *b == 0) {
        return Err(CertError::InvalidSerial);
    }
    let serial = UintRef::new(&params.serial).map_err(|_| CertError::InvalidSerial)?;
    let sig_alg = signature_algorithm(scheme);

    // Extension values, each DER-encoded into a small stack buffer.
    let mut ku_buf = [0u8; 4];
    let ku = BitStringRef::new(KEY_USAGE_UNUSED_BITS, &[KEY_USAGE_BITS])
        .and_then(|bits| bits.encode_to_slice(&mut ku_buf))
        .map_err(|_| CertError::Encoding)?;
    let mut eku_buf = [0u8; 32];
    let eku = SeqOf(&[EKU_SMS_SIGNING, EKU_SMS_ENCRYPTION])
        .encode_to_slice(&mut eku_buf)
        .map_err(|_| CertError::Encoding)?;
    let mut bc_buf = [0u8; 2];
    let bc = SeqOf::<ObjectIdentifier>(&[])
        .encode_to_slice(&mut bc_buf)
        .map_err(|_| CertError::Encoding)?;
    let ski_digest = sha2::Sha256::digest(key.key_bits);
    let mut ski_buf = [0u8; 22];
    let ski = OctetStringRef::new(ski_digest.get(..20).ok_or(CertError::Encoding)?)
        .and_then(|octets| octets.encode_to_slice(&mut ski_buf))
        .map_err(|_| CertError::Encoding)?;
    let extensions = [
        Extension::new(OID_KEY_USAGE, true, ku)?,
        Extension::new(OID_EXT_KEY_USAGE, false, eku)?,
        Extension::new(OID_BASIC_CONSTRAINTS, false, bc)?,
        Extension::new(OID_SUBJECT_KEY_ID, false, ski)?,
    ];

    let tbs = Tbs {
        serial,
        sig_alg,
        name,
        validity: SeqOf(&validity),
        spki: RawDer(key.spki_der),
        extensions: SeqOf(&extensions),
    };

    // Lengths: reserve room for the largest possible outer header in front of the TBS.
    let len = der_len(tbs.encoded_len())?;
    let sig_alg_len = der_len(sig_alg.encoded_len())?;
    let max_sig_tlv = der_len(
        Length::try_from(MAX_SIGNATURE_LEN.saturating_add(SIGNATURE_DER_OVERHEAD + 1))
            .and_then(Length::for_tlv),
    )?;
    let max_content = len
        .checked_add(sig_alg_len)
        .and_then(|n| n.checked_add(max_sig_tlv))
        .ok_or(CertError::Encoding)?;
    let reserve = der_len(Header::new(Tag::Sequence, max_content).and_then(|h| h.encoded_len()))?;
    let tbs_end = reserve.checked_add(len).ok_or(CertError::Encoding)?;

    // The TBS is encoded once, straight into its place in `out`, and hashed from there.
    let tbs_out = out
        .get_mut(reserve..tbs_end)
        .ok_or(CertError::BufferTooSmall)?;
    tbs.encode_to_slice(tbs_out)
        .map_err(|_| CertError::Encoding)?;
    Ok(EncodedTbs {
        reserve,
        len,
        digest: sha2::Sha256::digest(&*tbs_out).into(),
    })
}

/// Sign the TBS's digest and assemble the certificate around the TBS; returns its length.
/// Only the signature is held across the signing chain.
fn sign_and_assemble(
    tbs: &EncodedTbs,
    signer: &dyn Signer,
    out: &mut [u8],
) -> Result<usize, CertError> {
    let scheme = signer.scheme();
    let wire_sig = signer.sign_sha256(&tbs.digest)?;
    assemble(tbs, scheme, wire_sig.as_bytes(), out)
}

/// Write the outer header in front of the TBS (shifting it down if the header came out shorter
/// than reserved), then the signature algorithm and value after it.
#[inline(never)]
fn assemble(
    tbs: &EncodedTbs,
    scheme: SignatureScheme,
    wire_sig: &[u8],
    out: &mut [u8],
) -> Result<usize, CertError> {
    let sig_alg = signature_algorithm(scheme);
    let sig_alg_len = der_len(sig_alg.encoded_len())?;
    let mut sig_buf = [0u8; MAX_SIGNATURE_LEN + SIGNATURE_DER_OVERHEAD];
    let sig_value = signature_value(scheme, wire_sig, &mut sig_buf)?;
    let sig_bits = BitStringRef::from_bytes(sig_value).map_err(|_| CertError::Encoding)?;

    let content_len = tbs
        .len
        .checked_add(sig_alg_len)
        .and_then(|n| n.checked_add(der_len(sig_bits.encoded_len()).ok()?))
        .ok_or(CertError::Encoding)?;
    let header = Header::new(Tag::Sequence, content_len).map_err(|_| CertError::Encoding)?;
    let header_len = der_len(header.encoded_len())?;
    let total = header_len
        .checked_add(content_len)
        .ok_or(CertError::Encoding)?;
    if total > out.len() {
        return Err(CertError::BufferTooSmall);
    }
    let tbs_end = tbs
        .reserve
        .checked_add(tbs.len)
        .ok_or(CertError::Encoding)?;
    let shift = tbs
        .reserve
        .checked_sub(header_len)
        .ok_or(CertError::Encoding)?;
    if shift > 0 {
        out.get_mut(header_len..tbs_end)
            .ok_or(CertError::Encoding)?
            .copy_within(shift.., 0);
    }
    let (head, rest) = out
        .split_at_mut_checked(header_len)
        .ok_or(CertError::Encoding)?;
    header
        .encode_to_slice(head)
        .map_err(|_| CertError::Encoding)?;
    let tail = rest
        .get_mut(tbs.len..content_len)
        .ok_or(CertError::Encoding)?;
    let mut w = der::SliceWriter::new(tail);
    w.encode(&sig_alg).map_err(|_| CertError::Encoding)?;
    w.encode(&sig_bits).map_err(|_| CertError::Encoding)?;
    let written = w.finish().map_err(|_| CertError::Encoding)?.len();
    if written != content_len.saturating_sub(tbs.len) {
        return Err(CertError::Encoding);
    }
    Ok(total)
}

/// DER SubjectPublicKeyInfo (id-ecPublicKey, prime256v1) of an uncompressed P-256 point.
pub(super) fn p256_spki_der<'o>(point: &[u8], out: &'o mut [u8]) -> Result<&'o [u8], CertError> {
    let spki = SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(AnyRef::from(&OID_SECP256R1)),
        },
        subject_public_key: BitStringRef::from_bytes(point).map_err(|_| CertError::InvalidKey)?,
    };
    spki.encode_to_slice(out).map_err(|_| CertError::Encoding)
}

/// The certificate's signature AlgorithmIdentifier for a scheme.
fn signature_algorithm(scheme: SignatureScheme) -> AlgorithmIdentifierRef<'static> {
    match scheme {
        // RFC 5758: the parameters field MUST be absent.
        SignatureScheme::EcdsaP256Sha256 => AlgorithmIdentifierRef {
            oid: OID_ECDSA_WITH_SHA256,
            parameters: None,
        },
        // RFC 4055: NULL parameters.
        SignatureScheme::RsaPkcs1Sha256 => AlgorithmIdentifierRef {
            oid: OID_SHA256_WITH_RSA,
            parameters: Some(AnyRef::NULL),
        },
    }
}

/// Turn the signer's wire bytes into the X.509 signature value.
fn signature_value<'o>(
    scheme: SignatureScheme,
    wire: &[u8],
    out: &'o mut [u8],
) -> Result<&'o [u8], CertError> {
    match scheme {
        SignatureScheme::EcdsaP256Sha256 => {
            // Raw r‖s (P1363) → Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }.
            if wire.len() != 64 {
                return Err(CertError::Sign(crate::sign::SignError::Crypto));
            }
            let (r, s) = wire.split_at(32);
            let rs = [
                UintRef::new(r).map_err(|_| CertError::Encoding)?,
                UintRef::new(s).map_err(|_| CertError::Encoding)?,
            ];
            SeqOf(&rs)
                .encode_to_slice(out)
                .map_err(|_| CertError::Encoding)
        }
        SignatureScheme::RsaPkcs1Sha256 => {
            // The wire form is byte-reversed (CryptoAPI); X.509 wants it big-endian.
            let dst = out.get_mut(..wire.len()).ok_or(CertError::Encoding)?;
            for (d, s) in dst.iter_mut().zip(wire.iter().rev()) {
                *d = *s;
            }
            Ok(dst)
        }
    }
}

fn der_len(len: der::Result<Length>) -> Result<usize, CertError> {
    len.and_then(usize::try_from)
        .map_err(|_| CertError::Encoding)
}

/// `SEQUENCE OF T` over a slice (also used for fixed SEQUENCEs of one type).
struct SeqOf<'a, T>(&'a [T]);

impl<T: Encode> EncodeValue for SeqOf<'_, T> {
    fn value_len(&self) -> der::Result<Length> {
        self.0
            .iter()
            .try_fold(Length::ZERO, |acc, item| acc + item.encoded_len()?)
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.0.iter().try_for_each(|item| item.encode(writer))
    }
}

impl<T> FixedTag for SeqOf<'_, T> {
    const TAG: Tag = Tag::Sequence;
}

/// `Name` holding one RDN with one CN: `SEQUENCE { SET { SEQUENCE { 2.5.4.3, UTF8String } } }`.
struct Name<'a> {
    cn: Utf8StringRef<'a>,
}

impl Name<'_> {
    fn atv_len(&self) -> der::Result<Length> {
        OID_COMMON_NAME.encoded_len()? + self.cn.encoded_len()?
    }
}

impl EncodeValue for Name<'_> {
    fn value_len(&self) -> der::Result<Length> {
        self.atv_len()?.for_tlv()?.for_tlv()
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        let atv_len = self.atv_len()?;
        Header::new(Tag::Set, atv_len.for_tlv()?)?.encode(writer)?;
        Header::new(Tag::Sequence, atv_len)?.encode(writer)?;
        OID_COMMON_NAME.encode(writer)?;
        self.cn.encode(writer)
    }
}

impl FixedTag for Name<'_> {
    const TAG: Tag = Tag::Sequence;
}

/// A complete DER TLV we built or checked before, written out as it is (no decode and
/// re-encode).
struct RawDer<'a>(&'a [u8]);

impl Encode for RawDer<'_> {
    fn encoded_len(&self) -> der::Result<Length> {
        Length::try_from(self.0.len())
    }
    fn encode(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(self.0)
    }
}

/// X.509 `Time`: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5), as
/// `YYMMDDHHMMSSZ` or `YYYYMMDDHHMMSSZ`. Encoded from the core's own calendar breakdown (which
/// the request path links anyway) rather than der's date types, whose conversion from Unix
/// seconds costs about 1 KB of flash on the boards.
struct Time {
    utc: bool,
    digits: [u8; 15],
}

impl Time {
    fn new(t: UnixTime) -> Result<Self, CertError> {
        let dt = t.to_datetime();
        // `to_datetime` clamps its year: a time past 9999-12-31T23:59:59Z has no X.509 form.
        if t > MAX_CERT_TIME {
            return Err(CertError::InvalidValidity);
        }
        let utc = dt.year < 2050;
        let mut digits = [0u8; 15];
        let fields = [
            (dt.year / 100) as u8,
            (dt.year % 100) as u8,
            dt.month,
            dt.day,
            dt.hour,
            dt.minute,
            dt.second,
        ];
        // UTCTime drops the century.
        let skip = usize::from(utc);
        let mut end = 0;
        for (pair, v) in digits.chunks_exact_mut(2).zip(fields.iter().skip(skip)) {
            if let [hi, lo] = pair {
                *hi = b'0' + v / 10;
                *lo = b'0' + v % 10;
            }
            end += 2;
        }
        if let Some(z) = digits.get_mut(end) {
            *z = b'Z';
        }
        Ok(Self { utc, digits })
    }

    fn value(&self) -> &[u8] {
        let len = if self.utc { 13 } else { 15 };
        self.digits.get(..len).unwrap_or(&self.digits)
    }
}

impl EncodeValue for Time {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(self.value().len())
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(self.value())
    }
}

impl Tagged for Time {
    fn tag(&self) -> Tag {
        if self.utc {
            Tag::UtcTime
        } else {
            Tag::GeneralizedTime
        }
    }
}

/// `Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }`.
struct Extension<'a> {
    oid: ObjectIdentifier,
    critical: bool,
    value: OctetStringRef<'a>,
}

impl<'a> Extension<'a> {
    fn new(oid: ObjectIdentifier, critical: bool, value: &'a [u8]) -> Result<Self, CertError> {
        Ok(Self {
            oid,
            critical,
            value: OctetStringRef::new(value).map_err(|_| CertError::Encoding)?,
        })
    }
}

impl EncodeValue for Extension<'_> {
    fn value_len(&self) -> der::Result<Length> {
        // DER: a DEFAULT FALSE boolean is omitted when false.
        let critical = if self.critical {
            true.encoded_len()?
        } else {
            Length::ZERO
        };
        (self.oid.encoded_len()? + critical)? + self.value.encoded_len()?
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.oid.encode(writer)?;
        if self.critical {
            true.encode(writer)?;
        }
        self.value.encode(writer)
    }
}

impl FixedTag for Extension<'_> {
    const TAG: Tag = Tag::Sequence;
}

/// `TBSCertificate` of a self-signed v3 certificate (issuer = subject).
struct Tbs<'a> {
    serial: UintRef<'a>,
    sig_alg: AlgorithmIdentifierRef<'a>,
    name: Name<'a>,
    validity: SeqOf<'a, Time>,
    spki: RawDer<'a>,
    extensions: SeqOf<'a, Extension<'a>>,
}

/// `version [0] EXPLICIT Version`: v3 is 2.
const VERSION_V3: u8 = 2;

impl Tbs<'_> {
    fn version(&self) -> ContextSpecificRef<'static, u8> {
        ContextSpecificRef {
            tag_number: TagNumber::N0,
            tag_mode: TagMode::Explicit,
            value: &VERSION_V3,
        }
    }
    fn extensions(&self) -> ContextSpecificRef<'_, SeqOf<'_, Extension<'_>>> {
        ContextSpecificRef {
            tag_number: TagNumber::N3,
            tag_mode: TagMode::Explicit,
            value: &self.extensions,
        }
    }
}

impl EncodeValue for Tbs<'_> {
    fn value_len(&self) -> der::Result<Length> {
        let name = self.name.encoded_len()?;
        [
            self.version().encoded_len()?,
            self.serial.encoded_len()?,
            self.sig_alg.encoded_len()?,
            name,
            self.validity.encoded_len()?,
            name,
            self.spki.encoded_len()?,
            self.extensions().encoded_len()?,
        ]
        .iter()
        .try_fold(Length::ZERO, |acc, len| acc + *len)
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.version().encode(writer)?;
        self.serial.encode(writer)?;
        self.sig_alg.encode(writer)?;
        self.name.encode(writer)?; // issuer
        self.validity.encode(writer)?;
        self.name.encode(writer)?; // subject
        self.spki.encode(writer)?;
        self.extensions().encode(writer)
    }
}

impl FixedTag for Tbs<'_> {
    const TAG: Tag = Tag::Sequence;
}
