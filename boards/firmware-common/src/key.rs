//! Which signer the device holds, chosen at build time (feature `key-rsa2048`, else P-256: on the
//! P256-Cortex-M4 assembly with `p256-asm`, the default, else the core's software signer), and
//! how its key sits in the identity record: what the rest of the firmware needs to know about
//! the algorithm lives here, nowhere else.
//!
//! The record's key field says which kind it holds, so a firmware built for the other kind
//! refuses it instead of misreading it ([`KeyKind::of_stored`]):
//! - P-256: the 32-byte secret scalar (what every P-256 firmware has written);
//! - RSA-2048: a PKCS#8 `PrivateKeyInfo` (DER, rsaEncryption with NULL parameters, as the core
//!   writes it, ~1.2 KB): its AlgorithmIdentifier names the algorithm, and it is the standard
//!   form a key is exported or provisioned in.

use mpagent_core::identity::{CertError, CertParams};
use rand_core::CryptoRngCore;

/// A kind of identity key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256.
    P256,
    /// RSA-2048, PKCS#1 v1.5 signatures.
    Rsa2048,
}

/// The rsaEncryption PKCS#8 header after the outer SEQUENCE's 4-byte header: `INTEGER 0`,
/// `SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }`, then the OCTET STRING's tag.
const PKCS8_RSA_HEADER: [u8; 19] = [
    0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    0x05, 0x00, 0x04,
];

impl defmt::Format for KeyKind {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.name())
    }
}

impl KeyKind {
    /// How people call it.
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::Rsa2048 => "RSA-2048",
        }
    }

    /// The kind of key stored in an identity record's key field; `None` for neither form.
    /// A byte check only: it links no code of the other algorithm.
    pub fn of_stored(key: &[u8]) -> Option<Self> {
        if key.len() == 32 {
            return Some(Self::P256);
        }
        let is_rsa = key.first() == Some(&0x30)
            && key.get(1) == Some(&0x82)
            && key.get(4..4 + PKCS8_RSA_HEADER.len()) == Some(&PKCS8_RSA_HEADER[..]);
        is_rsa.then_some(Self::Rsa2048)
    }
}

/// A key could not be made, read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum KeyError {
    /// P-256: the stored bytes are not a valid secret scalar.
    P256,
    /// RSA-2048: import, export or generation failed.
    Rsa(mpagent_core::sign::RsaKeyError),
    /// This firmware takes no provisioned key of this form (P-256 builds take none).
    ProvisioningUnsupported,
}

#[cfg(not(feature = "key-rsa2048"))]
mod imp {
    //! P-256: on the P256-Cortex-M4 assembly ([`crate::p256_asm`]) with `p256-asm`, else on the
    //! core's software signer. Both store the 32-byte scalar and make the same certificate (same
    //! TBS, same RFC 6979 signature); only the certificate's assembly and check differ.
    use super::*;
    use mpagent_core::identity::MAX_CERT_LEN;

    /// The signer this firmware holds.
    #[cfg(feature = "p256-asm")]
    pub type DeviceSigner = crate::p256_asm::AsmP256Signer;
    /// The signer this firmware holds.
    #[cfg(not(feature = "p256-asm"))]
    pub type DeviceSigner = mpagent_core::sign::P256Signer;
    /// The kind of key this firmware is built for.
    pub const KIND: KeyKind = KeyKind::P256;
    /// Largest key field this firmware stores.
    pub const MAX_STORED_KEY: usize = 32;
    /// Largest certificate this firmware makes.
    pub const MAX_DEVICE_CERT: usize = MAX_CERT_LEN;
    /// Largest provisioned key read (P-256 builds take none: enough to see one and refuse it).
    pub const MAX_PROVISIONED_KEY: usize = 256;

    pub fn generate<'s>(
        slot: &'s mut Option<DeviceSigner>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<&'s DeviceSigner, KeyError> {
        Ok(slot.insert(DeviceSigner::generate(rng)))
    }

