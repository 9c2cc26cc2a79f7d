//! `ClientRegistrationRequest` (docs/protocol.md §4). The signature covers the exact UTF-16LE bytes
//! of the `<Data>` element, so [`RegistrationRequest::sign`] hashes `<Data>` as it is emitted — the
//! same emitter then writes it into the body; no second copy exists.

use crate::guid::Smsid;
use crate::sign::hash::{digest_of, sign_digest};
use crate::sign::{SignError, SignatureBytes, Signer};
use crate::sink::{Emit, Overflow, Sink};
use crate::time::DateTime;
use crate::wire::xml::{ascii_str, markup, raw, Escaping, XmlWriter};

/// `AgentType` (spec §4, Messaging SDK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AgentType {
    /// 0: a normal (advanced) client — what a single-client appliance is.
    Client,
    /// 2: legacy device client.
    Device,
    /// 4: an ISV proxy registering itself.
    IsvProxy,
    /// 8: a client registered by an ISV proxy.
    IsvProxyClient,
}

impl AgentType {
    /// The numeric value on the wire.
    pub fn code(self) -> u64 {
        match self {
            Self::Client => 0,
            Self::Device => 2,
            Self::IsvProxy => 4,
            Self::IsvProxyClient => 8,
        }
    }
}

/// `RequestType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RequestType {
    /// First registration.
    Registration,
    /// Re-confirm an existing (e.g. pending) registration; the SMSID is filled in.
    Confirmation,
}

/// The signed `<Data>` element.
#[derive(Clone, Copy)]
pub struct RegistrationData<'a> {
    /// `HashAlgorithm` OID; `None` sends no attribute (SHA-1, the ConfigMgr 2007 form). Set
    /// from the signer by [`RegistrationRequest::sign`] ([`crate::sign::hash_algorithm_oid`]).
    pub hash_algorithm_oid: Option<&'a str>,
    /// Proposed or known SMSID (`SMSID=""` when none).
    pub smsid: Option<Smsid>,
    /// Registration or confirmation.
    pub request_type: RequestType,
    /// `TimeStamp`.
    pub timestamp: DateTime,
    /// What kind of agent registers.
    pub agent_type: AgentType,
    /// DER of the encryption certificate.
    pub encryption_cert: &'a [u8],
    /// DER of the signing certificate.
    pub signing_cert: &'a [u8],
    /// `Netbios Name` discovery property.
    pub netbios_name: &'a str,
    /// `FQ Name` discovery property.
    pub fqdn: &'a str,
    /// `Locale ID` (1033 = en-US).
    pub locale_id: u32,
}

impl Emit for RegistrationData<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| self.write(w))
    }
}

impl RegistrationData<'_> {
    /// `<Data>…</Data>` into `w` (alone: the signed bytes; or inside the request).
    fn write(&self, w: &mut XmlWriter<'_>) -> Result<(), Overflow> {
        w.open("Data")?;
        if let Some(oid) = self.hash_algorithm_oid {
            w.attr("HashAlgorithm", oid)?;
        }
        match self.smsid {
            Some(id) => {
                let t = id.to_text();
                w.attr("SMSID", ascii_str(&t)?)?;
            }
            None => w.attr("SMSID", "")?,
        }
        w.attr(
            "RequestType",
            match self.request_type {
                RequestType::Registration => "Registration",
                RequestType::Confirmation => "Confirmation",
            },
        )?;
        let ts = self.timestamp.iso8601();
        w.attr("TimeStamp", ascii_str(&ts)?)?;
        w.close()?;
        w.open("AgentInformation")?;
        w.attr("AgentIdentity", crate::profile::AGENT_IDENTITY)?;
        w.attr("AgentVersion", crate::profile::AGENT_VERSION)?;
        w.attr_u64("AgentType", self.agent_type.code())?;
        w.close_empty()?;
        w.parts(&[markup!(
            "<Certificates><Encryption Encoding=\"HexBinary\" KeyType=\"1\">"
        )])?;
        w.hex_upper(self.encryption_cert)?;
        w.parts(&[markup!(
            "</Encryption><Signing Encoding=\"HexBinary\" KeyType=\"1\">"
        )])?;
        w.hex_upper(self.signing_cert)?;
        raw!(w, "</Signing></Certificates><DiscoveryProperties>")?;
        property(w, "Netbios Name", self.netbios_name)?;
        property(w, "FQ Name", self.fqdn)?;
        let mut num = [0u8; 20];
        property(
            w,
            "Locale ID",
            crate::wire::xml::fmt_u64(u64::from(self.locale_id), &mut num),
        )?;
        property(w, "InternetFlag", "0")?;
        raw!(w, "</DiscoveryProperties></Data>")
    }
}

/// `<Property Name=".." Value=".." />`. Not [`XmlWriter::name_value`]: naming the element at each
/// call costs 32 B of flash on the board's registration path (size probe).
fn property(w: &mut XmlWriter<'_>, name: &str, value: &str) -> Result<(), Overflow> {
    w.parts(&[
        markup!("<Property Name=\""),
        (name, Escaping::Attr),
        markup!("\" Value=\""),
        (value, Escaping::Attr),
        markup!("\" />"),
    ])
}

