//! The XML of messages (docs/protocol.md §3, §4): the `<Msg>` header and the
//! `ClientRegistrationRequest` body (read with serde on `quick-xml`: they are parsed for every
//! request, and `serde-xml-rs` cost a fifth of a registration's CPU; reports and policy requests
//! stay on [`parse`]), the markup we refuse before parsing (DTDs, entities), and the XML of our
//! replies (header and `ClientRegistrationResponse`).

use super::envelope::ByteRange;
use super::util::{new_message_id, utc_timestamp, xml_escape};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Why a message's XML was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("XML with a document type declaration or entity declaration is refused")]
    Doctype,
    #[error("{0} is not allowed in this message")]
    Forbidden(&'static str),
    #[error("malformed {what} XML: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("header: {0}")]
    Header(String),
}

/// Refuses DTDs and entity declarations anywhere (never expanded, never parsed).
pub fn check_no_dtd(xml: &str) -> Result<(), XmlError> {
    let upper = xml.to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err(XmlError::Doctype);
    }
    Ok(())
}

/// Stricter check for signed bodies: no comments, CDATA, DTD or processing instructions, so that
/// the element whose bytes are verified is the element that gets parsed.
pub fn check_plain_markup(xml: &str) -> Result<(), XmlError> {
    check_no_dtd(xml)?;
    if xml.contains("<!") {
        return Err(XmlError::Forbidden("a comment or CDATA section"));
    }
    if xml.contains("<?") {
        return Err(XmlError::Forbidden(
            "a processing instruction or XML declaration",
        ));
    }
    Ok(())
}

/// The text after a leading `<?xml …?>` declaration (if any); the declaration's encoding label
/// is meaningless once the text is decoded, so it is not handed to the XML parser.
pub fn strip_xml_declaration(xml: &str) -> &str {
    let t = xml.trim_start();
    if t.starts_with("<?xml ") || t.starts_with("<?xml?") {
        if let Some(end) = t.find("?>") {
            return &t[end + 2..];
        }
    }
    xml
}

/// The name of the root element (after an optional XML declaration), if the text starts with one.
pub fn root_element_name(xml: &str) -> Option<&str> {
    let t = strip_xml_declaration(xml).trim_start();
    let rest = t.strip_prefix('<')?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    let name = &rest[..end];
    (!name.is_empty() && !name.starts_with(['!', '?'])).then_some(name)
}

/// Checks that `xml` is one `<{root}>` document: the root element has this name and the text
/// ends with its end tag (or it is one empty element), so nothing follows the root.
pub fn check_root(xml: &str, root: &str, what: &'static str) -> Result<(), XmlError> {
    let malformed = |detail: String| XmlError::Malformed { what, detail };
    match root_element_name(xml) {
        Some(name) if name == root => {}
        Some(name) => {
            return Err(malformed(format!(
                "root element is {name}, expected {root}"
            )))
        }
        None => return Err(malformed("no root element".into())),
    }
    let t = xml.trim_end();
    let closed = t.ends_with(&format!("</{root}>"))
        || (t.ends_with("/>") && !strip_xml_declaration(xml).trim()[1..].contains('<'));
    if !closed {
        return Err(malformed(format!(
            "the document does not end with </{root}>"
        )));
    }
    Ok(())
}

pub(super) fn parse<'de, T: Deserialize<'de>>(
    xml: &str,
    what: &'static str,
) -> Result<T, XmlError> {
    check_no_dtd(xml)?;
    serde_xml_rs::from_str(xml).map_err(|e| XmlError::Malformed {
        what,
        detail: e.to_string(),
    })
}

/// [`parse`] with serde on `quick-xml`, for the XML of every request (header, registration).
/// Same refusals: a DTD before anything is parsed, then any parse error as [`XmlError::Malformed`].
pub(super) fn parse_fast<'de, T: Deserialize<'de>>(
    xml: &'de str,
    what: &'static str,
) -> Result<T, XmlError> {
    check_no_dtd(xml)?;
    quick_xml::de::from_str(xml).map_err(|e| XmlError::Malformed {
        what,
        detail: e.to_string(),
    })
}

