//! Policy (docs/protocol.md §5): `MP_PolicyManager` answers a signed `RequestAssignments` with the
//! `ReplyAssignments` an administrator created for that client (or for every client), and
//! `GET /SMS_MP/.sms_pol?{id}.{version}` serves a policy body to a client that proves itself
//! with `ClientToken` + `ClientTokenSignature`.
//!
//! Formats and rules [profile unless marked], all here:
//!
//! - **Request** (spec shape): root `RequestAssignments`; `Identification/Machine/ClientID` must be
//!   the sender's `SourceID`; `PolicySource` must be `SMS:{our site code}`; `Resource@ResourceType`
//!   must be `Machine` (user policy is not emulated).
//! - **Reply**, see [`reply_assignments_xml`]:
//!   ```text
//!   <ReplyAssignments SchemaVersion="1.00" ReplyType="Full">
//!     <Identification><Machine><ClientID>GUID:…</ClientID></Machine></Identification>
//!     <PolicySource>SMS:P01</PolicySource><Resource ResourceType="Machine"/>
//!     <ServerCookie>{time of the reply}</ServerCookie>
//!     <PolicyAssignment PolicyAssignmentID="{GUID}">
//!       <Policy PolicyID="…" PolicyVersion="…" PolicyType="Machine" PolicyCategory="…" PolicyFlags="0">
//!         <PolicyLocation PolicyHash="SHA256:{hex of the served body bytes}"><![CDATA[http://<mp>/SMS_MP/.sms_pol?{id}.{version}]]></PolicyLocation>
//!       </Policy>
//!     </PolicyAssignment>…
//!   </ReplyAssignments>
//!   ```
//!   The location keeps the literal `<mp>` [confirmed] and is therefore a CDATA section, as real
//!   MPs send it (the public tools match `<![CDATA[http://<mp>/…`). All five `Policy` attributes are
//!   always present. No assignment → a `ReplyAssignments` without `PolicyAssignment`s.
//! - **Body**: the administrator's XML text, served as **UTF-16LE with a BOM** (`FF FE`),
//!   `Content-Type: text/xml; charset=UTF-16` — the encoding of every other body in this protocol.
//!   No trailing NUL. `PolicyHash` is the SHA-256 of exactly these bytes.
//! - **Token** [confirmed shape]: `ClientToken: GUID:{smsid};{YYYY-MM-DDThh:mm:ssZ};2` (exactly
//!   three fields, the last `2`), time within [`Limits::client_token_window`](super::Limits) of
//!   our clock; `ClientTokenSignature`: hex of the signature over UTF-16LE(token as received) +
//!   `00 00`, by the client's registered key — or, for a client an ISV proxy registered, by the
//!   proxy's key — with the `HashAlgorithm` that signer registered with. The client must be
//!   approved and the policy assigned to it (or to every client). Refusals are 403 (404 for a
//!   policy that does not exist), logged with their reason; each download is recorded
//!   ([`SiteDb::policy_fetches`]).
//! - The query may be percent-encoded (`%7B…%7D`); it is decoded once. The ID is everything before
//!   the first `.`, the version the rest (IDs cannot contain `.`).

use super::clientauth::{self, Sender};
use super::db::{PolicyRow, SiteDb};
use super::envelope::Body;
use super::messages::{check_no_dtd, check_root, parse, strip_xml_declaration};
use super::rejection::Rejection;
use super::step::Step;
use super::util::{normalize_smsid, parse_utc_timestamp, unix_now, utc_timestamp, xml_escape};
use super::{verify, MpConfig};
use serde::Deserialize;
use sha2::Digest;

/// Path of policy bodies (compared case-insensitively).
pub const BODY_PATH: &str = "/SMS_MP/.sms_pol";
/// The placeholder the client replaces with the MP's host [confirmed].
pub const MP_PLACEHOLDER: &str = "<mp>";
/// Content type of a served policy body.
pub const BODY_CONTENT_TYPE: &str = "text/xml; charset=UTF-16";
/// The last field of a `ClientToken`.
pub const TOKEN_SUFFIX: &str = "2";

#[derive(Debug, Deserialize)]
struct Machine {
    #[serde(rename = "ClientID")]
    client_id: String,
}

#[derive(Debug, Deserialize)]
struct Identification {
    #[serde(rename = "Machine")]
    machine: Machine,
}