/// A signed registration request body.
#[derive(Clone, Copy)]
pub struct RegistrationRequest<'a> {
    /// The signed part.
    pub data: RegistrationData<'a>,
    /// Signature over `data`'s UTF-16LE bytes, in wire form.
    pub signature: SignatureBytes,
    /// For ISV proxy clients: the proxy's SMSID, written as `<Signature SMSID="…">`.
    pub signer_smsid: Option<Smsid>,
}

/// Building a signed request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BuildError {
    /// The signer failed.
    Sign(SignError),
    /// A sink refused bytes (cannot happen with the hashing sink; kept for completeness).
    Overflow,
}

impl From<Overflow> for BuildError {
    fn from(_: Overflow) -> Self {
        Self::Overflow
    }
}

impl<'a> RegistrationRequest<'a> {
    /// Sign `data` with the signer's hash ([`Signer::signature_hash`]); `data`'s
    /// `HashAlgorithm` is set from the signer first, so that the two always agree.
    pub fn sign(
        mut data: RegistrationData<'a>,
        signer: &dyn Signer,
        signer_smsid: Option<Smsid>,
    ) -> Result<Self, BuildError> {
        data.hash_algorithm_oid = crate::sign::hash_algorithm_oid(signer);
        let digest = digest_of(signer.signature_hash(), &data)?;
        let signature = sign_digest(signer, &digest).map_err(BuildError::Sign)?;
        Ok(Self {
            data,
            signature,
            signer_smsid,
        })
    }
}

impl Emit for RegistrationRequest<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| {
            raw!(w, "<ClientRegistrationRequest>")?;
            self.data.write(w)?;
            w.open("Signature")?;
            if let Some(id) = self.signer_smsid {
                let t = id.to_text();
                w.attr("SMSID", ascii_str(&t)?)?;
            }
            raw!(w, "><SignatureValue>")?;
            w.hex_upper(self.signature.as_bytes())?;
            w.parts(&[markup!(
                "</SignatureValue></Signature></ClientRegistrationRequest>"
            )])
        })
    }
}

// Every case here exercises the SHA-1 form next to SHA-256.
#[cfg(all(test, feature = "sha1-sites"))]
mod tests {
    extern crate std;
    use super::*;
    use crate::config::SignatureHash;
    use crate::sign::{RsaSigner, SiteHashSigner};
    use crate::sink::{emitted_len, SliceSink};
    use std::vec;
    use std::vec::Vec;

    const PK1: &[u8] = include_bytes!("../sign/rsa/testdata/rsa2048.pk1.der");

    fn data(oid: Option<&'static str>) -> RegistrationData<'static> {
        RegistrationData {
            hash_algorithm_oid: oid,
            smsid: None,
            request_type: RequestType::Registration,
            timestamp: crate::time::UnixTime(1_795_428_000).to_datetime(),
            agent_type: AgentType::Client,
            encryption_cert: &[0x30],
            signing_cert: &[0x30],
            netbios_name: "PRN-1",
            fqdn: "prn-1.local",
            locale_id: 1033,
        }
    }

    fn text(item: &dyn Emit) -> std::string::String {
        let mut v = vec![0u8; emitted_len(item).unwrap()];
        item.emit(&mut SliceSink::new(&mut v)).unwrap();
        let units: Vec<u16> = v
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        std::string::String::from_utf16(&units).unwrap()
    }

    #[test]
    fn the_signer_decides_hash_algorithm_and_digest() {
        let rsa = RsaSigner::from_pkcs1_der(PK1).unwrap();
        // A stale OID in `data` is replaced by the signer's: they cannot disagree.
        let modern = RegistrationRequest::sign(data(None), &rsa, None).unwrap();
        assert_eq!(
            modern.data.hash_algorithm_oid,
            Some(crate::profile::RSA_SHA256_OID)
        );
        assert!(
            text(&modern.data).starts_with("<Data HashAlgorithm=\"1.2.840.113549.1.1.11\" SMSID")
        );

        let legacy = SiteHashSigner::new(rsa.clone(), SignatureHash::Sha1).unwrap();
        let old = RegistrationRequest::sign(data(Some("1.2.3")), &legacy, None).unwrap();
        assert_eq!(old.data.hash_algorithm_oid, None);
        assert!(text(&old.data).starts_with("<Data SMSID=\"\" RequestType=\"Registration\""));
        // The signature is SHA-1 over the emitted <Data> bytes (byte-reversed PKCS#1 v1.5).
        let d = crate::sign::hash::digest_of(SignatureHash::Sha1, &old.data).unwrap();
        let crate::sign::hash::Digest::Sha1(d1) = d else {
            panic!("{d:?}")
        };
        let mut want = rsa.sign_pkcs1v15_sha1(&d1).unwrap();
        want.reverse();
        assert_eq!(old.signature.as_bytes(), want.as_slice());
    }
}
