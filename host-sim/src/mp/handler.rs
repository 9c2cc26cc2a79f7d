//! The `CCM_POST /ccm_system/request` pipeline: envelope → `<Msg>` header → body → endpoint
//! dispatch → reply envelope. Every refusal is a [`Rejection`] with a reason; the server logs it
//! and answers 403. Registration is unsigned at message level; every other endpoint goes through
//! [`clientauth::authenticate`] first, then `signed` (duplicates, `SentTime`, the endpoint).
//! New endpoints are added in [`handle_ccm_post`] / `signed`.

use super::clientauth::{self, Sender};
use super::db::SiteDb;
use super::envelope::{self, Body};
use super::messages::{reply_header_xml, MsgHeader};
use super::rejection::Rejection;
use super::step::Step;
use super::util::unix_now;
use super::{management, policy, registration, MpConfig};

/// A successful answer: the content type and body of an HTTP 200.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// What an endpoint answers.
pub enum EndpointReply {
    /// A reply message with this body XML (`ReplyMode` Sync).
    Message(String),
    /// One-way post: HTTP 200 with an empty body.
    Accepted,
}

/// The endpoints behind the `clientauth` hook (everything but registration).
fn is_signed_endpoint(endpoint: &str) -> bool {
    endpoint == "MP_PolicyManager" || management::ENDPOINTS.contains(&endpoint)
}

