//! The `CCM_POST /ccm_system/request` pipeline: envelope → `<Msg>` header → body → endpoint
//! dispatch → reply envelope. Every refusal is a [`Rejection`] with a reason; the server logs it
//! and answers 403. New endpoints are added in [`dispatch`].

use super::db::SiteDb;
use super::envelope::{self, Body};
use super::messages::{reply_header_xml, MsgHeader};
use super::{registration, MpConfig};

/// A refused request: the reason goes to the log, the rejection table and the 403 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    /// The endpoint, once the header was read.
    pub endpoint: Option<String>,
    /// A fault of ours (database), answered 500 rather than 403.
    pub internal: bool,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Rejection {
        Rejection {
            reason: reason.into(),
            endpoint: None,
            internal: false,
        }
    }

    pub fn internal(reason: impl Into<String>) -> Rejection {
        Rejection {
            internal: true,
            ..Rejection::new(reason)
        }
    }

    fn at(mut self, endpoint: &str) -> Rejection {
        self.endpoint.get_or_insert_with(|| endpoint.to_string());
        self
    }
}

macro_rules! rejection_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Rejection {
            fn from(e: $t) -> Rejection {
                Rejection::new(e.to_string())
            }
        }
    )*};
}
rejection_from!(
    super::envelope::EnvelopeError,
    super::messages::XmlError,
    super::verify::VerifyError
);

/// A successful answer: the content type and body of an HTTP 200.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// What an endpoint answers.
enum EndpointReply {
    /// A reply message with this body XML (`ReplyMode` Sync).
    Message(String),
    /// One-way post: HTTP 200 with an empty body.
    #[allow(dead_code)] // used by the one-way endpoints (DDR, inventory, status) to come
    Accepted,
}

/// Handles one `CCM_POST` body with its `Content-Type`.
pub fn handle_ccm_post(
    config: &MpConfig,
    db: &SiteDb,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Reply, Rejection> {
    let ct = content_type.ok_or_else(|| Rejection::new("CCM_POST without Content-Type"))?;
    let boundary = envelope::boundary_from_content_type(ct)?;
    let parts = envelope::split_multipart(body, &boundary)?;
    let (header_part, body_part) = envelope::message_parts(&parts)?;
    let header_xml = envelope::decode_header_part(header_part)?;
    let header = MsgHeader::parse(&header_xml)?;
    let endpoint = header.target_endpoint.trim().to_string();
    let inner = || -> Result<Reply, Rejection> {
        let body = envelope::decode_body_part(
            body_part,
            header.is_compressed(),
            header.body_range()?,
            &header.attachment_ranges()?,
            config.limits.max_body_bytes,
        )?;
        match dispatch(config, db, &header, &body)? {
            EndpointReply::Message(xml) => Ok(build_reply(config, &header, &xml)),
            EndpointReply::Accepted => Ok(Reply {
                content_type: "text/plain".into(),
                body: Vec::new(),
            }),
        }
    };
    inner().map_err(|r| r.at(&endpoint))
}

/// Endpoint dispatch by `TargetEndpoint`.
fn dispatch(
    config: &MpConfig,
    db: &SiteDb,
    header: &MsgHeader,
    body: &Body,
) -> Result<EndpointReply, Rejection> {
    match header.target_endpoint.trim() {
        "MP_ClientRegistration" => {
            let outcome = registration::handle(db, config.approval, body)?;
            Ok(EndpointReply::Message(outcome.to_xml()))
        }
        other => Err(Rejection::new(format!("unsupported endpoint {other:?}"))),
    }
}

/// The reply envelope: header (UTF-16LE + BOM) and body (UTF-16LE + `00 00` + CRLF), the body part
/// zlib-compressed (CRLF included, as the public tools expect) when the client asked for it.
pub fn build_reply(config: &MpConfig, request: &MsgHeader, body_xml: &str) -> Reply {
    let (stream, length) = envelope::body_stream(body_xml);
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
