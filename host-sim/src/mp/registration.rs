//! `MP_ClientRegistration` (docs/protocol.md §4): verifies the signature over the exact received
//! `<Data>` bytes, applies the agent-type rules (ordinary clients prove possession of their key,
//! ISV proxies must have been imported, proxy clients are signed by their proxy) and the approval
//! policy, and answers with a `ClientRegistrationResponse`.

use super::db::{ClientRow, ClientStatus, Inserted, NewClient, NextReply, SiteDb};
use super::envelope::{self, Body};
use super::messages::{registration_response_xml, ClientRegistrationRequest, RegistrationStatus};
use super::rejection::Rejection;
use super::step::Step;
use super::tls::check_presented_cert;
use super::util::{new_smsid, normalize_smsid, unix_now, utc_timestamp_at};
use super::verify::{self, Cert, SigAlg};
use super::Approval;

/// Agent types of the Messaging SDK.
pub mod agent_type {
    pub const ADVANCED_CLIENT: u8 = 0;
    pub const DEVICE: u8 = 2;
    pub const ISV_PROXY: u8 = 4;
    pub const ISV_PROXY_CLIENT: u8 = 8;
}

/// What registration decided, before it is written as XML.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub response_type: String,
    pub status: RegistrationStatus,
    pub smsid: Option<String>,
}

impl Outcome {
    pub fn to_xml(&self) -> String {
        registration_response_xml(&self.response_type, self.status, self.smsid.as_deref())
    }
}

fn status_of(s: ClientStatus) -> RegistrationStatus {
    match s {
        ClientStatus::Approved => RegistrationStatus::Registered,
        ClientStatus::Pending => RegistrationStatus::Pending,
        ClientStatus::Rejected => RegistrationStatus::Rejected,
    }
}

fn internal(e: anyhow::Error) -> Rejection {
    Rejection::internal(format!("site database: {e:#}"))
}

/// Handles one registration body (plain HTTP: no TLS client certificate, not strict), its write
/// included.
pub fn handle(db: &SiteDb, approval: Approval, body: &Body) -> Result<Outcome, Rejection> {
    handle_presented(db, approval, false, body, None)?.run(db)
}

