//! A minimal reader of DER X.509 certificates: validity, extended key usages and the P-256 public
//! key. The input is untrusted; every field is bounds-checked by `der`'s borrowed decoders and
//! nothing is copied except the values returned.

use core::time::Duration;

use der::asn1::{AnyRef, BitStringRef, GeneralizedTime, ObjectIdentifier, OctetStringRef, UtcTime};
use der::{Decode, Reader, SliceReader, Tag, TagMode, TagNumber, Tagged};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use super::cert::{OID_EC_PUBLIC_KEY, OID_EXT_KEY_USAGE, OID_SECP256R1};
use super::CertError;
use crate::time::UnixTime;

/// The parts of a certificate the reader exposes, borrowed from the input.
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))] // signature parts: read by tests, kept for a verifier
pub(super) struct CertView<'a> {
    /// The TBSCertificate, tag and length included (the signed bytes).
    pub tbs: &'a [u8],
    /// The outer signature algorithm.
    pub sig_alg: AlgorithmIdentifierRef<'a>,
    /// The signature value.
    pub signature: BitStringRef<'a>,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub spki: SubjectPublicKeyInfoRef<'a>,
    /// The SubjectPublicKeyInfo as it is encoded, tag and length included.
    pub spki_der: &'a [u8],
    /// Contents of the `Extensions` SEQUENCE (the extensions one after another), if present.
    pub extensions: Option<&'a [u8]>,
}

impl<'a> CertView<'a> {
    /// Split a DER certificate; the whole input must be exactly one certificate.
    pub(super) fn parse(der: &'a [u8]) -> Result<Self, CertError> {
        parse_certificate(der).map_err(|_| CertError::Malformed)
    }

    /// The value of the extension `oid` with its critical flag; `None` if absent.
    /// A certificate with the extension twice is malformed (RFC 5280 §4.2).
    pub(super) fn extension(
        &self,
        oid: &ObjectIdentifier,
    ) -> Result<Option<(bool, &'a [u8])>, CertError> {
        let Some(exts) = self.extensions else {
            return Ok(None);
        };
        find_extension(exts, oid)
    }
}

/// The certificate's validity period `(not_before, not_after)`.
pub fn cert_validity(der: &[u8]) -> Result<(UnixTime, UnixTime), CertError> {
    let view = CertView::parse(der)?;
    Ok((view.not_before, view.not_after))
}

/// Whether the certificate's ExtendedKeyUsage extension lists `oid`. A certificate without the
/// extension answers `false` (this asks what is written, not what RFC 5280 would allow).
pub fn cert_has_eku(der: &[u8], oid: &ObjectIdentifier) -> Result<bool, CertError> {
    let view = CertView::parse(der)?;
    let Some((_, value)) = view.extension(&OID_EXT_KEY_USAGE)? else {
        return Ok(false);
    };
    eku_contains(value, oid).map_err(|_| CertError::Malformed)
}

/// The certificate's SubjectPublicKeyInfo exactly as encoded (any algorithm): compare it with
/// the key's own (e.g. [`RsaSigner::spki_der`](crate::sign::RsaSigner::spki_der)) to check that
/// a certificate and a key belong together.
pub fn cert_spki_der(der: &[u8]) -> Result<&[u8], CertError> {
    Ok(CertView::parse(der)?.spki_der)
}

/// The certificate's public key as an uncompressed SEC1 P-256 point (`04‖x‖y`), checked to lie
/// on the curve. [`CertError::Unsupported`] if the key is not EC P-256.
pub fn cert_public_key_p256(der: &[u8]) -> Result<[u8; 65], CertError> {
    let view = CertView::parse(der)?;
    let alg = view.spki.algorithm;
    if alg.oid != OID_EC_PUBLIC_KEY {
        return Err(CertError::Unsupported);
    }
    match alg.parameters_oid() {
        Ok(curve) if curve == OID_SECP256R1 => {}
        Ok(_) => return Err(CertError::Unsupported),
        Err(_) => return Err(CertError::Malformed),
    }
    let bits = view
        .spki
        .subject_public_key
        .as_bytes()
        .ok_or(CertError::InvalidKey)?;
    let point: [u8; 65] = bits.try_into().map_err(|_| CertError::InvalidKey)?;
    if point.first() != Some(&0x04) {
        return Err(CertError::InvalidKey);
    }
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| CertError::InvalidKey)?;
    Ok(point)
}

fn parse_certificate(der: &[u8]) -> der::Result<CertView<'_>> {
    let mut outer = SliceReader::new(der)?;
    let view = outer.sequence(|cert| {
        let tbs = cert.tlv_bytes()?;
        let sig_alg = cert.decode()?;
        let signature = cert.decode()?;
        let fields = parse_tbs(tbs)?;
        Ok(CertView {
            tbs,
            sig_alg,
            signature,
            not_before: fields.not_before,
            not_after: fields.not_after,
            spki: fields.spki,
            spki_der: fields.spki_der,
            extensions: fields.extensions,
        })
    })?;
    outer.finish(view)
}

