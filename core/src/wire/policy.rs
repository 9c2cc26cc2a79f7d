//! Policy (docs/protocol.md §5): the `RequestAssignments` body sent Sync to `MP_PolicyManager`, the
//! `ReplyAssignments` parser, the policy body location, and the `ClientToken` of body `GET`s.
//!
//! **Parsing without allocation.** [`ReplyAssignments::parse`] checks the root element;
//! [`ReplyAssignments::assignments`] iterates the `<PolicyAssignment>`s lazily over the caller's
//! decoded XML, yielding [`PolicyAssignment`]s whose fields borrow from it ([`XmlText`]: still
//! escaped, unescaped on demand). [`ReplyAssignments::for_each`] validates the whole document
//! first and only then calls back, so a reply that is malformed at its end changes nothing.
//!
//! Leniency (docs/protocol.md §4 "clients ignore what they do not know"): unknown attributes and
//! elements are skipped (an assignment's `<Condition>`, the reply's `<ServerCookie>`, …); the XML
//! must be well formed to its end and entity-free (see [`super::xml_reader`]). Each assignment
//! needs a `<Policy>` child with `PolicyID` and `PolicyVersion` and a first child element holding
//! the body location (text or CDATA); `PolicyFlags`, when present, must be a decimal `u32`.

use crate::config::SiteCode;
use crate::guid::Smsid;
use crate::sign::{SignError, SignatureBytes, Signer};
use crate::sink::{Emit, Overflow, Sink};
use crate::time::DateTime;
use crate::wire::clientauth::sign_utf16z;
use crate::wire::reply::{header_xml, parse_msg_header, payload_xml, split_multipart, ReplyError};
use crate::wire::xml::{ascii_str, markup, Escaping, XmlWriter};
use crate::wire::xml_reader::{Attrs, Event, Reader, XmlError, XmlText};

/// The `RequestAssignments` body (docs/protocol.md §5, exact shape):
/// `<RequestAssignments SchemaVersion="1.00" ACK="false" RequestType="Always"><Identification><Machine>`
/// `<ClientID>GUID:…</ClientID><FQDN>…</FQDN><NetBIOSName>…</NetBIOSName><SID/></Machine><User/>`
/// `</Identification><PolicySource>SMS:{site code}</PolicySource><Resource ResourceType="Machine"/>`
/// `<ServerCookie/></RequestAssignments>`, or `<ServerCookie>{the last reply's}</ServerCookie>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestAssignments<'a> {
    /// `ClientID`: the client whose machine policy is asked for.
    pub smsid: Smsid,
    /// `FQDN`.
    pub fqdn: &'a str,
    /// `NetBIOSName`.
    pub netbios_name: &'a str,
    /// `PolicySource` is `SMS:{site code}`.
    pub site_code: SiteCode,
    /// The `ServerCookie` of the last reply, unescaped; empty the first time (docs/protocol.md §5).
    pub server_cookie: &'a str,
}

/// Longest `ServerCookie` kept to echo. The value is opaque and its real length is not on record
/// (docs/protocol.md §5); a longer one is not echoed, and the next request sends it empty, which
/// is the form every client's first request has.
pub const MAX_SERVER_COOKIE: usize = 64;

/// The `ServerCookie` a reply carried, kept for the next request.
pub type ServerCookie = heapless::String<MAX_SERVER_COOKIE>;

impl Emit for RequestAssignments<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| {
            let id = self.smsid.to_text();
            // One writer call.
            w.parts(&[
                markup!("<RequestAssignments SchemaVersion=\"1.00\" ACK=\"false\" RequestType=\"Always\"><Identification><Machine><ClientID>"),
                (ascii_str(&id)?, Escaping::Raw),
                markup!("</ClientID><FQDN>"),
                (self.fqdn, Escaping::Text),
                markup!("</FQDN><NetBIOSName>"),
                (self.netbios_name, Escaping::Text),
                markup!("</NetBIOSName><SID/></Machine><User/></Identification><PolicySource>SMS:"),
                (self.site_code.as_str(), Escaping::Text),
                markup!("</PolicySource><Resource ResourceType=\"Machine\"/>"),
            ])?;
            if self.server_cookie.is_empty() {
                w.parts(&[markup!("<ServerCookie/></RequestAssignments>")])
            } else {
                w.parts(&[
                    markup!("<ServerCookie>"),
                    (self.server_cookie, Escaping::Text),
                    markup!("</ServerCookie></RequestAssignments>"),
                ])
            }
        })
    }
}

/// `PolicyFlags` (docs/protocol.md §5, confirmed bit values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PolicyFlags(pub u32);