/// A `<Body>` or `<Attachment>` byte range as written in the header.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct XmlByteRange {
    #[serde(rename = "@Type", default)]
    pub kind: Option<String>,
    #[serde(rename = "@Offset")]
    pub offset: String,
    #[serde(rename = "@Length")]
    pub length: String,
    #[serde(rename = "@Name", default)]
    pub name: Option<String>,
}

impl XmlByteRange {
    fn to_range(&self, what: &str) -> Result<ByteRange, XmlError> {
        if let Some(kind) = &self.kind {
            if kind != "ByteRange" {
                return Err(XmlError::Header(format!(
                    "{what} Type {kind:?} is not ByteRange"
                )));
            }
        }
        let num = |field: &str, v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| XmlError::Header(format!("{what} {field} {v:?} is not a number")))
        };
        Ok(ByteRange {
            offset: num("Offset", &self.offset)?,
            length: num("Length", &self.length)?,
        })
    }
}

/// A `<Property Name="…">text</Property>` of a hook.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct HookProperty {
    #[serde(rename = "@Name")]
    pub name: String,
    #[serde(rename = "$text", default)]
    pub value: String,
}

/// One hook (`<Hook3 Name="zlib-compress"/>`, `<Hook2 Name="clientauth">…`).
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Hook {
    #[serde(rename = "@Name")]
    pub name: String,
    #[serde(rename = "Property", default)]
    pub properties: Vec<HookProperty>,
}

/// The `<Msg>` header (docs/protocol.md §3). Unknown elements are ignored.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename = "Msg")]
pub struct MsgHeader {
    #[serde(rename = "@ReplyCompression", default)]
    pub reply_compression: Option<String>,
    #[serde(rename = "@SchemaVersion", default)]
    pub schema_version: Option<String>,
    #[serde(rename = "Body")]
    pub body: XmlByteRange,
    #[serde(rename = "Attachment", default)]
    pub attachments: Vec<XmlByteRange>,
    #[serde(rename = "CorrelationID", default)]
    pub correlation_id: Option<String>,
    /// Hooks by element name (`Hook`, `Hook2`, `Hook3`, …).
    #[serde(rename = "Hooks", default)]
    pub hooks: Option<BTreeMap<String, Hook>>,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "ReplyMode", default)]
    pub reply_mode: Option<String>,
    #[serde(rename = "ReplyTo", default)]
    pub reply_to: Option<String>,
    #[serde(rename = "SentTime", default)]
    pub sent_time: Option<String>,
    #[serde(rename = "SourceID", default)]
    pub source_id: Option<String>,
    #[serde(rename = "SourceHost", default)]
    pub source_host: Option<String>,
    #[serde(rename = "TargetAddress", default)]
    pub target_address: Option<String>,
    #[serde(rename = "TargetEndpoint")]
    pub target_endpoint: String,
    #[serde(rename = "TargetHost", default)]
    pub target_host: Option<String>,
}

impl MsgHeader {
    /// Parses and checks a header: a `{GUID}` ID, non-empty endpoint, numeric byte ranges.
    pub fn parse(xml: &str) -> Result<MsgHeader, XmlError> {
        let h: MsgHeader = parse_fast(xml, "header")?;
        let id = h.id.trim();
        let guid_ok = id
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .is_some_and(super::util::is_guid);
        if !guid_ok {
            return Err(XmlError::Header(format!("ID {id:?} is not a {{GUID}}")));
        }
        if h.target_endpoint.trim().is_empty() {
            return Err(XmlError::Header("empty TargetEndpoint".into()));
        }
        h.body_range()?;
        h.attachment_ranges()?;
        Ok(h)
    }

    pub fn body_range(&self) -> Result<ByteRange, XmlError> {
        self.body.to_range("Body")
    }