#[derive(Debug, Deserialize)]
struct Resource {
    #[serde(rename = "@ResourceType", default)]
    resource_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RequestAssignments {
    #[serde(rename = "Identification")]
    identification: Identification,
    #[serde(rename = "PolicySource")]
    policy_source: String,
    #[serde(rename = "Resource", default)]
    resource: Option<Resource>,
}

/// The served bytes of a body: UTF-16LE with BOM.
pub fn body_bytes(xml: &str) -> Vec<u8> {
    let mut v = vec![0xFF, 0xFE];
    v.extend(xml.encode_utf16().flat_map(u16::to_le_bytes));
    v
}

/// The hex SHA-256 of a policy's served body (its `PolicyHash`).
pub fn body_hash(p: &PolicyRow) -> String {
    hex::encode_upper(sha2::Sha256::digest(body_bytes(&p.body)))
}

/// The body location's query: `{id}.{version}`, or with `by_hash` the form modern sites use,
/// `{id}.SHA256:{hex}` (docs/protocol.md §5).
pub fn location_query(p: &PolicyRow, by_hash: bool) -> String {
    if by_hash {
        format!("{}.{HASH_PREFIX}{}", p.policy_id, body_hash(p))
    } else {
        p.location_query()
    }
}

/// What a body location addressed by hash has in place of the version.
const HASH_PREFIX: &str = "SHA256:";

/// The `ReplyAssignments` body for `smsid` with these assignments; `by_hash`: locations in the
/// `.SHA256:` form ([`location_query`]).
pub fn reply_assignments_xml(
    site_code: &str,
    smsid: &str,
    policies: &[PolicyRow],
    by_hash: bool,
) -> String {
    let mut s = format!(
        "<ReplyAssignments SchemaVersion=\"1.00\" ReplyType=\"Full\"><Identification><Machine>\
         <ClientID>{}</ClientID></Machine></Identification><PolicySource>SMS:{}</PolicySource>\
         <Resource ResourceType=\"Machine\"/><ServerCookie>{}</ServerCookie>",
        xml_escape(smsid),
        xml_escape(site_code),
        utc_timestamp()
    );
    for p in policies {
        let hash = body_hash(p);
        s.push_str(&format!(
            "<PolicyAssignment PolicyAssignmentID=\"{aid}\"><Policy PolicyID=\"{id}\" \
             PolicyVersion=\"{ver}\" PolicyType=\"{ty}\" PolicyCategory=\"{cat}\" PolicyFlags=\"{fl}\">\
             <PolicyLocation PolicyHash=\"SHA256:{hash}\"><![CDATA[http://{MP_PLACEHOLDER}{BODY_PATH}?{q}]]>\
             </PolicyLocation></Policy></PolicyAssignment>",
            aid = xml_escape(&p.assignment_id),
            id = xml_escape(&p.policy_id),
            ver = xml_escape(&p.version),
            ty = xml_escape(&p.policy_type),
            cat = xml_escape(&p.category),
            fl = p.flags,
            q = location_query(p, by_hash),
        ));
    }
    s.push_str("</ReplyAssignments>");
    s
}

/// `MP_PolicyManager`: checks a `RequestAssignments` and answers with the sender's assignments.
/// Strict ([`MpConfig::strict`]), as real MPs: locations addressed by hash, and `None` (HTTP 200
/// with an empty body) when there is nothing for the client.
pub fn handle_request(
    config: &MpConfig,
    db: &SiteDb,
    sender: &Sender,
    body: &Body,
) -> Result<Step<Option<String>>, Rejection> {
    let what = "policy request";
    let xml = body.text.as_str();
    check_no_dtd(xml)?;
    let xml = strip_xml_declaration(xml);
    check_root(xml, "RequestAssignments", what)?;
    let req: RequestAssignments = parse(xml, what)?;
    let client_id = req.identification.machine.client_id.trim();
    if normalize_smsid(client_id).as_deref() != Some(sender.smsid.as_str()) {
        return Err(Rejection::new(format!(
            "{what}: ClientID {client_id:?} is not the sender's SourceID {}",
            sender.smsid
        )));
    }
    let source = req.policy_source.trim();
    let ours = format!("SMS:{}", config.site_code);
    if !source.eq_ignore_ascii_case(&ours) {
        return Err(Rejection::new(format!(
            "{what}: PolicySource {source:?} is not this site ({ours})"
        )));
    }
    let rtype = req
        .resource
        .as_ref()
        .and_then(|r| r.resource_type.as_deref())
        .unwrap_or("");
    if rtype != "Machine" {
        return Err(Rejection::new(format!(
            "{what}: Resource ResourceType {rtype:?} is not supported (only Machine)"
        )));
    }
    let internal = |e: anyhow::Error| Rejection::internal(format!("site database: {e:#}"));
    let policies = db.policies_for(&sender.smsid).map_err(internal)?;
    let xml = (!(config.strict && policies.is_empty()))
        .then(|| reply_assignments_xml(&config.site_code, &sender.smsid, &policies, config.strict));
    let (smsid, count) = (sender.smsid.clone(), policies.len());
    Ok(Step::write(move |db| {
        db.event(
            Some(&smsid),
            "policy-request",
            &format!("{count} assignment(s)"),
        )
        .map_err(internal)?;
        Ok(xml)
    }))
}

/// Why a policy body was not served: HTTP status and the logged reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRefusal {
    pub status: u16,
    pub reason: String,
}