impl PolicyFlags {
    /// 1: a task sequence policy.
    pub const TASK_SEQUENCE: Self = Self(1);
    /// 2: the body `GET` requires the client token.
    pub const REQUIRES_AUTH: Self = Self(2);
    /// 4: a secret policy (CMS EnvelopedData to the client's key on real sites).
    pub const SECRET: Self = Self(4);
    /// 8: intranet only.
    pub const INTRANET_ONLY: Self = Self(8);
    /// 16: persist the whole policy.
    pub const PERSIST_WHOLE_POLICY: Self = Self(16);
    /// 32: authorized dynamic download.
    pub const AUTHORIZED_DYNAMIC_DOWNLOAD: Self = Self(32);
    /// 64: the body is compressed.
    pub const COMPRESSED: Self = Self(64);

    /// The raw mask.
    pub fn bits(self) -> u32 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Why a policy reply could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PolicyError {
    /// The envelope, header or payload of the reply was unusable.
    Reply(ReplyError),
    /// The XML is not well formed, or uses a DOCTYPE or an unknown entity.
    Xml(XmlError),
    /// The root element is not `ReplyAssignments`.
    WrongRoot,
    /// A `<PolicyAssignment>` without a `<Policy>` element.
    MissingPolicy,
    /// A `<Policy>` without a non-empty `PolicyID`.
    MissingPolicyId,
    /// A `<Policy>` without a non-empty `PolicyVersion`.
    MissingPolicyVersion,
    /// `PolicyFlags` is not a decimal `u32`.
    BadPolicyFlags,
    /// A `<Policy>` without a first child element holding the body location, or an empty one.
    MissingLocation,
    /// A `PolicyHash` naming SHA-256 whose value is not 64 hex digits.
    BadPolicyHash,
}

impl From<XmlError> for PolicyError {
    fn from(e: XmlError) -> Self {
        PolicyError::Xml(e)
    }
}

impl From<ReplyError> for PolicyError {
    fn from(e: ReplyError) -> Self {
        PolicyError::Reply(e)
    }
}

/// One `<PolicyAssignment>`: its `<Policy>` attributes and body location, borrowed from the XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PolicyAssignment<'a> {
    /// `PolicyAssignment/@PolicyAssignmentID`, when present.
    pub assignment_id: Option<XmlText<'a>>,
    /// `Policy/@PolicyID`.
    pub policy_id: XmlText<'a>,
    /// `Policy/@PolicyVersion`.
    pub policy_version: XmlText<'a>,
    /// `Policy/@PolicyType`.
    pub policy_type: Option<XmlText<'a>>,
    /// `Policy/@PolicyCategory`.
    pub policy_category: Option<XmlText<'a>>,
    /// `Policy/@PolicyFlags` (empty when absent).
    pub flags: PolicyFlags,
    /// The body location: the text of `<Policy>`'s first child element, e.g.
    /// `http://<mp>/SMS_MP/.sms_pol?{id}.{version}` (see [`policy_location_path`]).
    pub location: XmlText<'a>,
    /// `PolicyHash` of the location element (or of `<Policy>`), e.g. `SHA256:{hex}`: what the
    /// body must hash to (docs/protocol.md §5).
    pub policy_hash: Option<XmlText<'a>>,
}

/// The prefix of a SHA-256 `PolicyHash` value (case-insensitive).
const SHA256_PREFIX: &str = "SHA256:";

impl PolicyAssignment<'_> {
    /// The SHA-256 the body must have: `Some` for a `PolicyHash` of `SHA256:{64 hex digits}`,
    /// `None` when the assignment names no hash or one of another algorithm (real clients check
    /// SHA-256 only), [`PolicyError::BadPolicyHash`] for a malformed SHA-256 value.
    pub fn sha256(&self) -> Result<Option<[u8; 32]>, PolicyError> {
        let Some(text) = self.policy_hash else {
            return Ok(None);
        };
        let mut buf = [0u8; 96];
        let value = text
            .unescape_into(&mut buf)
            .map_err(|_| PolicyError::BadPolicyHash)?
            .trim();
        let Some(prefix) = value.get(..SHA256_PREFIX.len()) else {
            return Ok(None);
        };
        if !prefix.eq_ignore_ascii_case(SHA256_PREFIX) {
            return Ok(None);
        }
        let hex = value.get(SHA256_PREFIX.len()..).unwrap_or("").as_bytes();
        if hex.len() != 64 {
            return Err(PolicyError::BadPolicyHash);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            match (
                pair.first().copied().and_then(digit),
                pair.get(1).copied().and_then(digit),
            ) {
                (Some(h), Some(l)) => *byte = ((h << 4) | l) as u8,
                _ => return Err(PolicyError::BadPolicyHash),
            }
        }
        Ok(Some(out))
    }
}