    pub fn attachment_ranges(&self) -> Result<Vec<ByteRange>, XmlError> {
        self.attachments
            .iter()
            .map(|a| a.to_range("Attachment"))
            .collect()
    }

    /// The hook with this `Name` attribute, whatever its element name.
    pub fn hook(&self, name: &str) -> Option<&Hook> {
        self.hooks.as_ref()?.values().find(|h| h.name == name)
    }

    /// True if the octet-stream part is zlib-compressed.
    pub fn is_compressed(&self) -> bool {
        self.hook("zlib-compress").is_some()
    }

    /// True if the client asked for a zlib-compressed reply.
    pub fn wants_zlib_reply(&self) -> bool {
        self.reply_compression
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("zlib"))
    }
}

/// `<AgentInformation …/>`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct AgentInformation {
    #[serde(rename = "@AgentIdentity", default)]
    pub agent_identity: Option<String>,
    #[serde(rename = "@AgentVersion", default)]
    pub agent_version: Option<String>,
    #[serde(rename = "@AgentType")]
    pub agent_type: String,
}

/// `<Signing Encoding="HexBinary" KeyType="1">HEX</Signing>` (and `<Encryption>`).
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct HexCert {
    #[serde(rename = "@Encoding", default)]
    pub encoding: Option<String>,
    #[serde(rename = "@KeyType", default)]
    pub key_type: Option<String>,
    #[serde(rename = "$text", default)]
    pub hex: String,
}

/// `<Certificates>`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Certificates {
    #[serde(rename = "Encryption", default)]
    pub encryption: Option<HexCert>,
    #[serde(rename = "Signing", default)]
    pub signing: Option<HexCert>,
}

/// `<Property Name Value/>` of the discovery properties.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct DiscoveryProperty {
    #[serde(rename = "@Name")]
    pub name: String,
    #[serde(rename = "@Value", default)]
    pub value: String,
}

/// `<DiscoveryProperties>`.
#[derive(Debug, Deserialize, PartialEq, Eq, Default)]
pub struct DiscoveryProperties {
    #[serde(rename = "Property", default)]
    pub properties: Vec<DiscoveryProperty>,
}

/// The signed `<Data>` element.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct RegistrationData {
    #[serde(rename = "@HashAlgorithm", default)]
    pub hash_algorithm: Option<String>,
    #[serde(rename = "@SMSID", default)]
    pub smsid: Option<String>,
    #[serde(rename = "@RequestType")]
    pub request_type: String,
    #[serde(rename = "@TimeStamp", default)]
    pub timestamp: Option<String>,
    #[serde(rename = "AgentInformation")]
    pub agent_information: AgentInformation,
    #[serde(rename = "Certificates", default)]
    pub certificates: Option<Certificates>,
    #[serde(rename = "DiscoveryProperties", default)]
    pub discovery_properties: Option<DiscoveryProperties>,
}

impl RegistrationData {
    /// The value of a discovery property, by name.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.discovery_properties
            .as_ref()?
            .properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }
}

/// `<Signature SMSID="…"><SignatureValue>HEX</SignatureValue></Signature>`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct RegistrationSignature {
    #[serde(rename = "@SMSID", default)]
    pub smsid: Option<String>,
    #[serde(rename = "SignatureValue")]
    pub value: String,
}

/// The registration request body (docs/protocol.md §4).
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename = "ClientRegistrationRequest")]
pub struct ClientRegistrationRequest {
    #[serde(rename = "Data")]
    pub data: RegistrationData,
    #[serde(rename = "Signature")]
    pub signature: RegistrationSignature,
}

