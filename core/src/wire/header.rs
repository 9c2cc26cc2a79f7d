//! The `<Msg>` header of every request (spec §3), element order as the public tools send it.

use crate::guid::{Guid, Smsid};
use crate::sink::{Emit, Overflow, Sink};
use crate::time::DateTime;
use crate::wire::xml::XmlWriter;

/// Whether the MP answers with a reply message (registration, policy) or only the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReplyMode {
    /// Request/reply.
    Sync,
    /// One-way post (DDR, inventory, status, state).
    Async,
}

/// Endpoint names (spec §3).
pub mod endpoint {
    /// Registration.
    pub const CLIENT_REGISTRATION: &str = "MP_ClientRegistration";
    /// Discovery data / heartbeat.
    pub const DDR: &str = "MP_DdrEndpoint";
    /// Hardware inventory.
    pub const HINV: &str = "MP_HinvEndpoint";
    /// Policy assignments.
    pub const POLICY: &str = "MP_PolicyManager";
    /// Status messages.
    pub const STATUS: &str = "StatusReceiver";
    /// State messages.
    pub const RELAY: &str = "MP_RelayEndpoint";
}

/// One `<Msg>` header.
#[derive(Clone, Copy)]
pub struct MsgHeader<'a> {
    /// A fresh GUID per message.
    pub id: Guid,
    /// Byte length of the body range (UTF-16LE body + terminating NUL).
    pub body_length: usize,
    /// Sync or ASync.
    pub reply_mode: ReplyMode,
    /// The sender's host name (also used in `ReplyTo`).
    pub source_host: &'a str,
    /// `GUID:{smsid}` after registration.
    pub source_id: Option<Smsid>,
    /// e.g. [`endpoint::CLIENT_REGISTRATION`].
    pub target_endpoint: &'a str,
    /// The MP's host name.
    pub target_host: &'a str,
    /// When the message was built.
    pub sent_time: DateTime,
    /// Hook elements inside `<Hooks>` (already UTF-16LE, e.g. the clientauth hook); none → no `<Hooks>`.
    pub hooks: Option<&'a dyn Emit>,
}

impl Emit for MsgHeader<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        let mut w = XmlWriter::new(out);
        w.open("Msg")?;
        w.attr("SchemaVersion", "1.1")?;
        w.close()?;
        w.open("Body")?;
        w.attr("Type", "ByteRange")?;
        w.attr_u64("Length", self.body_length as u64)?;
        w.attr("Offset", "0")?;
        w.close_empty()?;
        w.element("CorrelationID", "{00000000-0000-0000-0000-000000000000}")?;
        if let Some(hooks) = self.hooks {
            w.raw("<Hooks>")?;
            hooks.emit(w.sink())?;
            w.raw("</Hooks>")?;
        }
        w.raw("<ID>")?;
        w.ascii(&self.id.to_braced())?;
        w.raw("</ID><Payload Type=\"inline\" /><Priority>0</Priority><Protocol>http</Protocol>")?;
        w.element(
            "ReplyMode",
            match self.reply_mode {
                ReplyMode::Sync => "Sync",
                ReplyMode::Async => "ASync",
            },
        )?;
        w.raw("<ReplyTo>direct:")?;
        w.text(self.source_host)?;
        w.raw(":SccmMessaging</ReplyTo><SentTime>")?;
        w.ascii(&self.sent_time.iso8601())?;
        w.raw("</SentTime>")?;
        if let Some(id) = self.source_id {
            w.raw("<SourceID>")?;
            w.ascii(&id.to_text())?;
            w.raw("</SourceID>")?;
        }
        w.element("SourceHost", self.source_host)?;
        w.raw("<TargetAddress>mp:")?;
        w.text(self.target_endpoint)?;
        w.raw("</TargetAddress>")?;
        w.element("TargetEndpoint", self.target_endpoint)?;
        w.element("TargetHost", self.target_host)?;
        w.raw("<Timeout>60000</Timeout></Msg>")
    }
}