fn parse_u32(t: XmlText<'_>) -> Option<u32> {
    let mut buf = [0u8; 16];
    let s = t
        .unescape_into(&mut buf)
        .ok()?
        .trim_matches([' ', '\t', '\n']);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn non_empty(t: Option<XmlText<'_>>) -> Option<XmlText<'_>> {
    t.filter(|t| !t.is_whitespace())
}

/// A parsed `ReplyAssignments` document whose assignments are read lazily.
#[derive(Debug, Clone)]
pub struct ReplyAssignments<'a> {
    /// Positioned just inside the root element (or at the end of an empty root).
    reader: Reader<'a>,
    attrs: Attrs<'a>,
    empty: bool,
}

impl<'a> ReplyAssignments<'a> {
    /// Check the root element of `xml` (the decoded reply body).
    pub fn parse(xml: &'a str) -> Result<Self, PolicyError> {
        let mut reader = Reader::new(xml);
        let (attrs, empty) = match reader.next_event()? {
            Some(Event::StartTag {
                name: "ReplyAssignments",
                attrs,
            }) => (attrs, false),
            Some(Event::EmptyTag {
                name: "ReplyAssignments",
                attrs,
            }) => (attrs, true),
            _ => return Err(PolicyError::WrongRoot),
        };
        Ok(Self {
            reader,
            attrs,
            empty,
        })
    }

    /// The root element's attributes (e.g. `ReplyType`).
    pub fn attrs(&self) -> Attrs<'a> {
        self.attrs
    }

    /// The reply's `<ServerCookie>` text (still escaped), if it has a non-empty one of text
    /// only. The rest of the document is not checked here ([`ReplyAssignments::validate`] does).
    pub fn server_cookie(&self) -> Result<Option<XmlText<'a>>, PolicyError> {
        if self.empty {
            return Ok(None);
        }
        let mut r = self.reader.clone();
        loop {
            match r.next_event()? {
                Some(Event::StartTag {
                    name: "ServerCookie",
                    ..
                }) if r.depth() == 2 => {
                    // A cookie with markup inside is not one a client can echo: none.
                    return Ok(r.read_text().ok().filter(|t| !t.raw().is_empty()));
                }
                Some(Event::StartTag { .. }) => r.skip_element()?,
                Some(Event::EndTag { .. }) if r.depth() == 0 => return Ok(None),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// Keep the reply's `ServerCookie` in `cookie` for the next request: the reply's value, or
    /// empty when it has none or one longer than [`MAX_SERVER_COOKIE`].
    pub fn keep_server_cookie(&self, cookie: &mut ServerCookie) -> Result<(), PolicyError> {
        cookie.clear();
        let Some(text) = self.server_cookie()? else {
            return Ok(());
        };
        let mut buf = [0u8; MAX_SERVER_COOKIE];
        if let Ok(value) = text.unescape_into(&mut buf) {
            // Fits: the buffer is the string's capacity.
            let _ = cookie.push_str(value);
        }
        Ok(())
    }

    /// The assignments, in document order; an error ends the iteration. After the last
    /// assignment the rest of the document is checked for well-formedness.
    pub fn assignments(&self) -> Assignments<'a> {
        Assignments {
            reader: self.reader.clone(),
            done: false,
            empty_root: self.empty,
        }
    }

    /// Check the whole document; the number of assignments.
    pub fn validate(&self) -> Result<usize, PolicyError> {
        let mut n = 0usize;
        for a in self.assignments() {
            a?;
            n = n.saturating_add(1);
        }
        Ok(n)
    }

    /// Validate the whole document, then call `f` for every assignment (all or nothing).
    pub fn for_each(&self, f: &mut dyn FnMut(&PolicyAssignment<'a>)) -> Result<usize, PolicyError> {
        let n = self.validate()?;
        for a in self.assignments() {
            f(&a?);
        }
        Ok(n)
    }
}

/// Iterator over the `<PolicyAssignment>`s of a [`ReplyAssignments`].
#[derive(Debug, Clone)]
pub struct Assignments<'a> {
    reader: Reader<'a>,
    done: bool,
    empty_root: bool,
}

impl<'a> Assignments<'a> {
    fn step(&mut self) -> Result<Option<PolicyAssignment<'a>>, PolicyError> {
        if self.empty_root {
            self.reader.finish()?;
            return Ok(None);
        }
        loop {
            match self.reader.next_event()? {
                Some(Event::StartTag {
                    name: "PolicyAssignment",
                    attrs,
                }) if self.reader.depth() == 2 => {
                    return parse_assignment(&mut self.reader, attrs).map(Some);
                }
                Some(Event::EmptyTag {
                    name: "PolicyAssignment",
                    ..
                }) if self.reader.depth() == 1 => return Err(PolicyError::MissingPolicy),
                Some(Event::StartTag { .. }) => self.reader.skip_element()?,
                Some(Event::EndTag { .. }) if self.reader.depth() == 0 => {
                    self.reader.finish()?;
                    return Ok(None);
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }
}

impl<'a> Iterator for Assignments<'a> {
    type Item = Result<PolicyAssignment<'a>, PolicyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r.transpose()
    }
}

/// After `<PolicyAssignment …>` (depth 2): read to its end tag.
fn parse_assignment<'a>(
    r: &mut Reader<'a>,
    attrs: Attrs<'a>,
) -> Result<PolicyAssignment<'a>, PolicyError> {
    let assignment_id = attrs.get("PolicyAssignmentID");
    let mut found: Option<PolicyAssignment<'a>> = None;
    loop {
        match r.next_event()? {
            Some(Event::StartTag {
                name: "Policy",
                attrs,
            }) if r.depth() == 3 && found.is_none() => {
                found = Some(parse_policy(r, assignment_id, attrs)?);
            }
            Some(Event::EmptyTag { name: "Policy", .. }) if r.depth() == 2 && found.is_none() => {
                return Err(PolicyError::MissingLocation);
            }
            Some(Event::StartTag { .. }) => r.skip_element()?,
            Some(Event::EndTag { .. }) if r.depth() == 1 => break,
            Some(_) => {}
            None => return Err(PolicyError::MissingPolicy),
        }
    }
    found.ok_or(PolicyError::MissingPolicy)
}