    pub fn from_provisioned<'s>(
        _slot: &'s mut Option<DeviceSigner>,
        _der: &[u8],
    ) -> Result<&'s DeviceSigner, KeyError> {
        Err(KeyError::ProvisioningUnsupported)
    }

    /// Native mode: the CA-issued certificate's key, DER PKCS#8 or SEC1 `ECPrivateKey`.
    #[cfg(feature = "native")]
    pub fn from_provisioned_native<'s>(
        slot: &'s mut Option<DeviceSigner>,
        der: &[u8],
    ) -> Result<&'s DeviceSigner, KeyError> {
        let scalar = super::p256_scalar_of(der).ok_or(KeyError::P256)?;
        let signer = DeviceSigner::from_secret_bytes(scalar).map_err(|_| KeyError::P256)?;
        Ok(slot.insert(signer))
    }

    pub fn from_stored<'s>(
        slot: &'s mut Option<DeviceSigner>,
        key: &[u8],
    ) -> Result<&'s DeviceSigner, KeyError> {
        let key: &[u8; 32] = key.try_into().map_err(|_| KeyError::P256)?;
        let signer = DeviceSigner::from_secret_bytes(key).map_err(|_| KeyError::P256)?;
        Ok(slot.insert(signer))
    }

    /// Write the key field into `out`; returns its length. The caller zeroes `out` after use.
    pub fn to_stored(signer: &DeviceSigner, out: &mut [u8]) -> Result<usize, KeyError> {
        let secret = signer.secret_bytes();
        let dst = out.get_mut(..secret.len()).ok_or(KeyError::P256)?;
        dst.copy_from_slice(&secret);
        Ok(secret.len())
    }

    #[cfg(not(feature = "p256-asm"))]
    pub fn build_cert(
        params: &CertParams<'_>,
        signer: &DeviceSigner,
        out: &mut [u8],
    ) -> Result<usize, CertError> {
        mpagent_core::identity::build_self_signed_p256(params, signer, out)
    }

    /// The self-signed certificate around the signer's public key.
    #[cfg(feature = "p256-asm")]
    #[inline(never)]
    pub fn build_cert(
        params: &CertParams<'_>,
        signer: &DeviceSigner,
        out: &mut [u8],
    ) -> Result<usize, CertError> {
        let point = &signer.public_key_sec1();
        mpagent_core::identity::build_self_signed_p256_point(params, point, signer, out)
    }

    /// Whether `cert_der` holds `signer`'s public key.
    #[cfg(not(feature = "p256-asm"))]
    pub fn cert_matches(signer: &DeviceSigner, cert_der: &[u8]) -> Result<bool, CertError> {
        let cert_key = mpagent_core::identity::cert_public_key_p256(cert_der)?;
        Ok(signer.verifying_key().to_encoded_point(false).as_bytes() == cert_key.as_slice())
    }

    /// Whether `cert_der` holds `signer`'s public key: its SPKI, byte for byte (the key is the
    /// signer's own, so the point needs no curve check; the software P-256 stays unlinked).
    #[cfg(feature = "p256-asm")]
    pub fn cert_matches(signer: &DeviceSigner, cert_der: &[u8]) -> Result<bool, CertError> {
        Ok(mpagent_core::identity::cert_spki_der(cert_der)? == &signer.spki_der()[..])
    }
}

#[cfg(feature = "key-rsa2048")]
mod imp {
    //! Each step is out of line: inlined, the RSA temporaries of all of them (a key is ~3.3 KB)
    //! pile up in the caller's frame, under the deepest step's stack. Keys are written in place,
    //! into the caller's slot (`RsaSigner::load_pkcs8_der` and co.).
    use super::*;
    use mpagent_core::identity::{build_self_signed_rsa, cert_spki_der, MAX_RSA_CERT_LEN};
    use mpagent_core::sign::rsa::{RSA_PKCS8_DER_MAX_LEN, RSA_SPKI_DER_MAX_LEN};
    use mpagent_core::sign::{RsaKeyError, RsaSigner};

    /// The signer this firmware holds.
    pub type DeviceSigner = RsaSigner;
    /// The kind of key this firmware is built for.
    pub const KIND: KeyKind = KeyKind::Rsa2048;
    /// Largest key field this firmware stores (PKCS#8).
    pub const MAX_STORED_KEY: usize = RSA_PKCS8_DER_MAX_LEN;
    /// Largest certificate this firmware makes.
    pub const MAX_DEVICE_CERT: usize = MAX_RSA_CERT_LEN;
    /// Largest provisioned key read (PKCS#8 is the longer of the two forms).
    pub const MAX_PROVISIONED_KEY: usize = RSA_PKCS8_DER_MAX_LEN;

    /// The key holder in `slot` (an empty one put there if there is none): each key is written
    /// in place, in the caller's slot, not returned by value through the frames in between.
    fn holder(slot: &mut Option<DeviceSigner>) -> &mut DeviceSigner {
        slot.get_or_insert_with(RsaSigner::empty)
    }