impl ClientRegistrationRequest {
    /// Parses a registration body after [`check_plain_markup`] (the root element name is checked too).
    pub fn parse(xml: &str) -> Result<ClientRegistrationRequest, XmlError> {
        let xml = strip_xml_declaration(xml);
        check_plain_markup(xml)?;
        if !xml.trim_start().starts_with("<ClientRegistrationRequest") {
            return Err(XmlError::Malformed {
                what: "registration",
                detail: "root element is not ClientRegistrationRequest".into(),
            });
        }
        parse_fast(xml, "registration")
    }
}

/// The `<Msg>` header of a reply to `request` carrying a body of `body_len` bytes.
/// Reply shape [profile]: addressed back along the client's `ReplyTo` (`direct:{host}:{endpoint}`),
/// `CorrelationID` = the request's `ID`, our `ReplyTo` names the endpoint that answers.
pub fn reply_header_xml(
    request: &MsgHeader,
    mp_host: &str,
    body_len: usize,
    compressed: bool,
) -> String {
    let reply_to = request
        .reply_to
        .clone()
        .unwrap_or_else(|| "direct:unknown:SccmMessaging".into());
    let mut fields = reply_to.splitn(3, ':');
    let (_scheme, host, endpoint) = (fields.next(), fields.next(), fields.next());
    let host = host
        .map(str::to_string)
        .or_else(|| request.source_host.clone())
        .unwrap_or_default();
    let endpoint = endpoint.unwrap_or("SccmMessaging");
    let hooks = if compressed {
        "<Hooks><Hook Name=\"zlib-compress\" /></Hooks>"
    } else {
        ""
    };
    format!(
        "<Msg SchemaVersion=\"1.1\"><ID>{id}</ID><SourceHost>{mp}</SourceHost>\
         <TargetAddress>{ta}</TargetAddress><ReplyTo>direct:{mp}:{from}</ReplyTo>\
         <Priority>0</Priority><Timeout>600</Timeout><TargetHost>{host}</TargetHost>\
         <TargetEndpoint>{ep}</TargetEndpoint><ReplyMode>Sync</ReplyMode><Protocol>http</Protocol>\
         <SentTime>{now}</SentTime><Body Type=\"ByteRange\" Offset=\"0\" Length=\"{len}\" />{hooks}\
         <Payload Type=\"inline\" /><CorrelationID>{corr}</CorrelationID></Msg>",
        id = new_message_id(),
        mp = xml_escape(mp_host),
        ta = xml_escape(&reply_to),
        host = xml_escape(&host),
        ep = xml_escape(endpoint),
        now = utc_timestamp(),
        len = body_len,
        corr = xml_escape(request.id.trim()),
        from = xml_escape(request.target_endpoint.trim()),
    )
}

/// Registration status codes (docs/protocol.md §4): 0 and 1 mean the same on every site; 2–4 as current sites
/// number them (Registered, Pending, Reset, Error, CertificateReset). ConfigMgr 2007's 3
/// (rejected) is the current Error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationStatus {
    Registered = 0,
    Pending = 1,
    /// Register afresh.
    Reset = 2,
    /// Blocked, or the message was incorrect.
    Rejected = 3,
    /// Make a new key and certificate, then register.
    CertificateReset = 4,
}