/// What the reader takes from the TBSCertificate.
struct TbsFields<'a> {
    not_before: UnixTime,
    not_after: UnixTime,
    spki: SubjectPublicKeyInfoRef<'a>,
    spki_der: &'a [u8],
    extensions: Option<&'a [u8]>,
}

fn parse_tbs(tbs: &[u8]) -> der::Result<TbsFields<'_>> {
    let mut r = SliceReader::new(tbs)?;
    let fields = r.sequence(|t| {
        // version [0] EXPLICIT INTEGER DEFAULT v1; only v1..v3 exist.
        let version: Option<u8> = t.context_specific(TagNumber::N0, TagMode::Explicit)?;
        if version.is_some_and(|v| v > 2) {
            return Err(Tag::Integer.value_error());
        }
        let serial: AnyRef<'_> = t.decode()?;
        if serial.tag() != Tag::Integer {
            return Err(serial.tag().unexpected_error(Some(Tag::Integer)));
        }
        let _signature: AlgorithmIdentifierRef<'_> = t.decode()?;
        expect_sequence(t.decode()?)?; // issuer
        let (not_before, not_after) = t.sequence(|v| Ok((decode_time(v)?, decode_time(v)?)))?;
        expect_sequence(t.decode()?)?; // subject
        let spki_der = t.tlv_bytes()?;
        let spki = SubjectPublicKeyInfoRef::from_der(spki_der)?;
        // issuerUniqueID [1], subjectUniqueID [2], extensions [3], each optional, in that order.
        let mut extensions = None;
        let mut last = 0u8;
        while !t.is_finished() {
            let field: AnyRef<'_> = t.decode()?;
            let number = match field.tag() {
                Tag::ContextSpecific { number, .. } => number.value(),
                other => return Err(other.unexpected_error(None)),
            };
            if number <= last || number > 3 {
                return Err(field.tag().unexpected_error(None));
            }
            last = number;
            if number == 3 {
                if !field.tag().is_constructed() {
                    return Err(field.tag().unexpected_error(None));
                }
                let exts = AnyRef::from_der(field.value())?;
                expect_sequence(exts)?;
                extensions = Some(exts.value());
            }
        }
        Ok(TbsFields {
            not_before,
            not_after,
            spki,
            spki_der,
            extensions,
        })
    })?;
    r.finish(fields)
}

fn expect_sequence(any: AnyRef<'_>) -> der::Result<()> {
    if any.tag() == Tag::Sequence {
        Ok(())
    } else {
        Err(any.tag().unexpected_error(Some(Tag::Sequence)))
    }
}

fn decode_time<'a, R: Reader<'a>>(r: &mut R) -> der::Result<UnixTime> {
    let since_epoch: Duration = match r.peek_tag()? {
        Tag::UtcTime => UtcTime::decode(r)?.to_unix_duration(),
        Tag::GeneralizedTime => GeneralizedTime::decode(r)?.to_unix_duration(),
        other => return Err(other.unexpected_error(None)),
    };
    Ok(UnixTime(since_epoch.as_secs()))
}

/// Walk `Extension`s laid end to end; return the one with `oid`.
fn find_extension<'a>(
    exts: &'a [u8],
    oid: &ObjectIdentifier,
) -> Result<Option<(bool, &'a [u8])>, CertError> {
    let mut r = SliceReader::new(exts).map_err(|_| CertError::Malformed)?;
    let mut found = None;
    while !r.is_finished() {
        let (id, critical, value) = r
            .sequence(|e| {
                let id: ObjectIdentifier = e.decode()?;
                let critical = if e.peek_tag()? == Tag::Boolean {
                    e.decode::<bool>()?
                } else {
                    false
                };
                let value: OctetStringRef<'a> = e.decode()?;
                Ok((id, critical, value.as_bytes()))
            })
            .map_err(|_| CertError::Malformed)?;
        if id == *oid {
            if found.is_some() {
                return Err(CertError::Malformed);
            }
            found = Some((critical, value));
        }
    }
    Ok(found)
}

/// `ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId`.
fn eku_contains(value: &[u8], oid: &ObjectIdentifier) -> der::Result<bool> {
    let mut r = SliceReader::new(value)?;
    let found = r.sequence(|s| {
        let mut found = false;
        let mut any = false;
        while !s.is_finished() {
            let purpose: ObjectIdentifier = s.decode()?;
            found |= purpose == *oid;
            any = true;
        }
        if !any {
            return Err(Tag::Sequence.value_error());
        }
        Ok(found)
    })?;
    r.finish(found)
}