    /// `slot` holding the key written by `fill`, or emptied if that failed.
    fn filled(
        slot: &mut Option<DeviceSigner>,
        fill: impl FnOnce(&mut DeviceSigner) -> Result<(), RsaKeyError>,
    ) -> Result<&DeviceSigner, KeyError> {
        match fill(holder(slot)) {
            Ok(()) => Ok(holder(slot)),
            Err(e) => {
                *slot = None;
                Err(KeyError::Rsa(e))
            }
        }
    }

    /// A fresh key: about 2.8 G instructions on average on a Cortex-M4 (see the README).
    #[inline(never)]
    pub fn generate<'s>(
        slot: &'s mut Option<DeviceSigner>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<&'s DeviceSigner, KeyError> {
        filled(slot, |key| key.generate_in_place(rng))
    }

    /// A provisioned PKCS#8 or PKCS#1 DER key (told apart by trying PKCS#8 first), checked.
    #[inline(never)]
    pub fn from_provisioned<'s>(
        slot: &'s mut Option<DeviceSigner>,
        der: &[u8],
    ) -> Result<&'s DeviceSigner, KeyError> {
        filled(slot, |key| match key.load_pkcs8_der(der) {
            Err(RsaKeyError::Malformed) => key.load_pkcs1_der(der),
            other => other,
        })
    }

    /// Native mode: the CA-issued certificate's key (PKCS#8 or PKCS#1 DER), checked.
    #[cfg(feature = "native")]
    pub fn from_provisioned_native<'s>(
        slot: &'s mut Option<DeviceSigner>,
        der: &[u8],
    ) -> Result<&'s DeviceSigner, KeyError> {
        from_provisioned(slot, der)
    }

    /// The stored PKCS#8 key, checked on import like a provisioned one (a flash fault in the key
    /// is caught here, not by a wrong signature on the wire).
    #[inline(never)]
    pub fn from_stored<'s>(
        slot: &'s mut Option<DeviceSigner>,
        key: &[u8],
    ) -> Result<&'s DeviceSigner, KeyError> {
        filled(slot, |holder| holder.load_pkcs8_der(key))
    }

    /// Write the key field (PKCS#8) into `out`; returns its length. The caller zeroes `out`.
    #[inline(never)]
    pub fn to_stored(signer: &DeviceSigner, out: &mut [u8]) -> Result<usize, KeyError> {
        signer
            .to_pkcs8_der(out)
            .map(<[u8]>::len)
            .map_err(KeyError::Rsa)
    }

    #[inline(never)]
    pub fn build_cert(
        params: &CertParams<'_>,
        signer: &DeviceSigner,
        out: &mut [u8],
    ) -> Result<usize, CertError> {
        build_self_signed_rsa(params, signer, out)
    }

    /// Whether `cert_der` holds `signer`'s public key.
    #[inline(never)]
    pub fn cert_matches(signer: &DeviceSigner, cert_der: &[u8]) -> Result<bool, CertError> {
        let mut spki = [0u8; RSA_SPKI_DER_MAX_LEN];
        let own = signer
            .spki_der(&mut spki)
            .map_err(|_| CertError::InvalidKey)?;
        Ok(cert_spki_der(cert_der)? == own)
    }
}

pub use imp::*;

/// One DER TLV at the start of `der`: (tag, contents, rest). Definite lengths up to 2 bytes.
#[cfg(all(feature = "native", not(feature = "key-rsa2048")))]
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
        0x82 => (
            usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// The 32-byte secret of a P-256 key in PKCS#8 `PrivateKeyInfo` or SEC1 `ECPrivateKey` DER
/// (`SEQUENCE { INTEGER 1, OCTET STRING privateKey, … }`, inside PKCS#8's OCTET STRING).
#[cfg(all(feature = "native", not(feature = "key-rsa2048")))]
fn p256_scalar_of(der: &[u8]) -> Option<&[u8; 32]> {
    let (tag, body, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, version, rest) = tlv(body)?;
    if tag != 0x02 {
        return None;
    }
    let ec_private_key = if version == [0] {
        // PKCS#8: AlgorithmIdentifier, then the ECPrivateKey in an OCTET STRING.
        let (tag, _alg, rest) = tlv(rest)?;
        let (tag2, inner, _) = tlv(rest)?;
        if tag != 0x30 || tag2 != 0x04 {
            return None;
        }
        let (tag, body, _) = tlv(inner)?;
        if tag != 0x30 {
            return None;
        }
        let (tag, version, rest) = tlv(body)?;
        (tag == 0x02 && version == [1]).then_some(rest)?
    } else if version == [1] {
        rest
    } else {
        return None;
    };
    let (tag, scalar, _) = tlv(ec_private_key)?;
    (tag == 0x04).then_some(())?;
    scalar.try_into().ok()
}
