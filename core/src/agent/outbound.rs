//! Composes one message into the HTTP request that carries it: `CCM_POST /ccm_system/request`
//! head + multipart envelope (`<Msg>` header + body). Lengths are computed by counting passes, so
//! the request can be streamed through a small window without ever existing whole in RAM.

use crate::agent::signed::NoBody;
use crate::config::AgentConfig;
use crate::guid::{Guid, Smsid};
use crate::http::request::{Method, RequestHead};
use crate::sink::{emitted_len, Emit, Overflow, Sink};
use crate::time::UnixTime;
use crate::wire::header::{MsgHeader, ReplyMode};
use crate::wire::multipart::{Envelope, CONTENT_TYPE};

/// The anonymous request path (docs/protocol.md §1).
pub const REQUEST_PATH: &str = "/ccm_system/request";

/// One `CCM_POST` ready to emit.
#[derive(Clone, Copy)]
pub struct Post<'a> {
    header: MsgHeader<'a>,
    body: &'a dyn Emit,
    host: &'a str,
    port: u16,
    content_length: usize,
}

/// What a message needs besides its body.
#[derive(Clone, Copy)]
pub struct PostParams<'a> {
    /// Target endpoint name (see [`crate::wire::header::endpoint`]).
    pub endpoint: &'a str,
    /// Sync for request/reply messages.
    pub reply_mode: ReplyMode,
    /// The sender's SMSID (absent before registration).
    pub source_id: Option<Smsid>,
    /// A fresh message ID.
    pub message_id: Guid,
    /// Build time.
    pub now: UnixTime,
    /// Header hooks (clientauth), if any.
    pub hooks: Option<&'a dyn Emit>,
}

impl<'a> Post<'a> {
    /// Assemble a request and compute its lengths.
    pub fn new(
        config: &AgentConfig<'a>,
        params: PostParams<'a>,
        body: &'a dyn Emit,
    ) -> Result<Self, Overflow> {
        // One counting pass over the body; the envelope around it is counted without it.
        let body_len = emitted_len(body)?;
        let header = MsgHeader {
            attachment: None,
            id: params.message_id,
            body_length: body_len.checked_add(2).ok_or(Overflow)?,
            reply_mode: params.reply_mode,
            source_host: config.netbios_name,
            source_id: params.source_id,
            target_endpoint: params.endpoint,
            target_host: config.mp.host,
            sent_time: params.now.to_datetime(),
            hooks: params.hooks,
        };
        let content_length = emitted_len(&Envelope {
            header: &header,
            body: &NoBody,
        })?
        .checked_add(body_len)
        .ok_or(Overflow)?;
        Ok(Self {
            header,
            body,
            host: config.mp.host,
            port: config.mp.port,
            content_length,
        })
    }

    /// The multipart body's length (`Content-Length`).
    pub fn content_length(&self) -> usize {
        self.content_length
    }

    /// The message ID in the header.
    pub fn message_id(&self) -> Guid {
        self.header.id
    }

    fn head(&self) -> RequestHead<'_> {
        RequestHead {
            method: Method::CcmPost,
            path: REQUEST_PATH,
            host: self.host,
            port: Some(self.port),
            content_type: Some(CONTENT_TYPE),
            content_length: Some(self.content_length),
            extra: &[],
        }
    }
}

impl Emit for Post<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        self.head().emit(out)?;
        Envelope {
            header: &self.header,
            body: self.body,
        }
        .emit(out)
    }
}