/// After `<Policy …>` (depth 3): attributes, the first child's text, then skip to `</Policy>`.
fn parse_policy<'a>(
    r: &mut Reader<'a>,
    assignment_id: Option<XmlText<'a>>,
    attrs: Attrs<'a>,
) -> Result<PolicyAssignment<'a>, PolicyError> {
    let policy_id = non_empty(attrs.get("PolicyID")).ok_or(PolicyError::MissingPolicyId)?;
    let policy_version =
        non_empty(attrs.get("PolicyVersion")).ok_or(PolicyError::MissingPolicyVersion)?;
    let flags = match attrs.get("PolicyFlags") {
        Some(f) => PolicyFlags(parse_u32(f).ok_or(PolicyError::BadPolicyFlags)?),
        None => PolicyFlags::default(),
    };
    let mut policy_hash = attrs.get("PolicyHash");
    let location = loop {
        match r.next_event()? {
            Some(Event::StartTag { attrs: child, .. }) => {
                if let Some(h) = child.get("PolicyHash") {
                    policy_hash = Some(h);
                }
                break r.read_text()?;
            }
            Some(Event::Text(t)) if t.is_whitespace() => {}
            Some(Event::EmptyTag { .. } | Event::EndTag { .. }) | None => {
                return Err(PolicyError::MissingLocation)
            }
            // Text or CDATA directly inside <Policy> before any child element.
            Some(_) => return Err(PolicyError::MissingLocation),
        }
    };
    if location.is_whitespace() {
        return Err(PolicyError::MissingLocation);
    }
    // Skip the rest of <Policy>.
    while r.depth() >= 3 {
        if r.next_event()?.is_none() {
            return Err(PolicyError::MissingLocation);
        }
    }
    Ok(PolicyAssignment {
        assignment_id,
        policy_id,
        policy_version,
        policy_type: attrs.get("PolicyType"),
        policy_category: attrs.get("PolicyCategory"),
        flags,
        location,
        policy_hash,
    })
}

/// Scratch [`parse_policy_reply_in`] needs per byte of reply body (header, then body, as UTF-8):
/// at most 3/2 of the UTF-16 length.
pub fn policy_reply_scratch_len(http_body_len: usize) -> usize {
    http_body_len.saturating_mul(3) / 2
}

/// The whole pipeline for a policy reply in caller memory: split the envelope, read the header,
/// decode the body into `scratch`, check the root. Iterate the result's assignments.
pub fn parse_policy_reply_in<'s>(
    body: &[u8],
    boundary: &str,
    scratch: &'s mut [u8],
) -> Result<ReplyAssignments<'s>, PolicyError> {
    let env = split_multipart(body, boundary)?;
    let info = parse_msg_header(header_xml(env.header, scratch)?)?;
    ReplyAssignments::parse(payload_xml(env.payload, &info, scratch)?)
}