/// Handles one registration body that came with the TLS client certificate `presented` (DER;
/// native mode): the signer, the `<Signing>` certificate or for AgentType 8 the proxy's, must be
/// that certificate ([`check_presented_cert`]). Parses, verifies and reads here; what is
/// recorded, and the answer that depends on it, is the returned [`Step`]'s write. `strict`
/// ([`super::MpConfig::strict`]): certificates outside their validity are refused and
/// Confirmation replies carry no SMSID, as on real MPs.
pub fn handle_presented(
    db: &SiteDb,
    approval: Approval,
    strict: bool,
    body: &Body,
    presented: Option<&[u8]>,
) -> Result<Step<Outcome>, Rejection> {
    let req = ClientRegistrationRequest::parse(&body.text)?;
    // The signed bytes: the <Data> element exactly as received (never a re-serialisation).
    let signed = envelope::element_bytes(&body.bytes, "Data")?;
    let data = &req.data;
    let alg = SigAlg::from_oid(data.hash_algorithm.as_deref())?;
    let sig = verify::decode_hex(&req.signature.value, "SignatureValue")?;
    let agent: u8 = data
        .agent_information
        .agent_type
        .trim()
        .parse()
        .map_err(|_| {
            Rejection::new(format!(
                "AgentType {:?} is not a number",
                data.agent_information.agent_type
            ))
        })?;
    let is_confirmation = match data.request_type.as_str() {
        "Registration" => false,
        "Confirmation" => true,
        other => return Err(Rejection::new(format!("unknown RequestType {other:?}"))),
    };
    let cert = match data.certificates.as_ref().and_then(|c| c.signing.as_ref()) {
        Some(s) => Some(verify::parse_cert(&verify::decode_hex(
            &s.hex,
            "Signing certificate",
        )?)?),
        None => None,
    };
    if let (true, Some(c)) = (strict, &cert) {
        check_validity(&c.der, unix_now())?;
    }
    // The real client's Confirmation names itself in Signature/@SMSID (docs/protocol.md §4): that
    // is no proxy, so only another SMSID there makes it a proxy's signature.
    let own_smsid = data.smsid.as_deref().and_then(normalize_smsid);
    let proxy_smsid = req
        .signature
        .smsid
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter(|s| !(is_confirmation && own_smsid.is_some() && normalize_smsid(s) == own_smsid));

    // Who signed: the client itself (proof of possession) or, for AgentType 8, its proxy.
    let proxy = match agent {
        agent_type::ADVANCED_CLIENT | agent_type::DEVICE | agent_type::ISV_PROXY => {
            if proxy_smsid.is_some() {
                return Err(Rejection::new(format!(
                    "Signature/@SMSID is only allowed for AgentType 8, not {agent}"
                )));
            }
            None
        }
        agent_type::ISV_PROXY_CLIENT => {
            let Some(p) = proxy_smsid else {
                return Err(Rejection::new(
                    "AgentType 8 without Signature/@SMSID naming the proxy",
                ));
            };
            let imported = db.imported_cert(p).map_err(internal)?.ok_or_else(|| {
                Rejection::new(format!(
                    "proxy {p} is not an imported ISV proxy certificate"
                ))
            })?;
            if imported.blocked {
                return Err(Rejection::new(format!("proxy {p} is blocked")));
            }
            let registered = db.client(&imported.smsid).map_err(internal)?;
            if registered.is_none_or(|r| r.agent_type != agent_type::ISV_PROXY) {
                return Err(Rejection::new(format!(
                    "proxy {p} has not registered itself (AgentType 4) yet"
                )));
            }
            Some(imported)
        }
        other => {
            return Err(Rejection::new(format!(
                "AgentType {other} is not supported"
            )))
        }
    };

    if is_confirmation {
        return confirm(
            db,
            &req,
            cert.as_ref(),
            proxy.as_ref().map(|p| p.smsid.as_str()),
            alg,
            signed,
            &sig,
            presented,
            strict,
        );
    }

    let cert = cert.ok_or_else(|| Rejection::new("registration without a Signing certificate"))?;
    let verifier = match &proxy {
        Some(p) => verify::parse_cert(&p.cert_der)?,
        None => cert.clone(),
    };
    verify::verify(&verifier.key, alg, signed, &sig)?;
    check_presented_cert(
        presented,
        &verifier.der,
        if proxy.is_some() {
            "the ISV proxy's certificate"
        } else {
            "the Signing certificate"
        },
    )?;

    let registration = NewRegistration {
        thumbprint: cert.thumbprint,
        cert_der: cert.der,
        agent,
        proxy_id: proxy.map(|p| p.smsid),
        netbios: own(data.property("Netbios Name").filter(|s| !s.is_empty())),
        fqdn: own(data.property("FQ Name").filter(|s| !s.is_empty())),
        proposed_smsid: data.smsid.as_deref().and_then(normalize_smsid),
        hash_algorithm: data.hash_algorithm.clone(),
        approval,
    };
    // Look-ups and insert as one job of the database's writer thread: its page cache stays
    // warm, no other registration can slip in between, and a fault rolls it back whole.
    Ok(Step::write(move |db| register(db, &registration)))
}