impl BodyRefusal {
    fn forbidden(reason: impl Into<String>) -> BodyRefusal {
        BodyRefusal {
            status: 403,
            reason: reason.into(),
        }
    }
}

impl From<Rejection> for BodyRefusal {
    fn from(r: Rejection) -> BodyRefusal {
        BodyRefusal {
            status: if r.internal { 500 } else { 403 },
            reason: r.reason,
        }
    }
}

/// Decodes `%XX` escapes once; `None` for a malformed escape or non-UTF-8 result.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a `ClientToken` and its signature; returns the client's SMSID.
pub fn verify_client_token(
    config: &MpConfig,
    db: &SiteDb,
    token: Option<&str>,
    signature: Option<&str>,
) -> Result<String, BodyRefusal> {
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| BodyRefusal::forbidden("policy body request without ClientToken"))?;
    let sig_hex = signature
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            BodyRefusal::forbidden("policy body request without ClientTokenSignature")
        })?;
    let fields: Vec<&str> = token.split(';').collect();
    let [id, time, suffix] = fields[..] else {
        return Err(BodyRefusal::forbidden(format!(
            "ClientToken {token:?} is not GUID:{{smsid}};{{time}};{TOKEN_SUFFIX}"
        )));
    };
    let smsid = normalize_smsid(id).ok_or_else(|| {
        BodyRefusal::forbidden(format!("ClientToken SMSID {id:?} is not a GUID:… SMSID"))
    })?;
    if suffix != TOKEN_SUFFIX {
        return Err(BodyRefusal::forbidden(format!(
            "ClientToken ends with {suffix:?}, expected {TOKEN_SUFFIX}"
        )));
    }
    let t = parse_utc_timestamp(time).ok_or_else(|| {
        BodyRefusal::forbidden(format!(
            "ClientToken time {time:?} is not YYYY-MM-DDThh:mm:ssZ"
        ))
    })?;
    let skew = t.abs_diff(unix_now());
    let window = config.limits.client_token_window.as_secs();
    if skew > window {
        return Err(BodyRefusal::forbidden(format!(
            "ClientToken time {time} is {skew} s from the MP clock (window ±{window} s): expired"
        )));
    }
    let sig = verify::decode_hex(sig_hex, "ClientTokenSignature").map_err(Rejection::from)?;
    let internal = |e: anyhow::Error| BodyRefusal {
        status: 500,
        reason: format!("site database: {e:#}"),
    };
    let client = db
        .client(&smsid)
        .map_err(internal)?
        .ok_or_else(|| BodyRefusal::forbidden(format!("ClientToken for unknown client {smsid}")))?;
    let claimed_proxy = client.registered_by_proxy.clone();
    let signer = clientauth::signer_for(db, &client, claimed_proxy.as_deref())?;
    let alg =
        verify::SigAlg::from_oid(signer.hash_algorithm.as_deref()).map_err(Rejection::from)?;
    verify::verify(&signer.key, alg, &clientauth::utf16le_nul(token), &sig)
        .map_err(|e| BodyRefusal::forbidden(format!("ClientTokenSignature for {smsid}: {e}")))?;
    clientauth::require_approved(&client)?;
    Ok(client.smsid)
}

