//! The `<Msg>` header of every request (docs/protocol.md §3), element order as the public tools
//! send it.

use crate::guid::{Guid, Smsid};
use crate::sink::{Emit, Overflow, Sink};
use crate::time::DateTime;
use crate::wire::xml::{ascii_str, fmt_u64, markup, raw, Escaping, XmlWriter};

/// Whether the MP answers with a reply message (registration, policy) or only the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReplyMode {
    /// Request/reply.
    Sync,
    /// One-way post (DDR, inventory, status, state).
    Async,
}

/// Endpoint names (docs/protocol.md §3).
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
    /// The `<Attachment>` range of a report sent as body + attachment (docs/protocol.md §5).
    pub attachment: Option<AttachmentRange>,
}

/// `<Attachment Type="ByteRange" Offset Length Name/>`: where the attachment lies in the octet
/// stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AttachmentRange {
    /// Its first byte (the body's length).
    pub offset: usize,
    /// Its bytes.
    pub length: usize,
    /// `Name`.
    pub name: Guid,
}

impl Emit for MsgHeader<'_> {
    // Few writer calls (each is one sink write): the pieces between the variable parts go in one.
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| {
            let mut num = [0u8; 20];
            w.parts(&[
                markup!("<Msg SchemaVersion=\"1.1\"><Body Type=\"ByteRange\" Length=\""),
                (fmt_u64(self.body_length as u64, &mut num), Escaping::Attr),
                markup!("\" Offset=\"0\" />"),
            ])?;
            if let Some(a) = self.attachment {
                let mut off = [0u8; 20];
                let mut len = [0u8; 20];
                let name = a.name.to_braced();
                w.parts(&[
                    markup!("<Attachment Type=\"ByteRange\" Offset=\""),
                    (fmt_u64(a.offset as u64, &mut off), Escaping::Attr),
                    markup!("\" Length=\""),
                    (fmt_u64(a.length as u64, &mut len), Escaping::Attr),
                    markup!("\" Name=\""),
                    (ascii_str(&name)?, Escaping::Raw),
                    markup!("\" />"),
                ])?;
            }
            raw!(
                w,
                "<CorrelationID>{00000000-0000-0000-0000-000000000000}</CorrelationID>"
            )?;
            if let Some(hooks) = self.hooks {
                raw!(w, "<Hooks>")?;
                w.nested(hooks)?;
                raw!(w, "</Hooks>")?;
            }
            let id = self.id.to_braced();
            let sent = self.sent_time.iso8601();
            w.parts(&[
                markup!("<ID>"),
                (ascii_str(&id)?, Escaping::Raw),
                markup!("</ID><Payload Type=\"inline\" /><Priority>0</Priority><Protocol>http</Protocol><ReplyMode>"),
                (
                    match self.reply_mode {
                        ReplyMode::Sync => "Sync",
                        ReplyMode::Async => "ASync",
                    },
                    Escaping::Text,
                ),
                markup!("</ReplyMode><ReplyTo>direct:"),
                (self.source_host, Escaping::Text),
                markup!(":SccmMessaging</ReplyTo><SentTime>"),
                (ascii_str(&sent)?, Escaping::Raw),
                markup!("</SentTime>"),
            ])?;
            if let Some(id) = self.source_id {
                w.element_ascii("SourceID", &id.to_text())?;
            }
            w.parts(&[
                markup!("<SourceHost>"),
                (self.source_host, Escaping::Text),
                markup!("</SourceHost><TargetAddress>mp:"),
                (self.target_endpoint, Escaping::Text),
                markup!("</TargetAddress><TargetEndpoint>"),
                (self.target_endpoint, Escaping::Text),
                markup!("</TargetEndpoint><TargetHost>"),
                (self.target_host, Escaping::Text),
                markup!("</TargetHost><Timeout>60000</Timeout></Msg>"),
            ])
        })
    }
}
