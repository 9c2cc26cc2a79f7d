//! Authentication of every message after registration (docs/protocol.md §5): the `SourceID`, the
//! `clientauth` hook and its signatures, the ISV proxy rules, the client's approval state, and the
//! `SentTime` window. Also the signer lookup that policy `ClientToken`s share.
//!
//! The rules, including the choices the spec leaves open, all live here:
//!
//! - `SourceID` must be `GUID:{guid}` of a registered client. Compared case-insensitively.
//! - The hook is the header hook named `clientauth` (element name free: `Hook2` in practice). Its
//!   properties must be unique by name. Required: `PublicKey`, `ClientIDSignature`,
//!   `PayloadSignature`; `HashAlgorithm` selects the scheme as in registration (absent → RSA
//!   SHA-1, the ConfigMgr 2007 default). `AuthSenderMachine`, `ClientCapabilities` are informative.
//! - **Signer**: without `ProxySMSID`, the certificate registered for `SourceID`; a client that an
//!   ISV proxy registered (AgentType 8) must always be spoken for by that proxy. With
//!   `ProxySMSID` [profile], the proxy's imported certificate, and only if that proxy registered
//!   the `SourceID` client, is not blocked and has registered itself (AgentType 4, approved).
//! - `PublicKey` is informative in the spec, but we require it to *be* the signer's certificate:
//!   its DER as hex (what our devices send), or a CryptoAPI RSA `PUBLICKEYBLOB` with the same
//!   modulus and exponent (what Windows clients and the public tools send).
//! - `ClientIDSignature` covers UTF-16LE(`GUID:{SMSID upper case}`) + `00 00` of the `SourceID`
//!   client (also when a proxy signs: the proxy vouches for that client ID).
//! - `PayloadSignature` covers the octet-stream part **exactly as received on the wire**: the
//!   UTF-16LE body + `00 00` + CRLF, or, with the `zlib-compress` hook, the *compressed* bytes (as
//!   the public tools sign it). The inflated bytes are not accepted in its place.
//! - Signatures are checked before the approval state, so an unauthenticated request only ever
//!   learns that authentication failed. Then: pending clients may send nothing (no DDR,
//!   inventory, status, state or policy request, docs/protocol.md §4), rejected clients neither.
//! - `SentTime` (`YYYY-MM-DDThh:mm:ssZ`) is required and must lie within
//!   [`Limits::sent_time_window`](super::Limits) of the MP's clock. The handler checks it after the
//!   duplicate check, so that a retry of an already stored message is answered 200 again.
//!   The header is not covered by any signature, so a client may restamp `SentTime` (and must keep
//!   the message `ID`) when it retries a queued message.

use super::db::{ClientRow, ClientStatus, SiteDb};
use super::messages::MsgHeader;
use super::registration::agent_type;
use super::rejection::Rejection;
use super::util::{normalize_smsid, parse_utc_timestamp};
use super::verify::{self, PublicKey, SigAlg};
use std::collections::BTreeMap;
use std::time::Duration;

/// Name of the hook that carries the client authentication.
pub const HOOK_NAME: &str = "clientauth";
/// [profile] Hook property naming the ISV proxy that signs for the `SourceID` client.
pub const PROXY_SMSID_PROPERTY: &str = "ProxySMSID";

/// An authenticated sender.
#[derive(Clone, Debug)]
pub struct Sender {
    /// The `SourceID` client, normalised (`GUID:` + upper-case GUID).
    pub smsid: String,
    /// Its row in the site database.
    pub client: ClientRow,
    /// The ISV proxy that signed for it, if any.
    pub via_proxy: Option<String>,
}

/// Whose key speaks for a client.
#[derive(Clone, Debug)]
pub struct Signer {
    /// The signer's certificate (the client's own, or its proxy's).
    pub cert_der: Vec<u8>,
    /// The signer's public key.
    pub key: PublicKey,
    /// `HashAlgorithm` the signer registered with (used for `ClientTokenSignature`).
    pub hash_algorithm: Option<String>,
    /// The proxy's SMSID when the signer is an ISV proxy.
    pub proxy: Option<String>,
}