/// Handles one `CCM_POST` body with its `Content-Type` (plain HTTP: no TLS client certificate).
pub fn handle_ccm_post(
    config: &MpConfig,
    db: &SiteDb,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Reply, Rejection> {
    handle_ccm_post_from(config, db, content_type, body, None)
}

/// [`handle_ccm_post`] for a request that came over TLS with the client certificate
/// `client_cert` (DER; native mode, see [`super::tls`]): registration and every signed message
/// must be signed by that certificate's key. Blocks for the request's database write, if any.
pub fn handle_ccm_post_from(
    config: &MpConfig,
    db: &SiteDb,
    content_type: Option<&str>,
    body: &[u8],
    client_cert: Option<&[u8]>,
) -> Result<Reply, Rejection> {
    let pending = prepare_ccm_post(config, db, content_type, body, client_cert)?;
    let answer = pending.answer.run(db);
    pending.request.reply(config, answer)
}

/// A `CCM_POST` after [`prepare_ccm_post`]: the endpoint's answer, which may still wait on its
/// database write, and what the reply needs of the request.
pub struct PendingPost {
    request: PostedRequest,
    answer: Step<EndpointReply>,
}

/// What the reply needs of the request it answers.
struct PostedRequest {
    header: MsgHeader,
    endpoint: String,
}

impl PendingPost {
    /// The reply, once the write (if any) committed on the database's writer thread; awaited
    /// without blocking the runtime's thread (the server's path).
    pub async fn reply_async(
        self,
        config: &MpConfig,
        writer: &super::db::SiteWriter,
    ) -> Result<Reply, Rejection> {
        let answer = self.answer.run_async(writer).await;
        self.request.reply(config, answer)
    }

    /// The reply with the answer `decide` makes of the endpoint's name and its pending step,
    /// instead of running that step (measurements that leave the write out).
    pub fn reply_with(
        self,
        config: &MpConfig,
        decide: impl FnOnce(&str, Step<EndpointReply>) -> EndpointReply,
    ) -> Result<Reply, Rejection> {
        let answer = decide(&self.request.endpoint, self.answer);
        self.request.reply(config, Ok(answer))
    }
}

impl PostedRequest {
    fn reply(
        &self,
        config: &MpConfig,
        answer: Result<EndpointReply, Rejection>,
    ) -> Result<Reply, Rejection> {
        match answer.map_err(|r| r.at(&self.endpoint))? {
            EndpointReply::Message(xml) => Ok(build_reply(config, &self.header, &xml)),
            EndpointReply::Accepted => Ok(Reply {
                content_type: "text/plain".into(),
                body: Vec::new(),
            }),
        }
    }
}

/// The synchronous part of a `CCM_POST`: envelope, header, body, signature checks and the
/// endpoint's look-ups (on `db`, a reading connection); what the endpoint records is left in the
/// returned [`PendingPost`].
pub fn prepare_ccm_post(
    config: &MpConfig,
    db: &SiteDb,
    content_type: Option<&str>,
    body: &[u8],
    client_cert: Option<&[u8]>,
) -> Result<PendingPost, Rejection> {
    let ct = content_type.ok_or_else(|| Rejection::new("CCM_POST without Content-Type"))?;
    let boundary = envelope::boundary_from_content_type(ct)?;
    let parts = envelope::split_multipart(body, &boundary)?;
    let (header_part, body_part) = envelope::message_parts(&parts)?;
    let header_xml = envelope::decode_header_part(header_part)?;
    let header = MsgHeader::parse(&header_xml)?;
    let endpoint = header.target_endpoint.trim().to_string();
    let answer = (|| -> Result<Step<EndpointReply>, Rejection> {
        let decode = || {
            envelope::decode_body_part(
                body_part,
                header.is_compressed(),
                header.body_range()?,
                &header.attachment_ranges()?,
                config.limits.max_body_bytes,
            )
            .map_err(Rejection::from)
        };
        if endpoint == "MP_ClientRegistration" {
            Ok(registration::handle_presented(
                db,
                config.approval,
                config.strict,
                &decode()?,
                client_cert,
            )?
            .map(|outcome| EndpointReply::Message(outcome.to_xml())))
        } else if is_signed_endpoint(&endpoint) {
            // Authenticate over the octet-stream part exactly as received, before inflating it.
            // A real MP answers a failure here 200 with an empty body (docs/protocol.md §5).
            let sender = clientauth::authenticate_presented(db, &header, body_part, client_cert)
                .map_err(|r| if config.strict { r.quietly() } else { r })?;
            signed(config, db, &header, &endpoint, sender, decode()?)
        } else {
            Err(Rejection::new(format!("unsupported endpoint {endpoint:?}")))
        }
    })()
    .map_err(|r| r.at(&endpoint))?;
    Ok(PendingPost {
        request: PostedRequest { header, endpoint },
        answer,
    })
}

/// An authenticated message: duplicates are answered 200 again and not stored; then the
/// `SentTime` window, the body's shape, and the endpoint's work.
fn signed(
    config: &MpConfig,
    db: &SiteDb,
    header: &MsgHeader,
    endpoint: &str,
    sender: Sender,
    body: Body,
) -> Result<Step<EndpointReply>, Rejection> {
    let internal = |e: anyhow::Error| Rejection::internal(format!("site database: {e:#}"));
    let message_id = management::message_id(header);
    let one_way = endpoint != "MP_PolicyManager";
    let endpoint = endpoint.to_owned();
    if one_way
        && db
            .message_seen(&sender.smsid, &message_id)
            .map_err(internal)?
    {
        return Ok(Step::write(move |db| {
            duplicate(db, &sender, &endpoint, &message_id)
        }));
    }
    clientauth::check_sent_time(
        header.sent_time.as_deref(),
        unix_now(),
        config.limits.sent_time_window,
    )?;
    if !one_way {
        return Ok(policy::handle_request(config, db, &sender, &body)?
            .map(|xml| xml.map_or(EndpointReply::Accepted, EndpointReply::Message)));
    }
    let body = management::report_of(&endpoint, body, &sender.smsid, config.strict)?;
    let kind = management::classify(&endpoint, &body, &sender.smsid)?;
    let sent_time = header.sent_time.as_deref().map(|t| t.trim().to_owned());
    Ok(Step::write(move |db| {
        let stored = management::store(
            db,
            &message_id,
            sent_time.as_deref(),
            &sender,
            &endpoint,
            kind,
            &body,
        )?;
        if !stored {
            return duplicate(db, &sender, &endpoint, &message_id);
        }
        tracing::info!(smsid = %sender.smsid, endpoint, kind, %message_id, via_proxy = sender.via_proxy.as_deref(), "message stored");
        Ok(EndpointReply::Accepted)
    }))
}

/// A message ID this client already delivered: logged, nothing stored, answered like the first.
fn duplicate(
    db: &SiteDb,
    sender: &Sender,
    endpoint: &str,
    message_id: &str,
) -> Result<EndpointReply, Rejection> {
    tracing::info!(smsid = %sender.smsid, endpoint, %message_id, "duplicate message ignored");
    db.event(
        Some(&sender.smsid),
        "duplicate",
        &format!("message {message_id} to {endpoint} already stored"),
    )
    .map_err(|e| Rejection::internal(format!("site database: {e:#}")))?;
    Ok(EndpointReply::Accepted)
}

/// The reply envelope as real MPs frame it: header (UTF-16LE + BOM) and body (UTF-16LE + one
/// `00 00`, nothing after it), the body part zlib-compressed when the client asked for it.
pub fn build_reply(config: &MpConfig, request: &MsgHeader, body_xml: &str) -> Reply {
    let stream = envelope::reply_stream(body_xml);
    let length = stream.len();
    let compress = request.wants_zlib_reply();
    let header = reply_header_xml(request, &config.mp_host, length, compress);
    let part = if compress {
        envelope::zlib_compress(&stream)
    } else {
        stream
    };
    Reply {
        content_type: format!("multipart/mixed; boundary=\"{}\"", envelope::BOUNDARY),
        body: envelope::build_multipart(&header, &part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> MpConfig {
        MpConfig {
            site_code: "P01".into(),
            db_path: dir.join("s.db"),
            approval: super::super::Approval::Auto,
            limits: Default::default(),
            mp_host: "mp.test".into(),
            strict: false,
        }
    }

    const HEADER: &str = "<Msg ReplyCompression=\"zlib\"><Body Type=\"ByteRange\" Length=\"LEN\" Offset=\"0\" /><ID>{5DD100CD-DF1D-45F5-BA17-A327F43465F8}</ID><ReplyTo>direct:DEV:SccmMessaging</ReplyTo><TargetEndpoint>EP</TargetEndpoint></Msg>";

    fn message(endpoint: &str, body_xml: &str) -> Vec<u8> {
        let (stream, len) = envelope::body_stream(body_xml);
        let header = HEADER
            .replace("LEN", &len.to_string())
            .replace("EP", endpoint);
        envelope::build_multipart(&header, &stream)
    }

    #[test]
    fn pipeline_refusals_name_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let db = SiteDb::open(&config.db_path).unwrap();
        let ct = format!("multipart/mixed; boundary=\"{}\"", envelope::BOUNDARY);
        let msg = message("MP_Nowhere", "<X/>");
        assert!(handle_ccm_post(&config, &db, None, &msg)
            .unwrap_err()
            .reason
            .contains("without Content-Type"));
        assert!(handle_ccm_post(&config, &db, Some("text/plain"), &msg)
            .unwrap_err()
            .reason
            .contains("content-type"));
        let err = handle_ccm_post(&config, &db, Some(&ct), &msg).unwrap_err();
        assert!(
            err.reason.contains("unsupported endpoint"),
            "{}",
            err.reason
        );
        assert_eq!(err.endpoint.as_deref(), Some("MP_Nowhere"));
        let err = handle_ccm_post(
            &config,
            &db,
            Some(&ct),
            &message("MP_ClientRegistration", "<X/>"),
        )
        .unwrap_err();
        assert!(err.reason.contains("registration"), "{}", err.reason);
        // A header with a DTD is refused before any parsing.
        let evil =
            envelope::build_multipart("<!DOCTYPE Msg><Msg/>", &envelope::body_stream("<X/>").0);
        assert!(handle_ccm_post(&config, &db, Some(&ct), &evil)
            .unwrap_err()
            .reason
            .contains("document type"));
    }

    #[test]
    fn reply_is_compressed_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let header = MsgHeader::parse(
            &HEADER
                .replace("LEN", "10")
                .replace("EP", "MP_ClientRegistration"),
        )
        .unwrap();
        let reply = build_reply(&config, &header, "<R/>");
        let parts = envelope::split_multipart(&reply.body, envelope::BOUNDARY).unwrap();
        let (h, b) = envelope::message_parts(&parts).unwrap();
        let h = MsgHeader::parse(&envelope::decode_header_part(h).unwrap()).unwrap();
        assert!(h.is_compressed());
        assert_eq!(
            h.correlation_id.as_deref(),
            Some("{5DD100CD-DF1D-45F5-BA17-A327F43465F8}")
        );
        let body =
            envelope::decode_body_part(b, true, h.body_range().unwrap(), &[], 1 << 20).unwrap();
        assert_eq!(body.text, "<R/>");
        // Real MPs' framing: the inflated part is the text and exactly one NUL, nothing after.
        let inflated = envelope::zlib_decompress(b, 1 << 20).unwrap();
        assert_eq!(inflated, b"<\0R\0/\0>\0\0\0");
        assert_eq!(h.body_range().unwrap().length, inflated.len());
    }

    #[test]
    fn uncompressed_reply_ends_at_the_nul() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let header = MsgHeader::parse(
            &HEADER
                .replace(" ReplyCompression=\"zlib\"", "")
                .replace("LEN", "10")
                .replace("EP", "MP_ClientRegistration"),
        )
        .unwrap();
        let reply = build_reply(&config, &header, "<R/>");
        let parts = envelope::split_multipart(&reply.body, envelope::BOUNDARY).unwrap();
        let (h, b) = envelope::message_parts(&parts).unwrap();
        let h = MsgHeader::parse(&envelope::decode_header_part(h).unwrap()).unwrap();
        assert!(!h.is_compressed());
        assert_eq!(b, b"<\0R\0/\0>\0\0\0");
        assert_eq!(h.body_range().unwrap().length, b.len());
    }
}