fn own(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// A verified registration of a certificate, to be recorded by [`register`].
struct NewRegistration {
    thumbprint: String,
    cert_der: Vec<u8>,
    agent: u8,
    /// The ISV proxy that signed it (AgentType 8).
    proxy_id: Option<String>,
    netbios: Option<String>,
    fqdn: Option<String>,
    /// `Data/@SMSID`, normalised.
    proposed_smsid: Option<String>,
    hash_algorithm: Option<String>,
    approval: Approval,
}

/// The same certificate again ([`reregister`]), or a new client: an ISV proxy gets its imported
/// SMSID, another client its proposed SMSID if free, else a fresh one.
fn register(db: &SiteDb, r: &NewRegistration) -> Result<Outcome, Rejection> {
    let (agent, netbios, fqdn) = (r.agent, r.netbios.as_deref(), r.fqdn.as_deref());
    let proxy_id = r.proxy_id.as_deref();
    if let Some(existing) = db.client_by_thumbprint(&r.thumbprint).map_err(internal)? {
        if let Some(reply) = db.take_next_reply(&existing.smsid).map_err(internal)? {
            return Ok(ordered(reply));
        }
        return reregister(db, &existing, agent, proxy_id, netbios, fqdn);
    }

    let (smsid, status) = if agent == agent_type::ISV_PROXY {
        let imported = db
            .imported_by_thumbprint(&r.thumbprint)
            .map_err(internal)?
            .ok_or_else(|| {
                Rejection::new(
                    "AgentType 4 (ISV proxy) certificate was not imported by an administrator",
                )
            })?;
        let status = if imported.blocked {
            ClientStatus::Rejected
        } else {
            ClientStatus::Approved
        };
        (imported.smsid, status)
    } else {
        if db
            .imported_by_thumbprint(&r.thumbprint)
            .map_err(internal)?
            .is_some()
        {
            return Err(Rejection::new(format!(
                "an imported ISV proxy certificate must register with AgentType 4, not {agent}"
            )));
        }
        let smsid = match &r.proposed_smsid {
            Some(p) if !db.smsid_in_use(p).map_err(internal)? => p.clone(),
            _ => new_smsid(),
        };
        let status = match r.approval {
            Approval::Auto => ClientStatus::Approved,
            Approval::Pending => ClientStatus::Pending,
        };
        (smsid, status)
    };
    let client = NewClient {
        smsid: &smsid,
        cert_der: &r.cert_der,
        agent_type: agent,
        netbios_name: netbios,
        fqdn,
        hash_algorithm: r.hash_algorithm.as_deref(),
        status,
        registered_by_proxy: proxy_id,
    };
    record(db, client, &r.thumbprint, agent != agent_type::ISV_PROXY)
}

/// Inserts a new client. Between the caller's look-ups and the insert another request may have
/// recorded this certificate (the same device registering twice at once: both are answered with
/// the one SMSID) or taken the SMSID (then, if `may_renumber`, a fresh SMSID is taken; an ISV
/// proxy's is the imported one).
fn record(
    db: &SiteDb,
    client: NewClient<'_>,
    thumbprint: &str,
    may_renumber: bool,
) -> Result<Outcome, Rejection> {
    let mut smsid = client.smsid.to_string();
    for _ in 0..3 {
        let row = NewClient {
            smsid: &smsid,
            ..client.clone()
        };
        if db.insert_client(&row).map_err(internal)? == Inserted::New {
            let status = row.status;
            tracing::info!(%smsid, agent = row.agent_type, status = status.as_str(), netbios = row.netbios_name, "client registered");
            return Ok(outcome(status, &smsid));
        }
        if let Some(existing) = db.client_by_thumbprint(thumbprint).map_err(internal)? {
            return reregister(
                db,
                &existing,
                row.agent_type,
                row.registered_by_proxy,
                row.netbios_name,
                row.fqdn,
            );
        }
        if !may_renumber {
            break;
        }
        smsid = new_smsid();
    }
    Err(Rejection::internal(format!(
        "site database: SMSID {smsid} is taken by another certificate"
    )))
}

/// The same certificate registers again: same SMSID, same status, as long as the same party
/// (itself, or the same ISV proxy, with the same AgentType) registers it.
fn reregister(
    db: &SiteDb,
    existing: &ClientRow,
    agent: u8,
    proxy_id: Option<&str>,
    netbios: Option<&str>,
    fqdn: Option<&str>,
) -> Result<Outcome, Rejection> {
    if existing.agent_type != agent
        || existing
            .registered_by_proxy
            .as_deref()
            .map(str::to_ascii_uppercase)
            != proxy_id.map(str::to_ascii_uppercase)
    {
        return Err(Rejection::new(format!(
            "certificate is already registered as {} with AgentType {} by {}",
            existing.smsid,
            existing.agent_type,
            existing.registered_by_proxy.as_deref().unwrap_or("itself")
        )));
    }
    db.touch_client(&existing.smsid, netbios, fqdn)
        .map_err(internal)?;
    db.event(Some(&existing.smsid), "re-registered", "same certificate")
        .map_err(internal)?;
    Ok(outcome(existing.status, &existing.smsid))
}

/// The reply [profile]: `ResponseType="Registration"` for confirmations too (the only value the
/// public record shows).
fn outcome(status: ClientStatus, smsid: &str) -> Outcome {
    let status = status_of(status);
    Outcome {
        response_type: "Registration".into(),
        status,
        smsid: (status != RegistrationStatus::Rejected).then(|| smsid.to_string()),
    }
}

/// The reply an administrator ordered with `mp next-reply` (no SMSID: only 0 and 1 carry one).
fn ordered(reply: NextReply) -> Outcome {
    Outcome {
        response_type: "Registration".into(),
        status: match reply {
            NextReply::Reset => RegistrationStatus::Reset,
            NextReply::Error => RegistrationStatus::Rejected,
            NextReply::CertificateReset => RegistrationStatus::CertificateReset,
        },
        smsid: None,
    }
}

/// A real MP refuses a certificate outside its validity period ("Registration request body is
/// invalid", docs/protocol.md §4).
fn check_validity(der: &[u8], now: u64) -> Result<(), Rejection> {
    let (from, until) = verify::validity(der)?;
    if now < from || now > until {
        return Err(Rejection::new(format!(
            "Registration request body is invalid: the Signing certificate is valid from {} to \
             {}, and the MP's clock says {}",
            utc_timestamp_at(from),
            utc_timestamp_at(until),
            utc_timestamp_at(now)
        )));
    }
    Ok(())
}

/// `RequestType="Confirmation"`: the SMSID must be registered, the signature must verify with the
/// stored certificate (or the registering proxy's), and a certificate sent along must be that one.
#[allow(clippy::too_many_arguments)]
fn confirm(
    db: &SiteDb,
    req: &ClientRegistrationRequest,
    cert: Option<&Cert>,
    proxy_smsid: Option<&str>,
    alg: SigAlg,
    signed: &[u8],
    sig: &[u8],
    presented: Option<&[u8]>,
    strict: bool,
) -> Result<Step<Outcome>, Rejection> {
    let smsid = req
        .data
        .smsid
        .as_deref()
        .and_then(normalize_smsid)
        .ok_or_else(|| Rejection::new("Confirmation without a well-formed Data/@SMSID"))?;
    let row = db
        .client(&smsid)
        .map_err(internal)?
        .ok_or_else(|| Rejection::new(format!("Confirmation for unknown SMSID {smsid}")))?;
    if let Some(c) = cert {
        if c.thumbprint != row.cert_sha256 {
            return Err(Rejection::new(format!(
                "Confirmation certificate is not the one registered for {smsid}"
            )));
        }
    }
    let stored_proxy = row
        .registered_by_proxy
        .as_deref()
        .map(str::to_ascii_uppercase);
    if stored_proxy != proxy_smsid.map(str::to_ascii_uppercase) {
        return Err(Rejection::new(format!(
            "Confirmation for {smsid} must be signed by {}",
            row.registered_by_proxy
                .as_deref()
                .unwrap_or("the client itself")
        )));
    }
    let verifier_der = match proxy_smsid {
        Some(p) => db
            .imported_cert(p)
            .map_err(internal)?
            .map(|i| i.cert_der)
            .unwrap_or_default(),
        None => row.cert_der.clone(),
    };
    let verifier = verify::parse_cert(&verifier_der)?;
    verify::verify(&verifier.key, alg, signed, sig)?;
    check_presented_cert(
        presented,
        &verifier_der,
        &format!("the certificate registered for {smsid}"),
    )?;
    let (smsid, status) = (row.smsid, row.status);
    Ok(Step::write(move |db| {
        if let Some(reply) = db.take_next_reply(&smsid).map_err(internal)? {
            return Ok(ordered(reply));
        }
        db.touch_client(&smsid, None, None).map_err(internal)?;
        db.event(Some(&smsid), "confirmed", status.as_str())
            .map_err(internal)?;
        let mut reply = outcome(status, &smsid);
        if strict {
            // Real MPs' Confirmation replies name no SMSID: it is the one asked about (§4).
            reply.smsid = None;
        }
        Ok(reply)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use std::str::FromStr;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::der::Encode;

    struct Dev {
        key: p256::ecdsa::SigningKey,
        cert_hex: String,
    }

    fn dev() -> Dev {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let spki =
            x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
        let cert = CertificateBuilder::new(
            Profile::Root,
            x509_cert::serial_number::SerialNumber::from(1u32),
            x509_cert::time::Validity::from_now(std::time::Duration::from_secs(86_400)).unwrap(),
            x509_cert::name::Name::from_str("CN=t").unwrap(),
            spki,
            &key,
        )
        .unwrap()
        .build::<p256::ecdsa::DerSignature>()
        .unwrap();
        Dev {
            key,
            cert_hex: hex::encode_upper(cert.to_der().unwrap()),
        }
    }

    /// A body whose `<Data>` is built from `attrs` (inserted into the Data tag) and `agent`.
    fn body(d: &Dev, attrs: &str, agent: &str, with_cert: bool) -> Body {
        let certs = if with_cert {
            format!("<Certificates><Signing Encoding=\"HexBinary\" KeyType=\"1\">{}</Signing></Certificates>", d.cert_hex)
        } else {
            String::new()
        };
        let data = format!(
            "<Data HashAlgorithm=\"1.2.840.10045.4.3.2\" {attrs}><AgentInformation AgentType=\"{agent}\" />{certs}</Data>"
        );
        let sig: p256::ecdsa::Signature = d.key.sign(&envelope::encode_utf16le(&data));
        let text = format!(
            "<ClientRegistrationRequest>{data}<Signature><SignatureValue>{}</SignatureValue></Signature></ClientRegistrationRequest>",
            hex::encode_upper(sig.to_bytes())
        );
        Body {
            bytes: envelope::encode_utf16le(&text),
            text,
            ..Default::default()
        }
    }

    fn db() -> (tempfile::TempDir, SiteDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = SiteDb::open(dir.path().join("s.db")).unwrap();
        (dir, db)
    }

    #[test]
    fn minimal_registration_and_confirmation() {
        let (_t, db) = db();
        let d = dev();
        let out = handle(
            &db,
            Approval::Auto,
            &body(&d, "RequestType=\"Registration\"", "0", true),
        )
        .unwrap();
        assert_eq!(out.status, RegistrationStatus::Registered);
        let smsid = out.smsid.unwrap();
        // Confirmation without certificates: verified with the stored one.
        let conf = body(
            &d,
            &format!(
                "RequestType=\"Confirmation\" SMSID=\"{}\"",
                smsid.to_ascii_lowercase()
            ),
            "0",
            false,
        );
        let out = handle(&db, Approval::Auto, &conf).unwrap();
        assert_eq!(
            (out.status, out.smsid.as_deref()),
            (RegistrationStatus::Registered, Some(smsid.as_str()))
        );
        assert!(db.events().unwrap().iter().any(|e| e.kind == "confirmed"));
    }

    #[test]
    fn malformed_requests_are_rejected_with_reasons() {
        let (_t, db) = db();
        let d = dev();
        let cases = [
            (body(&d, "RequestType=\"Registration\"", "zero", true), "AgentType \"zero\" is not a number"),
            (body(&d, "RequestType=\"Registration\"", "300", true), "not a number"),
            (body(&d, "RequestType=\"Renew\"", "0", true), "unknown RequestType"),
            (body(&d, "RequestType=\"Registration\"", "0", false), "without a Signing certificate"),
            (body(&d, "RequestType=\"Confirmation\"", "0", true), "without a well-formed Data/@SMSID"),
            (
                body(&d, "RequestType=\"Confirmation\" SMSID=\"GUID:00000000-0000-0000-0000-000000000000\"", "0", true),
                "unknown SMSID",
            ),
        ];
        for (b, reason) in cases {
            let err = handle(&db, Approval::Auto, &b).unwrap_err();
            assert!(
                err.reason.contains(reason),
                "{:?} lacks {reason:?}",
                err.reason
            );
            assert!(!err.internal);
        }
        // A certificate that is not hex / not a certificate.
        let mut b = body(&d, "RequestType=\"Registration\"", "0", true);
        b.text = b.text.replace(&d.cert_hex, "ZZ");
        b.bytes = envelope::encode_utf16le(&b.text);
        assert!(handle(&db, Approval::Auto, &b)
            .unwrap_err()
            .reason
            .contains("bad hex"));
        b.text = b.text.replace(">ZZ<", ">3003020101<");
        b.bytes = envelope::encode_utf16le(&b.text);
        assert!(handle(&db, Approval::Auto, &b)
            .unwrap_err()
            .reason
            .contains("certificate"));
        assert!(db.clients().unwrap().is_empty());
    }

    #[test]
    fn bytes_and_text_must_agree() {
        // The signed bytes are taken from `bytes`; a body whose text was altered is caught.
        let (_t, db) = db();
        let d = dev();
        let mut b = body(&d, "RequestType=\"Registration\"", "0", true);
        b.bytes = envelope::encode_utf16le(&b.text.replace("AgentType=\"0\"", "AgentType=\"2\""));
        assert!(handle(&db, Approval::Auto, &b)
            .unwrap_err()
            .reason
            .contains("signature does not verify"));
    }

    fn new_client<'a>(smsid: &'a str, cert: &'a [u8]) -> NewClient<'a> {
        NewClient {
            smsid,
            cert_der: cert,
            agent_type: agent_type::ADVANCED_CLIENT,
            netbios_name: Some("DEV"),
            fqdn: None,
            hash_algorithm: None,
            status: ClientStatus::Approved,
            registered_by_proxy: None,
        }
    }

    /// The insert after the look-ups loses a race (the rows are written first, as a concurrent
    /// request would): the same certificate is answered with the winner's SMSID, a taken SMSID
    /// is replaced; nothing is answered 500 unless no other SMSID may be taken.
    #[test]
    fn insert_races_are_resolved() {
        let (_t, db) = db();
        let winner = new_smsid();
        assert_eq!(
            db.insert_client(&new_client(&winner, b"cert A")).unwrap(),
            Inserted::New
        );
        let loser = new_smsid();
        let out = record(
            &db,
            new_client(&loser, b"cert A"),
            &verify::thumbprint(b"cert A"),
            true,
        )
        .unwrap();
        assert_eq!(out.smsid.as_deref(), Some(winner.as_str()));
        assert!(db
            .events()
            .unwrap()
            .iter()
            .any(|e| e.kind == "re-registered"));

        // Same certificate, other AgentType: refused (403), not 500.
        let other_agent = NewClient {
            agent_type: agent_type::DEVICE,
            ..new_client(&loser, b"cert A")
        };
        let err = record(&db, other_agent, &verify::thumbprint(b"cert A"), true).unwrap_err();
        assert!(
            !err.internal && err.reason.contains("already registered"),
            "{err:?}"
        );

        // Another certificate whose SMSID was taken meanwhile: a fresh SMSID.
        let out = record(
            &db,
            new_client(&winner, b"cert B"),
            &verify::thumbprint(b"cert B"),
            true,
        )
        .unwrap();
        let fresh = out.smsid.unwrap();
        assert_ne!(fresh, winner);
        assert_eq!(db.client(&fresh).unwrap().unwrap().cert_der, b"cert B");
        // ... unless it may not be renumbered (an ISV proxy's SMSID is the imported one).
        let err = record(
            &db,
            new_client(&winner, b"cert C"),
            &verify::thumbprint(b"cert C"),
            false,
        )
        .unwrap_err();
        assert!(err.internal && err.reason.contains("taken"), "{err:?}");
        assert_eq!(db.clients().unwrap().len(), 2);
    }
}