fn internal(e: anyhow::Error) -> Rejection {
    Rejection::internal(format!("site database: {e:#}"))
}

/// The signer for `client`: the client itself, or, for a client an ISV proxy registered, that
/// proxy (which must still be imported, unblocked, and registered itself as AgentType 4).
/// `claimed_proxy` is the `ProxySMSID` the message names (`None`: none named).
pub fn signer_for(
    db: &SiteDb,
    client: &ClientRow,
    claimed_proxy: Option<&str>,
) -> Result<Signer, Rejection> {
    let registered_by = client
        .registered_by_proxy
        .as_deref()
        .map(|p| normalize_smsid(p).unwrap_or_else(|| p.to_string()));
    match (claimed_proxy, registered_by) {
        (None, None) => {
            let cert = verify::parse_cert(&client.cert_der)
                .map_err(|e| Rejection::internal(format!("stored certificate: {e}")))?;
            Ok(Signer {
                cert_der: client.cert_der.clone(),
                key: cert.key,
                hash_algorithm: client.hash_algorithm.clone(),
                proxy: None,
            })
        }
        (None, Some(p)) => Err(Rejection::new(format!(
            "{} was registered by ISV proxy {p}: its messages must be signed by that proxy and \
             name it in {PROXY_SMSID_PROPERTY}",
            client.smsid
        ))),
        (Some(claimed), registered_by) => {
            let claimed = normalize_smsid(claimed).ok_or_else(|| {
                Rejection::new(format!(
                    "{PROXY_SMSID_PROPERTY} {claimed:?} is not a GUID:… SMSID"
                ))
            })?;
            if registered_by.as_deref() != Some(claimed.as_str()) {
                return Err(Rejection::new(format!(
                    "proxy {claimed} did not register {} (registered by {}): it cannot speak for it",
                    client.smsid,
                    registered_by.as_deref().unwrap_or("itself")
                )));
            }
            let imported = db
                .imported_cert(&claimed)
                .map_err(internal)?
                .ok_or_else(|| {
                    Rejection::new(format!("proxy {claimed} is not an imported ISV proxy"))
                })?;
            if imported.blocked {
                return Err(Rejection::new(format!("proxy {claimed} is blocked")));
            }
            let proxy_row = db.client(&claimed).map_err(internal)?;
            let Some(proxy_row) = proxy_row.filter(|r| r.agent_type == agent_type::ISV_PROXY)
            else {
                return Err(Rejection::new(format!(
                    "proxy {claimed} has not registered itself (AgentType 4)"
                )));
            };
            if proxy_row.status != ClientStatus::Approved {
                return Err(Rejection::new(format!(
                    "proxy {claimed} is {}",
                    proxy_row.status.as_str()
                )));
            }
            let cert = verify::parse_cert(&imported.cert_der)
                .map_err(|e| Rejection::internal(format!("imported certificate: {e}")))?;
            Ok(Signer {
                cert_der: imported.cert_der,
                key: cert.key,
                hash_algorithm: proxy_row.hash_algorithm,
                proxy: Some(claimed),
            })
        }
    }
}

/// Refuses clients that may not talk yet (pending) or any more (rejected).
pub fn require_approved(client: &ClientRow) -> Result<(), Rejection> {
    match client.status {
        ClientStatus::Approved => Ok(()),
        ClientStatus::Pending => Err(Rejection::new(format!(
            "{} is pending approval: no discovery, inventory, status, state or policy until an \
             administrator approves it",
            client.smsid
        ))),
        ClientStatus::Rejected => Err(Rejection::new(format!(
            "{} is rejected (blocked) by the administrator",
            client.smsid
        ))),
    }
}