/// Why a policy body location cannot be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LocationError {
    /// Not `http://` or `https://`.
    NotHttp,
    /// The authority is neither the literal `<mp>` nor the MP's host: the agent does not follow
    /// policy elsewhere.
    ForeignHost,
    /// The path is empty, or holds spaces, control or non-ASCII characters.
    BadPath,
    /// The unescaped location does not fit the caller's buffer.
    TooLong,
}

/// The origin-form path of a body location (`http://<mp>/SMS_MP/.sms_pol?{id}.{version}` →
/// `/SMS_MP/.sms_pol?{id}.{version}`). The literal `<mp>` stands for the MP the agent talks to;
/// `mp_host` (with an optional port) is accepted too, case-insensitively. `location` is the
/// unescaped text, surrounding whitespace ignored.
pub fn policy_location_path<'l>(
    location: &'l str,
    mp_host: &str,
) -> Result<&'l str, LocationError> {
    let loc = location.trim_matches([' ', '\t', '\r', '\n']);
    let rest = strip_prefix_ignore_case(loc, "http://")
        .or_else(|| strip_prefix_ignore_case(loc, "https://"))
        .ok_or(LocationError::NotHttp)?;
    let slash = rest.find('/').ok_or(LocationError::BadPath)?;
    let (authority, path) = rest.split_at(slash);
    let host_only = match authority.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    if authority != "<mp>" && !host_only.eq_ignore_ascii_case(mp_host) {
        return Err(LocationError::ForeignHost);
    }
    if !path.bytes().all(|b| (0x21..=0x7E).contains(&b)) {
        return Err(LocationError::BadPath);
    }
    Ok(path)
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// Length of a [`ClientToken`]: `GUID:` + 36 + `;` + 20 + `;2`.
pub const CLIENT_TOKEN_LEN: usize = 64;

/// The `ClientToken` header of a policy body `GET` (docs/protocol.md §5, confirmed):
/// `GUID:{smsid};{YYYY-MM-DDThh:mm:ssZ};2`, and its signature for `ClientTokenSignature`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientToken {
    bytes: [u8; CLIENT_TOKEN_LEN],
}

impl core::fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ClientToken {
    /// The token of `smsid` at `time`.
    pub fn new(smsid: Smsid, time: &DateTime) -> Self {
        let mut bytes = [0u8; CLIENT_TOKEN_LEN];
        let parts: [&[u8]; 4] = [&smsid.to_text(), b";", &time.iso8601(), b";2"];
        let mut at = 0usize;
        for p in parts {
            let end = at.saturating_add(p.len());
            if let Some(dst) = bytes.get_mut(at..end) {
                dst.copy_from_slice(p);
            }
            at = end;
        }
        Self { bytes }
    }