/// `<ClientRegistrationResponse …/>`. The SMSID is only sent with status 0 or 1; pending adds
/// `ApprovalStatus="-1"`.
pub fn registration_response_xml(
    response_type: &str,
    status: RegistrationStatus,
    smsid: Option<&str>,
) -> String {
    let mut s = format!(
        "<ClientRegistrationResponse ResponseType=\"{}\" TimeStamp=\"{}\" Status=\"{}\"",
        xml_escape(response_type),
        utc_timestamp(),
        status as u8
    );
    if matches!(
        status,
        RegistrationStatus::Registered | RegistrationStatus::Pending
    ) {
        if let Some(id) = smsid {
            s.push_str(&format!(" SMSID=\"{}\"", xml_escape(id)));
        }
    }
    if status == RegistrationStatus::Pending {
        s.push_str(" ApprovalStatus=\"-1\"");
    }
    s.push_str("/>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"<Msg ReplyCompression="zlib" SchemaVersion="1.1"><Body Type="ByteRange" Length="1234" Offset="0" /><CorrelationID>{00000000-0000-0000-0000-000000000000}</CorrelationID><Hooks><Hook3 Name="zlib-compress" /></Hooks><ID>{5DD100CD-DF1D-45F5-BA17-A327F43465F8}</ID><Payload Type="inline" /><Priority>0</Priority><Protocol>http</Protocol><ReplyMode>Sync</ReplyMode><ReplyTo>direct:DEV1:SccmMessaging</ReplyTo><SentTime>2026-11-23T10:00:00Z</SentTime><SourceHost>DEV1</SourceHost><TargetAddress>mp:MP_ClientRegistration</TargetAddress><TargetEndpoint>MP_ClientRegistration</TargetEndpoint><TargetHost>mp1</TargetHost><Timeout>60000</Timeout></Msg>"#;

    const REG: &str = "<ClientRegistrationRequest><Data HashAlgorithm=\"1.2.840.10045.4.3.2\" SMSID=\"\" RequestType=\"Registration\" TimeStamp=\"2026-11-23T10:00:00Z\">\r\n<AgentInformation AgentIdentity=\"mpagent\" AgentVersion=\"0.1.0\" AgentType=\"0\" /><Certificates><Encryption Encoding=\"HexBinary\" KeyType=\"1\">AB</Encryption><Signing Encoding=\"HexBinary\" KeyType=\"1\">CD</Signing></Certificates><DiscoveryProperties><Property Name=\"Netbios Name\" Value=\"DEV1\" /><Property Name=\"FQ Name\" Value=\"dev1.example.com\" /></DiscoveryProperties></Data><Signature><SignatureValue>0011</SignatureValue></Signature></ClientRegistrationRequest>";

    #[test]
    fn header_parses() {
        let h = MsgHeader::parse(HEADER).unwrap();
        assert_eq!(h.target_endpoint, "MP_ClientRegistration");
        assert_eq!(
            h.body_range().unwrap(),
            ByteRange {
                offset: 0,
                length: 1234
            }
        );
        assert!(h.is_compressed());
        assert!(h.wants_zlib_reply());
        assert_eq!(h.id, "{5DD100CD-DF1D-45F5-BA17-A327F43465F8}");
        assert_eq!(h.reply_to.as_deref(), Some("direct:DEV1:SccmMessaging"));
        assert!(h.source_id.is_none());
    }

    #[test]
    fn header_with_clientauth_hook_and_no_compression() {
        let xml = HEADER.replace(
            "<Hook3 Name=\"zlib-compress\" />",
            "<Hook2 Name=\"clientauth\"><Property Name=\"AuthSenderMachine\">DEV1</Property><Property Name=\"HashAlgorithm\">1.2.840.10045.4.3.2</Property></Hook2>",
        );
        let h = MsgHeader::parse(&xml).unwrap();
        assert!(!h.is_compressed());
        let ca = h.hook("clientauth").unwrap();
        assert_eq!(ca.properties.len(), 2);
        assert_eq!(ca.properties[1].value, "1.2.840.10045.4.3.2");
    }

    #[test]
    fn bad_headers_are_refused() {
        for (from, to) in [
            ("Length=\"1234\"", "Length=\"12x4\""),
            (
                "<ID>{5DD100CD-DF1D-45F5-BA17-A327F43465F8}</ID>",
                "<ID>5DD100CD</ID>",
            ),
            ("<ID>{5DD100CD-DF1D-45F5-BA17-A327F43465F8}</ID>", ""),
            ("<TargetEndpoint>MP_ClientRegistration</TargetEndpoint>", ""),
            ("</Msg>", ""),
            ("Type=\"ByteRange\"", "Type=\"Inline\""),
        ] {
            let xml = HEADER.replace(from, to);
            assert!(MsgHeader::parse(&xml).is_err(), "{from} -> {to}");
        }
    }

    #[test]
    fn doctype_is_refused_before_parsing() {
        let evil = format!(
            "<!DOCTYPE Msg [<!ENTITY a \"aaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>{}",
            HEADER.replace("DEV1", "&b;")
        );
        assert_eq!(MsgHeader::parse(&evil), Err(XmlError::Doctype));
        assert_eq!(check_no_dtd("<!doctype x><x/>"), Err(XmlError::Doctype));
        let reg = format!("<!DOCTYPE x>{REG}");
        assert_eq!(
            ClientRegistrationRequest::parse(&reg),
            Err(XmlError::Doctype)
        );
    }

    #[test]
    fn registration_parses() {
        let r = ClientRegistrationRequest::parse(REG).unwrap();
        assert_eq!(
            r.data.hash_algorithm.as_deref(),
            Some("1.2.840.10045.4.3.2")
        );
        assert_eq!(r.data.request_type, "Registration");
        assert_eq!(r.data.agent_information.agent_type, "0");
        assert_eq!(
            r.data
                .certificates
                .as_ref()
                .unwrap()
                .signing
                .as_ref()
                .unwrap()
                .hex,
            "CD"
        );
        assert_eq!(r.data.property("Netbios Name"), Some("DEV1"));
        assert_eq!(r.data.property("FQ Name"), Some("dev1.example.com"));
        assert_eq!(r.data.smsid.as_deref(), Some(""));
        assert_eq!(r.signature.value, "0011");
        assert!(r.signature.smsid.is_none());
    }

    #[test]
    fn leading_xml_declaration_is_allowed() {
        let r = format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>{REG}");
        assert_eq!(
            ClientRegistrationRequest::parse(&r)
                .unwrap()
                .data
                .request_type,
            "Registration"
        );
    }

    #[test]
    fn malformed_registrations_are_refused() {
        for bad in [
            REG.replace("</Data>", ""),
            REG.replace(
                "<Signature><SignatureValue>0011</SignatureValue></Signature>",
                "",
            ),
            REG.replace("ClientRegistrationRequest", "Other"),
            REG.replace("<AgentInformation", "<!-- x --><AgentInformation"),
            REG.replace("<AgentInformation", "<?pi x?><AgentInformation"),
            format!("<?xml version=\"1.0\"?><?xml-stylesheet x?>{REG}"),
            REG[..REG.len() - 10].to_string(),
        ] {
            assert!(ClientRegistrationRequest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reply_xml() {
        let h = MsgHeader::parse(HEADER).unwrap();
        let x = reply_header_xml(&h, "mp1.example.com", 42, false);
        assert!(x.contains("<CorrelationID>{5DD100CD-DF1D-45F5-BA17-A327F43465F8}</CorrelationID>"));
        assert!(x.contains("<TargetEndpoint>SccmMessaging</TargetEndpoint>"));
        assert!(x.contains("<TargetHost>DEV1</TargetHost>"));
        assert!(x.contains("Length=\"42\""));
        // Our own reply header parses back.
        let back = MsgHeader::parse(&x).unwrap();
        assert!(!back.is_compressed());
        assert!(MsgHeader::parse(&reply_header_xml(&h, "mp", 2, true))
            .unwrap()
            .is_compressed());

        let ok = registration_response_xml(
            "Registration",
            RegistrationStatus::Registered,
            Some("GUID:X"),
        );
        assert!(ok.contains("Status=\"0\" SMSID=\"GUID:X\"/>"));
        let p =
            registration_response_xml("Registration", RegistrationStatus::Pending, Some("GUID:X"));
        assert!(p.contains("Status=\"1\" SMSID=\"GUID:X\" ApprovalStatus=\"-1\"/>"));
        let r =
            registration_response_xml("Registration", RegistrationStatus::Rejected, Some("GUID:X"));
        assert!(r.contains("Status=\"3\"/>") && !r.contains("SMSID"));
    }
}