/// The hook properties by name; a name given twice is refused.
fn hook_properties(header: &MsgHeader) -> Result<BTreeMap<&str, &str>, Rejection> {
    let count = header
        .hooks
        .as_ref()
        .map_or(0, |h| h.values().filter(|h| h.name == HOOK_NAME).count());
    if count > 1 {
        return Err(Rejection::new(format!("more than one {HOOK_NAME} hook")));
    }
    let hook = header.hook(HOOK_NAME).ok_or_else(|| {
        Rejection::new(format!(
            "message after registration without a {HOOK_NAME} hook"
        ))
    })?;
    let mut props = BTreeMap::new();
    for p in &hook.properties {
        if props.insert(p.name.as_str(), p.value.trim()).is_some() {
            return Err(Rejection::new(format!(
                "{HOOK_NAME} property {} given more than once",
                p.name
            )));
        }
    }
    Ok(props)
}

/// `PublicKey` must be the signer's certificate (DER, hex) or an RSA `PUBLICKEYBLOB` of its key.
fn check_public_key(value: &[u8], signer: &Signer) -> bool {
    if value == signer.cert_der.as_slice() {
        return true;
    }
    match (&signer.key, parse_rsa_publickeyblob(value)) {
        (PublicKey::Rsa(pk), Some((n, e))) => {
            use rsa::traits::PublicKeyParts;
            *pk.n() == n && *pk.e() == e
        }
        _ => false,
    }
}

/// A CryptoAPI `PUBLICKEYBLOB` (BLOBHEADER 06 02 00 00, `CALG_RSA_KEYX`/`CALG_RSA_SIGN`, `RSA1`,
/// bit length, exponent, little-endian modulus) → (modulus, exponent).
pub fn parse_rsa_publickeyblob(b: &[u8]) -> Option<(rsa::BigUint, rsa::BigUint)> {
    let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
    if b.get(..4)? != [0x06, 0x02, 0x00, 0x00] {
        return None;
    }
    if !matches!(u32_at(4)?, 0x0000_A400 | 0x0000_2400) || b.get(8..12)? != b"RSA1" {
        return None;
    }
    let bits = u32_at(12)? as usize;
    let exp = u32_at(16)?;
    let modulus = b.get(20..)?;
    if bits == 0 || modulus.len() != bits.div_ceil(8) {
        return None;
    }
    Some((
        rsa::BigUint::from_bytes_le(modulus),
        rsa::BigUint::from(exp),
    ))
}

/// UTF-16LE of `s` followed by the UTF-16 NUL `00 00` (what ClientID and token signatures cover).
pub fn utf16le_nul(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    v.extend_from_slice(&[0, 0]);
    v
}

/// Authenticates a message after registration: `SourceID`, the `clientauth` hook, both
/// signatures (the payload one over `octet_part`, the octet-stream part as received), the proxy
/// rules and the approval state.
pub fn authenticate(
    db: &SiteDb,
    header: &MsgHeader,
    octet_part: &[u8],
) -> Result<Sender, Rejection> {
    authenticate_presented(db, header, octet_part, None)
}

