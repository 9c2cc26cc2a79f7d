//! `ClientRegistrationRequest` (spec §4). The signature covers the exact UTF-16LE bytes of the
//! `<Data>` element, so [`RegistrationRequest::sign`] hashes `<Data>` as it is emitted — the same
//! emitter then writes it into the body; no second copy exists.

use crate::guid::Smsid;
use crate::sign::{SignError, SignatureBytes, Signer};
use crate::sink::{sha256_of, Emit, Overflow, Sink};
use crate::time::DateTime;
use crate::wire::xml::XmlWriter;

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
    /// `HashAlgorithm` OID (from the signer's scheme).
    pub hash_algorithm_oid: &'a str,
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
        let mut w = XmlWriter::new(out);
        w.open("Data")?;
        w.attr("HashAlgorithm", self.hash_algorithm_oid)?;
        match self.smsid {
            Some(id) => {
                let t = id.to_text();
                w.attr("SMSID", core::str::from_utf8(&t).map_err(|_| Overflow)?)?;
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
        w.attr(
            "TimeStamp",
            core::str::from_utf8(&ts).map_err(|_| Overflow)?,
        )?;
        w.close()?;
        w.open("AgentInformation")?;
        w.attr("AgentIdentity", crate::profile::AGENT_IDENTITY)?;
        w.attr("AgentVersion", crate::profile::AGENT_VERSION)?;
        w.attr_u64("AgentType", self.agent_type.code())?;
        w.close_empty()?;
        w.raw("<Certificates><Encryption Encoding=\"HexBinary\" KeyType=\"1\">")?;
        w.hex_upper(self.encryption_cert)?;
        w.raw("</Encryption><Signing Encoding=\"HexBinary\" KeyType=\"1\">")?;
        w.hex_upper(self.signing_cert)?;
        w.raw("</Signing></Certificates><DiscoveryProperties>")?;
        property(&mut w, "Netbios Name", self.netbios_name)?;
        property(&mut w, "FQ Name", self.fqdn)?;
        let mut num = [0u8; 20];
        property(
            &mut w,
            "Locale ID",
            crate::wire::xml::fmt_u64(u64::from(self.locale_id), &mut num),
        )?;
        property(&mut w, "InternetFlag", "0")?;
        w.raw("</DiscoveryProperties></Data>")
    }
}

fn property(w: &mut XmlWriter<'_>, name: &str, value: &str) -> Result<(), Overflow> {
    w.open("Property")?;
    w.attr("Name", name)?;
    w.attr("Value", value)?;
    w.close_empty()
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
    /// Sign `data` (its `hash_algorithm_oid` should be `signer.scheme().hash_algorithm_oid()`).
    pub fn sign(
        data: RegistrationData<'a>,
        signer: &dyn Signer,
        signer_smsid: Option<Smsid>,
    ) -> Result<Self, BuildError> {
        let digest = sha256_of(&data)?;
        let signature = signer.sign_sha256(&digest).map_err(BuildError::Sign)?;
        Ok(Self {
            data,
            signature,
            signer_smsid,
        })
    }
}

impl Emit for RegistrationRequest<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::new(out).raw("<ClientRegistrationRequest>")?;
        self.data.emit(out)?;
        let mut w = XmlWriter::new(out);
        w.open("Signature")?;
        if let Some(id) = self.signer_smsid {
            let t = id.to_text();
            w.attr("SMSID", core::str::from_utf8(&t).map_err(|_| Overflow)?)?;
        }
        w.raw("><SignatureValue>")?;
        w.hex_upper(self.signature.as_bytes())?;
        w.raw("</SignatureValue></Signature></ClientRegistrationRequest>")
    }
}