    /// The header value.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes).unwrap_or("")
    }

    /// `ClientTokenSignature`: the signature over UTF-16LE(token) + `00 00` (hex it for the header).
    pub fn sign(&self, signer: &dyn Signer) -> Result<SignatureBytes, SignError> {
        sign_utf16z(signer, self.as_str())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::sign::P256Signer;
    use crate::sink::{emitted_len, SliceSink};
    use crate::wire::xml_reader::XmlErrorKind;
    use p256::ecdsa::signature::Verifier;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    const SMSID: &str = "GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42";

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn request_assignments_exact_shape() {
        let r = RequestAssignments {
            smsid: Smsid::parse(SMSID.as_bytes()).unwrap(),
            fqdn: "prn-1.corp.example",
            netbios_name: "PRN-1",
            site_code: SiteCode::new("PS1").unwrap(),
            server_cookie: "",
        };
        let want = "<RequestAssignments SchemaVersion=\"1.00\" ACK=\"false\" RequestType=\"Always\"><Identification><Machine><ClientID>GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42</ClientID><FQDN>prn-1.corp.example</FQDN><NetBIOSName>PRN-1</NetBIOSName><SID/></Machine><User/></Identification><PolicySource>SMS:PS1</PolicySource><Resource ResourceType=\"Machine\"/><ServerCookie/></RequestAssignments>";
        let mut v = vec![0u8; emitted_len(&r).unwrap()];
        let mut s = SliceSink::new(&mut v);
        r.emit(&mut s).unwrap();
        assert_eq!(v, utf16(want));
    }

    const REPLY: &str = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\
<ReplyAssignments SchemaVersion=\"1.00\" ReplyType=\"Full\"><Identification><Machine><ClientID>GUID:X</ClientID></Machine></Identification>\
<PolicySource>SMS:PS1</PolicySource><Resource ResourceType=\"Machine\"/><ServerCookie>abc</ServerCookie>\
<PolicyAssignment PolicyAssignmentID=\"{a1}\"><Condition><Expression>x</Expression></Condition>\
<Policy PolicyID=\"{c6fe32fb-7e9c-4776-abe3-2a6d107447f1}\" PolicyVersion=\"2.00\" PolicyType=\"Machine\" PolicyCategory=\"NAAConfig\" PolicyFlags=\"30\">\
<PolicyLocation PolicyHash=\"SHA256:00\"><![CDATA[http://<mp>/SMS_MP/.sms_pol?{c6fe32fb-7e9c-4776-abe3-2a6d107447f1}.2_00]]></PolicyLocation><Other/></Policy></PolicyAssignment>\
<PolicyAssignment><Policy PolicyID=\"P2\" PolicyVersion=\"1.00\">\n <PolicyLocation>http://&lt;mp&gt;/SMS_MP/.sms_pol?P2.1_00</PolicyLocation></Policy><Policy PolicyID=\"ignored\"/></PolicyAssignment>\
</ReplyAssignments>";

    #[test]
    fn policy_hash_is_read_from_the_location_or_the_policy_and_checked_for_shape() {
        let hex = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
        let one = |policy_attr: &str, loc_attr: &str| {
            std::format!(
                "<ReplyAssignments><PolicyAssignment><Policy PolicyID=\"P\" PolicyVersion=\"1\"{policy_attr}><PolicyLocation{loc_attr}>http://&lt;mp&gt;/SMS_MP/.sms_pol?P.1</PolicyLocation></Policy></PolicyAssignment></ReplyAssignments>"
            )
        };
        let hash = |xml: &str| {
            let r = ReplyAssignments::parse(xml).unwrap();
            let a = r.assignments().next().unwrap().unwrap();
            a.sha256()
        };
        let mut want = [0u8; 32];
        for (i, b) in want.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
        }
        let on_location = one("", &std::format!(" PolicyHash=\"SHA256:{hex}\""));
        assert_eq!(hash(&on_location), Ok(Some(want)));
        let on_policy = one(&std::format!(" PolicyHash=\"sha256:{hex}\""), "");
        assert_eq!(hash(&on_policy), Ok(Some(want)));
        assert_eq!(hash(&one("", "")), Ok(None));
        // Another algorithm is not ours to check.
        assert_eq!(hash(&one("", " PolicyHash=\"SHA1:0011\"")), Ok(None));
        for bad in [
            "SHA256:",
            "SHA256:0011",
            &std::format!("SHA256:{}zz", &hex[..62]),
        ] {
            let xml = one("", &std::format!(" PolicyHash=\"{bad}\""));
            assert_eq!(hash(&xml), Err(PolicyError::BadPolicyHash), "{bad}");
        }
    }

    #[test]
    fn server_cookie_of_a_reply() {
        let r = ReplyAssignments::parse(REPLY).unwrap();
        assert_eq!(r.server_cookie().unwrap().unwrap().raw(), "abc");
        let mut kept = ServerCookie::new();
        r.keep_server_cookie(&mut kept).unwrap();
        assert_eq!(kept.as_str(), "abc");
        // Absent, empty, self-closing, holding markup, or in an assignment: none.
        for xml in [
            "<ReplyAssignments/>",
            "<ReplyAssignments><ServerCookie></ServerCookie></ReplyAssignments>",
            "<ReplyAssignments><ServerCookie/></ReplyAssignments>",
            "<ReplyAssignments><ServerCookie><b>x</b></ServerCookie></ReplyAssignments>",
            "<ReplyAssignments><PolicyAssignment><ServerCookie>x</ServerCookie></PolicyAssignment></ReplyAssignments>",
        ] {
            let r = ReplyAssignments::parse(xml).unwrap();
            assert_eq!(r.server_cookie().unwrap(), None, "{xml}");
            r.keep_server_cookie(&mut kept).unwrap();
            assert_eq!(kept.as_str(), "", "{xml}");
        }
    }

    #[test]
    fn reply_assignments_are_iterated_with_borrowed_fields() {
        let r = ReplyAssignments::parse(REPLY).unwrap();
        assert!(r.attrs().get("ReplyType").unwrap().eq_str("Full"));
        let all: Vec<_> = r.assignments().map(|a| a.unwrap()).collect();
        assert_eq!(all.len(), 2);
        let a = &all[0];
        assert_eq!(a.assignment_id.unwrap().raw(), "{a1}");
        assert_eq!(a.policy_id.raw(), "{c6fe32fb-7e9c-4776-abe3-2a6d107447f1}");
        assert_eq!(a.policy_version.raw(), "2.00");
        assert!(a.policy_type.unwrap().eq_str("Machine"));
        assert!(a.policy_category.unwrap().eq_str("NAAConfig"));
        assert_eq!(a.flags.bits(), 30);
        assert!(a.flags.contains(PolicyFlags::REQUIRES_AUTH));
        assert!(a.flags.contains(PolicyFlags::SECRET));
        assert!(!a.flags.contains(PolicyFlags::TASK_SEQUENCE));
        assert!(a.location.is_cdata());
        let mut buf = [0u8; 256];
        let loc = a.location.unescape_into(&mut buf).unwrap();
        assert_eq!(
            policy_location_path(loc, "mp.corp").unwrap(),
            "/SMS_MP/.sms_pol?{c6fe32fb-7e9c-4776-abe3-2a6d107447f1}.2_00"
        );
        let b = &all[1];
        assert_eq!(b.assignment_id, None);
        assert_eq!(b.flags, PolicyFlags::default());
        assert_eq!(b.policy_type, None);
        let loc = b.location.unescape_into(&mut buf).unwrap();
        assert_eq!(loc, "http://<mp>/SMS_MP/.sms_pol?P2.1_00");
        let mut seen = Vec::new();
        assert_eq!(
            r.for_each(&mut |a| seen.push(String::from(a.policy_id.raw())))
                .unwrap(),
            2
        );
        assert_eq!(seen, ["{c6fe32fb-7e9c-4776-abe3-2a6d107447f1}", "P2"]);
        // Empty replies.
        assert_eq!(
            ReplyAssignments::parse("<ReplyAssignments/>")
                .unwrap()
                .validate(),
            Ok(0)
        );
        assert_eq!(
            ReplyAssignments::parse("<ReplyAssignments><ServerCookie/></ReplyAssignments>")
                .unwrap()
                .validate(),
            Ok(0)
        );
    }

    fn err(xml: &str) -> PolicyError {
        match ReplyAssignments::parse(xml) {
            Err(e) => e,
            Ok(r) => r.validate().unwrap_err(),
        }
    }

    fn assignment(policy: &str) -> String {
        std::format!(
            "<ReplyAssignments><PolicyAssignment>{policy}</PolicyAssignment></ReplyAssignments>"
        )
    }

    #[test]
    fn malformed_replies_are_refused() {
        let loc = "<L>http://&lt;mp&gt;/x</L>";
        assert_eq!(err("<ReplyAssignment/>"), PolicyError::WrongRoot);
        assert_eq!(err("<ClientRegistrationResponse/>"), PolicyError::WrongRoot);
        assert!(matches!(err(""), PolicyError::Xml(e) if e.kind == XmlErrorKind::NoRoot));
        assert_eq!(
            err("<ReplyAssignments><PolicyAssignment/></ReplyAssignments>"),
            PolicyError::MissingPolicy
        );
        assert_eq!(err(&assignment("<Condition/>")), PolicyError::MissingPolicy);
        assert_eq!(
            err(&assignment(&std::format!(
                "<Policy PolicyVersion=\"1\">{loc}</Policy>"
            ))),
            PolicyError::MissingPolicyId
        );
        assert_eq!(
            err(&assignment(&std::format!(
                "<Policy PolicyID=\" \" PolicyVersion=\"1\">{loc}</Policy>"
            ))),
            PolicyError::MissingPolicyId
        );
        assert_eq!(
            err(&assignment(&std::format!(
                "<Policy PolicyID=\"a\">{loc}</Policy>"
            ))),
            PolicyError::MissingPolicyVersion
        );
        for flags in ["x", "-1", "", "4294967296", "0x4", "1 2"] {
            assert_eq!(
                err(&assignment(&std::format!(
                    "<Policy PolicyID=\"a\" PolicyVersion=\"1\" PolicyFlags=\"{flags}\">{loc}</Policy>"
                ))),
                PolicyError::BadPolicyFlags,
                "{flags}"
            );
        }
        for body in [
            "<Policy PolicyID=\"a\" PolicyVersion=\"1\"/>",
            "<Policy PolicyID=\"a\" PolicyVersion=\"1\"></Policy>",
            "<Policy PolicyID=\"a\" PolicyVersion=\"1\"><L/></Policy>",
            "<Policy PolicyID=\"a\" PolicyVersion=\"1\"><L> </L></Policy>",
            "<Policy PolicyID=\"a\" PolicyVersion=\"1\">text<L>x</L></Policy>",
        ] {
            assert_eq!(
                err(&assignment(body)),
                PolicyError::MissingLocation,
                "{body}"
            );
        }
        // A location with markup inside is not text.
        assert!(matches!(
            err(&assignment("<Policy PolicyID=\"a\" PolicyVersion=\"1\"><L><b/></L></Policy>")),
            PolicyError::Xml(e) if e.kind == XmlErrorKind::UnexpectedElement
        ));
        // Entities, DOCTYPE, truncation, trailing garbage.
        assert!(matches!(
            err("<!DOCTYPE r [<!ENTITY e \"x\">]><ReplyAssignments/>"),
            PolicyError::Xml(e) if e.kind == XmlErrorKind::Doctype
        ));
        let full = assignment(&std::format!(
            "<Policy PolicyID=\"a\" PolicyVersion=\"1\">{loc}</Policy>"
        ));
        assert_eq!(ReplyAssignments::parse(&full).unwrap().validate(), Ok(1));
        for cut in 1..full.len() {
            let Some(part) = full.get(..cut) else {
                continue;
            };
            assert!(
                ReplyAssignments::parse(part)
                    .and_then(|r| r.validate())
                    .is_err(),
                "{part}"
            );
        }
        let trailing = std::format!("{full}<x/>");
        assert!(
            matches!(err(&trailing), PolicyError::Xml(e) if e.kind == XmlErrorKind::ContentOutsideRoot)
        );
        // for_each calls back nothing when the document fails late.
        let late = std::format!(
            "<ReplyAssignments><PolicyAssignment><Policy PolicyID=\"a\" PolicyVersion=\"1\">{loc}</Policy></PolicyAssignment><PolicyAssignment/></ReplyAssignments>"
        );
        let mut called = 0;
        assert_eq!(
            ReplyAssignments::parse(&late)
                .unwrap()
                .for_each(&mut |_| called += 1),
            Err(PolicyError::MissingPolicy)
        );
        assert_eq!(called, 0);
    }

    #[test]
    fn iteration_stops_after_an_error() {
        let r = ReplyAssignments::parse(
            "<ReplyAssignments><PolicyAssignment/><PolicyAssignment/></ReplyAssignments>",
        )
        .unwrap();
        let mut it = r.assignments();
        assert_eq!(it.next(), Some(Err(PolicyError::MissingPolicy)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut s = String::from("<ReplyAssignments><PolicyAssignment><Condition>");
        for _ in 0..40 {
            s += "<a>";
        }
        assert!(matches!(err(&s), PolicyError::Xml(e) if e.kind == XmlErrorKind::TooDeep));
    }

    #[test]
    fn locations() {
        fn p(l: &str) -> Result<&str, LocationError> {
            policy_location_path(l, "mp.corp.example")
        }
        assert_eq!(
            p("http://<mp>/SMS_MP/.sms_pol?A.1_00"),
            Ok("/SMS_MP/.sms_pol?A.1_00")
        );
        assert_eq!(p(" HTTPS://<mp>/a \n"), Ok("/a"));
        assert_eq!(p("http://MP.corp.example:8080/a"), Ok("/a"));
        assert_eq!(p("http://evil.example/a"), Err(LocationError::ForeignHost));
        assert_eq!(p("http://<mp>x/a"), Err(LocationError::ForeignHost));
        assert_eq!(p("ftp://<mp>/a"), Err(LocationError::NotHttp));
        assert_eq!(p("<mp>/a"), Err(LocationError::NotHttp));
        assert_eq!(p("http://<mp>"), Err(LocationError::BadPath));
        assert_eq!(p("http://<mp>/a b"), Err(LocationError::BadPath));
        assert_eq!(p("http://<mp>/a\r\nX: y"), Err(LocationError::BadPath));
        assert_eq!(p("http://<mp>/é"), Err(LocationError::BadPath));
    }

    #[test]
    fn client_token_and_its_signature() {
        let id = Smsid::parse(SMSID.as_bytes()).unwrap();
        let t = crate::time::UnixTime(1_795_428_000).to_datetime();
        let tok = ClientToken::new(id, &t);
        assert_eq!(
            tok.as_str(),
            "GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42;2026-11-23T10:00:00Z;2"
        );
        let signer = P256Signer::from_secret_bytes(&[9; 32]).unwrap();
        let sig = tok.sign(&signer).unwrap();
        let mut msg = utf16(tok.as_str());
        msg.extend_from_slice(&[0, 0]);
        let s = p256::ecdsa::Signature::from_slice(sig.as_bytes()).unwrap();
        signer.verifying_key().verify(&msg, &s).unwrap();
    }
}