/// `GET /SMS_MP/.sms_pol?{query}`: the body bytes, after the token, approval and assignment checks.
pub fn serve_body(
    config: &MpConfig,
    db: &SiteDb,
    query: &str,
    token: Option<&str>,
    signature: Option<&str>,
) -> Result<Vec<u8>, BodyRefusal> {
    let smsid = verify_client_token(config, db, token, signature)?;
    let decoded = percent_decode(query)
        .ok_or_else(|| BodyRefusal::forbidden(format!("bad escape in query {query:?}")))?;
    let not_found = || BodyRefusal {
        status: 404,
        reason: format!("no policy {decoded:?}"),
    };
    let (id, version) = decoded.split_once('.').ok_or_else(not_found)?;
    let internal = |e: anyhow::Error| BodyRefusal {
        status: 500,
        reason: format!("site database: {e:#}"),
    };
    // `{id}.SHA256:{hex}` names the body by its hash: the policy of that ID whose body has it.
    let by_hash = version
        .get(..HASH_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(HASH_PREFIX))
        .map(|_| &version[HASH_PREFIX.len()..]);
    let matches = |p: &PolicyRow| {
        p.policy_id.eq_ignore_ascii_case(id)
            && match by_hash {
                Some(h) => body_hash(p).eq_ignore_ascii_case(h),
                None => p.version.eq_ignore_ascii_case(version),
            }
    };
    let exists = match by_hash {
        Some(_) => db.policies().map_err(internal)?.iter().any(matches),
        None => db.policy_exists(id, version).map_err(internal)?,
    };
    if !exists {
        return Err(not_found());
    }
    let assigned = db
        .policies_for(&smsid)
        .map_err(internal)?
        .into_iter()
        .find(matches)
        .ok_or_else(|| {
            BodyRefusal::forbidden(format!("policy {decoded} is not assigned to {smsid}"))
        })?;
    db.record_policy_fetch(&smsid, &assigned.policy_id, &assigned.version)
        .map_err(internal)?;
    let tampered = db
        .tampered_body(&assigned.policy_id, &assigned.version)
        .map_err(internal)?;
    tracing::info!(%smsid, policy = %assigned.location_query(), tampered = tampered.is_some(), "policy body served");
    Ok(body_bytes(tampered.as_deref().unwrap_or(&assigned.body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%7Ba%7D.1").as_deref(), Some("{a}.1"));
        assert_eq!(percent_decode("{a}.1").as_deref(), Some("{a}.1"));
        assert!(percent_decode("%7").is_none());
        assert!(percent_decode("%zz").is_none());
        assert!(percent_decode("%FF").is_none());
    }

    #[test]
    fn reply_shape() {
        let row = PolicyRow {
            assignment_id: "{A}".into(),
            policy_id: "{P}".into(),
            version: "1.00".into(),
            policy_type: "Machine".into(),
            category: "C&D".into(),
            flags: 6,
            target_smsid: None,
            body: "<Policy/>".into(),
            assigned_at: String::new(),
        };
        let x = reply_assignments_xml("P01", "GUID:X", std::slice::from_ref(&row), false);
        let by_hash = reply_assignments_xml("P01", "GUID:X", std::slice::from_ref(&row), true);
        assert!(
            by_hash.contains(&format!(".sms_pol?{{P}}.SHA256:{}]]>", body_hash(&row))),
            "{by_hash}"
        );
        assert!(
            x.starts_with("<ReplyAssignments SchemaVersion=\"1.00\""),
            "{x}"
        );
        assert!(x.contains("<PolicySource>SMS:P01</PolicySource>"));
        assert!(x.contains(
            "<PolicyAssignment PolicyAssignmentID=\"{A}\"><Policy PolicyID=\"{P}\" \
             PolicyVersion=\"1.00\" PolicyType=\"Machine\" PolicyCategory=\"C&amp;D\" PolicyFlags=\"6\">\
             <PolicyLocation PolicyHash=\"SHA256:"
        ));
        assert!(x.contains("<![CDATA[http://<mp>/SMS_MP/.sms_pol?{P}.1.00]]></PolicyLocation>"));
        assert_eq!(body_bytes("<a/>"), b"\xFF\xFE<\0a\0/\0>\0");
    }
}