/// [`authenticate`] for a message that came with the TLS client certificate `presented` (DER;
/// native mode): the signer's certificate must also be that one
/// ([`check_presented_cert`](super::tls::check_presented_cert)).
pub fn authenticate_presented(
    db: &SiteDb,
    header: &MsgHeader,
    octet_part: &[u8],
    presented: Option<&[u8]>,
) -> Result<Sender, Rejection> {
    let source = header
        .source_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Rejection::new("message after registration without a SourceID"))?;
    let smsid = normalize_smsid(source)
        .ok_or_else(|| Rejection::new(format!("SourceID {source:?} is not a GUID:… SMSID")))?;
    let props = hook_properties(header)?;
    let required = |name: &'static str| {
        props
            .get(name)
            .copied()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Rejection::new(format!("{HOOK_NAME} hook without {name}")))
    };
    let public_key = verify::decode_hex(required("PublicKey")?, "PublicKey")?;
    let id_sig = verify::decode_hex(required("ClientIDSignature")?, "ClientIDSignature")?;
    let payload_sig = verify::decode_hex(required("PayloadSignature")?, "PayloadSignature")?;
    let alg = SigAlg::from_oid(props.get("HashAlgorithm").copied())?;
    let client = db
        .client(&smsid)
        .map_err(internal)?
        .ok_or_else(|| Rejection::new(format!("SourceID {smsid} is not a registered client")))?;
    let claimed_proxy = props.get(PROXY_SMSID_PROPERTY).copied();
    let signer = signer_for(db, &client, claimed_proxy)?;
    if !check_public_key(&public_key, &signer) {
        return Err(Rejection::new(match &signer.proxy {
            Some(p) => format!("PublicKey is not the certificate of proxy {p}"),
            None => format!("PublicKey is not the certificate registered for {smsid}"),
        }));
    }
    verify::verify(&signer.key, alg, &utf16le_nul(&smsid), &id_sig)
        .map_err(|e| Rejection::new(format!("ClientIDSignature for {smsid}: {e}")))?;
    verify::verify(&signer.key, alg, octet_part, &payload_sig)
        .map_err(|e| Rejection::new(format!("PayloadSignature: {e}")))?;
    super::tls::check_presented_cert(
        presented,
        &signer.cert_der,
        &match &signer.proxy {
            Some(p) => format!("the certificate of proxy {p}"),
            None => format!("the certificate registered for {smsid}"),
        },
    )?;
    require_approved(&client)?;
    Ok(Sender {
        smsid,
        via_proxy: signer.proxy,
        client,
    })
}

/// Checks `SentTime` against the MP's clock `now` (Unix seconds) and the window.
pub fn check_sent_time(
    sent_time: Option<&str>,
    now: u64,
    window: Duration,
) -> Result<(), Rejection> {
    let s = sent_time
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Rejection::new("message without SentTime"))?;
    let t = parse_utc_timestamp(s)
        .ok_or_else(|| Rejection::new(format!("SentTime {s:?} is not YYYY-MM-DDThh:mm:ssZ")))?;
    let skew = t.abs_diff(now);
    if skew > window.as_secs() {
        return Err(Rejection::new(format!(
            "SentTime {s} is {skew} s {} the MP clock (window ±{} s): refused as a possible replay",
            if t < now { "behind" } else { "ahead of" },
            window.as_secs()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_time_window() {
        let w = Duration::from_secs(100);
        let now = 1_795_428_000; // 2026-11-23T10:00:00Z
        check_sent_time(Some("2026-11-23T10:00:00Z"), now, w).unwrap();
        check_sent_time(Some(" 2026-11-23T10:01:40Z "), now, w).unwrap();
        check_sent_time(Some("2026-11-23T09:58:20Z"), now, w).unwrap();
        for (t, reason) in [
            (None, "without SentTime"),
            (Some(""), "without SentTime"),
            (Some("yesterday"), "is not YYYY"),
            (Some("2026-11-23T10:01:41Z"), "ahead of"),
            (Some("2026-11-22T10:00:00Z"), "behind"),
        ] {
            let e = check_sent_time(t, now, w).unwrap_err();
            assert!(e.reason.contains(reason), "{t:?}: {}", e.reason);
        }
    }

    #[test]
    fn publickeyblob() {
        let mut blob = vec![0x06, 0x02, 0, 0, 0x00, 0xA4, 0, 0];
        blob.extend_from_slice(b"RSA1");
        blob.extend_from_slice(&16u32.to_le_bytes());
        blob.extend_from_slice(&65_537u32.to_le_bytes());
        blob.extend_from_slice(&[0x01, 0x80]);
        let (n, e) = parse_rsa_publickeyblob(&blob).unwrap();
        assert_eq!(n, rsa::BigUint::from(0x8001u32));
        assert_eq!(e, rsa::BigUint::from(65_537u32));
        assert!(parse_rsa_publickeyblob(&blob[..21]).is_none());
        let mut bad = blob.clone();
        bad[8] = b'X';
        assert!(parse_rsa_publickeyblob(&bad).is_none());
        assert!(parse_rsa_publickeyblob(&[]).is_none());
    }

    #[test]
    fn utf16_with_nul() {
        assert_eq!(utf16le_nul("G:"), vec![b'G', 0, b':', 0, 0, 0]);
    }
}
