//! `ClientRegistrationRequest` (docs/protocol.md §4). The signature covers the exact UTF-16LE bytes
//! of the `<Data>` element, so [`RegistrationRequest::sign`] hashes `<Data>` as it is emitted — the
//! same emitter then writes it into the body; no second copy exists.

use crate::guid::Smsid;
use crate::sign::hash::{digest_of, sign_digest};
use crate::sign::{SignError, SignatureBytes, Signer};
use crate::sink::{Emit, Overflow, Sink};
use crate::time::DateTime;
use crate::wire::xml::{ascii_str, markup, raw, Escaping, XmlWriter};

/// `AgentType` (docs/protocol.md §4, Messaging SDK).
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

impl RequestType {
    /// The `RequestType` attribute's value on the wire.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::Registration => "Registration",
            Self::Confirmation => "Confirmation",
        }
    }
}

/// The request's kind as a person reads it in a log line ("sending a registration request").
impl core::fmt::Display for RequestType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Registration => "registration",
            Self::Confirmation => "confirmation",
        })
    }
}

/// The shape of a `RequestType="Confirmation"` request (docs/protocol.md §4); which one is sent follows
/// from [`crate::config::SiteGeneration::confirmation_form`]. A registration always carries
/// both certificates and the discovery properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfirmationForm {
    /// The 2007 SDK sample: `<Data>` holds `<AgentInformation>` and
    /// `<Certificates><Signing>` (the certificate the site checks against the one it stores);
    /// `<Signature>` names no SMSID (unless a proxy signs).
    Sms2007,
    /// A current client's, as captured: `<Data>` holds `<AgentInformation>` only (the site
    /// verifies with the certificate it stores), `<Signature SMSID="{the SMSID confirmed}">`,
    /// and the registration's message ID ([`crate::agent::registration::MessageIds`]).
    Current,
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
    /// The shape of a confirmation (ignored for registrations).
    pub confirmation_form: ConfirmationForm,
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
        w.attr("RequestType", self.request_type.attribute())?;
        let ts = self.timestamp.iso8601();
        w.attr("TimeStamp", ascii_str(&ts)?)?;
        w.close()?;
        w.open("AgentInformation")?;
        w.attr("AgentIdentity", crate::profile::AGENT_IDENTITY)?;
        w.attr("AgentVersion", crate::profile::AGENT_VERSION)?;
        w.attr_u64("AgentType", self.agent_type.code())?;
        w.close_empty()?;
        match (self.request_type, self.confirmation_form) {
            (RequestType::Registration, _) => {}
            (RequestType::Confirmation, ConfirmationForm::Current) => {
                return raw!(w, "</Data>");
            }
            (RequestType::Confirmation, ConfirmationForm::Sms2007) => {
                w.parts(&[markup!(
                    "<Certificates><Signing Encoding=\"HexBinary\" KeyType=\"1\">"
                )])?;
                w.hex_upper(self.signing_cert)?;
                return raw!(w, "</Signing></Certificates></Data>");
            }
        }
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
    /// `<Signature SMSID="…">`: for ISV proxy clients the proxy's SMSID; for a confirmation
    /// in the current form the SMSID confirmed.
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
    /// `proxy_smsid` names the ISV proxy that signs for a client; without one, a confirmation
    /// in the current form names the SMSID it confirms in `<Signature SMSID>`.
    pub fn sign(
        mut data: RegistrationData<'a>,
        signer: &dyn Signer,
        proxy_smsid: Option<Smsid>,
    ) -> Result<Self, BuildError> {
        data.hash_algorithm_oid = crate::sign::hash_algorithm_oid(signer);
        let signer_smsid = match (proxy_smsid, data.request_type, data.confirmation_form) {
            (Some(p), _, _) => Some(p),
            (None, RequestType::Confirmation, ConfirmationForm::Current) => data.smsid,
            (None, _, _) => None,
        };
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
            confirmation_form: ConfirmationForm::Current,
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

// The two confirmation forms, read back with the core's own XML reader.
#[cfg(test)]
mod form_tests {
    extern crate std;
    use super::*;
    use crate::sign::P256Signer;
    use crate::sink::{emitted_len, SliceSink};
    use crate::wire::xml_reader::{Event, Reader};
    use std::string::{String, ToString};
    use std::vec;
    use std::vec::Vec;

    fn id() -> Smsid {
        Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap()
    }

    fn data(request_type: RequestType, form: ConfirmationForm) -> RegistrationData<'static> {
        RegistrationData {
            hash_algorithm_oid: None,
            smsid: Some(id()),
            request_type,
            timestamp: crate::time::UnixTime(1_795_428_000).to_datetime(),
            agent_type: AgentType::Client,
            encryption_cert: &[0xE0, 0x01],
            signing_cert: &[0x5A, 0x02],
            netbios_name: "PRN-1",
            fqdn: "prn-1.local",
            locale_id: 1033,
            confirmation_form: form,
        }
    }

    fn text(item: &dyn Emit) -> String {
        let mut v = vec![0u8; emitted_len(item).unwrap()];
        item.emit(&mut SliceSink::new(&mut v)).unwrap();
        let units: Vec<u16> = v
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).unwrap()
    }

    /// Every element as `path` (slash-separated from the root), with its `SMSID` attribute and
    /// its text, in document order.
    fn elements(xml: &str) -> Vec<(String, Option<String>, String)> {
        let mut r = Reader::new(xml);
        let mut path: Vec<&str> = Vec::new();
        let mut out: Vec<(String, Option<String>, String)> = Vec::new();
        while let Some(ev) = r.next_event().unwrap() {
            match ev {
                Event::StartTag { name, attrs } | Event::EmptyTag { name, attrs } => {
                    path.push(name);
                    let smsid = attrs.get("SMSID").map(|t| t.raw().to_string());
                    out.push((path.join("/"), smsid, String::new()));
                    if matches!(ev, Event::EmptyTag { .. }) {
                        path.pop();
                    }
                }
                Event::EndTag { .. } => {
                    path.pop();
                }
                Event::Text(t) | Event::CData(t) => {
                    if let Some(last) = out.last_mut() {
                        last.2.push_str(t.raw());
                    }
                }
            }
        }
        out
    }

    fn paths(e: &[(String, Option<String>, String)]) -> Vec<&str> {
        e.iter().map(|(p, _, _)| p.as_str()).collect()
    }

    fn signed(request_type: RequestType, form: ConfirmationForm) -> RegistrationRequest<'static> {
        // A leaked key keeps the request's lifetime simple; it is one per test.
        let key = std::boxed::Box::leak(std::boxed::Box::new(
            P256Signer::from_secret_bytes(&[7; 32]).unwrap(),
        ));
        RegistrationRequest::sign(data(request_type, form), key, None).unwrap()
    }

    #[test]
    fn current_confirmation_is_bare_and_names_its_smsid_in_the_signature() {
        let req = signed(RequestType::Confirmation, ConfirmationForm::Current);
        let e = elements(&text(&req));
        assert_eq!(
            paths(&e),
            [
                "ClientRegistrationRequest",
                "ClientRegistrationRequest/Data",
                "ClientRegistrationRequest/Data/AgentInformation",
                "ClientRegistrationRequest/Signature",
                "ClientRegistrationRequest/Signature/SignatureValue",
            ]
        );
        let want = id().to_text();
        let want = core::str::from_utf8(&want).unwrap();
        assert_eq!(e[1].1.as_deref(), Some(want), "Data/@SMSID");
        assert_eq!(e[3].1.as_deref(), Some(want), "Signature/@SMSID");
        // The signature covers the bare <Data> exactly as sent.
        let d = text(&req.data);
        assert!(d.contains("RequestType=\"Confirmation\""), "{d}");
        assert!(d.ends_with("AgentType=\"0\" /></Data>"), "{d}");
        assert!(text(&req).contains(&d));
    }

    #[test]
    fn sms2007_confirmation_carries_the_signing_certificate_only() {
        let req = signed(RequestType::Confirmation, ConfirmationForm::Sms2007);
        let e = elements(&text(&req));
        assert_eq!(
            paths(&e),
            [
                "ClientRegistrationRequest",
                "ClientRegistrationRequest/Data",
                "ClientRegistrationRequest/Data/AgentInformation",
                "ClientRegistrationRequest/Data/Certificates",
                "ClientRegistrationRequest/Data/Certificates/Signing",
                "ClientRegistrationRequest/Signature",
                "ClientRegistrationRequest/Signature/SignatureValue",
            ]
        );
        assert_eq!(e[4].2, "5A02", "the signing certificate, hex");
        assert_eq!(e[5].1, None, "no Signature/@SMSID");
    }

    #[test]
    fn a_registration_is_whole_in_either_form() {
        for form in [ConfirmationForm::Current, ConfirmationForm::Sms2007] {
            let req = signed(RequestType::Registration, form);
            let e = elements(&text(&req));
            let p = paths(&e);
            for want in [
                "ClientRegistrationRequest/Data/Certificates/Encryption",
                "ClientRegistrationRequest/Data/Certificates/Signing",
                "ClientRegistrationRequest/Data/DiscoveryProperties/Property",
            ] {
                assert!(p.contains(&want), "{form:?}: {want} missing from {p:?}");
            }
            let sig = e
                .iter()
                .find(|(p, _, _)| p == "ClientRegistrationRequest/Signature")
                .unwrap();
            assert_eq!(sig.1, None, "{form:?}");
        }
    }

    #[test]
    fn a_request_type_reads_as_a_word_and_goes_on_the_wire_as_its_attribute() {
        assert_eq!(RequestType::Registration.to_string(), "registration");
        assert_eq!(RequestType::Confirmation.to_string(), "confirmation");
        let req = signed(RequestType::Confirmation, ConfirmationForm::Current);
        assert!(text(&req).contains("RequestType=\"Confirmation\""));
    }

    #[test]
    fn a_proxy_names_itself_in_either_confirmation_form() {
        let proxy = Smsid::parse(b"GUID:00000000-1111-2222-3333-444444444444").unwrap();
        let key = P256Signer::from_secret_bytes(&[8; 32]).unwrap();
        for form in [ConfirmationForm::Current, ConfirmationForm::Sms2007] {
            let req =
                RegistrationRequest::sign(data(RequestType::Confirmation, form), &key, Some(proxy))
                    .unwrap();
            assert_eq!(req.signer_smsid, Some(proxy), "{form:?}");
        }
    }
}
