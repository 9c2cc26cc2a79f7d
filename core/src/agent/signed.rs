//! Signed messages after registration (docs/protocol.md §5): any body, wrapped into the `CCM_POST`
//! request that carries it, with `SourceID` and the `clientauth` hook.
//!
//! Building a [`SignedMessage`] costs one emission pass over the body (hash + count together,
//! [`payload_digest_with`]) and one ECDSA/RSA sign (`PayloadSignature`); `ClientIDSignature`
//! is the caller's cached [`ClientIdSignature`]. Sending it costs one pass per window ([`fill_window`]);
//! nothing of the body is ever held in RAM.
//!
//! The request is byte for byte what [`crate::agent::outbound::Post`] emits for the same header
//! with `hooks: Some(&clientauth)` (a test checks it); `SignedMessage` only keeps the hook next
//! to the header so the two cannot disagree, and knows its `Content-Length` without a second
//! pass over the body. It also knows where its body starts (its `Layout`), so window passes past
//! the request head and the `<Msg>` header skip them by length.

use crate::agent::registration::SigningIdentity;
use crate::config::AgentConfig;
use crate::guid::{Guid, Smsid};
use crate::http::request::RequestHead;
use crate::sign::hash::Digest;
use crate::sign::SignError;
use crate::sign::SignatureBytes;
use crate::sink::{emitted_len, Checkpoint, CountingSink, Emit, Overflow, Sink};
use crate::time::{DateTime, UnixTime};
use crate::wire::clientauth::{
    payload_digest_attached, payload_digest_with, ClientAuthHook, ClientIdSignature, PayloadDigest,
};
use crate::wire::header::{AttachmentRange, MsgHeader, ReplyMode};
use crate::wire::multipart::{Envelope, CONTENT_TYPE};
use crate::wire::report_framing::AttachedReport;

/// Who signs a message and whose `SourceID` it carries.
#[derive(Clone, Copy)]
pub struct MessageSigner<'a> {
    /// The key and certificate that sign (`PublicKey`): the client's own, or an ISV proxy's.
    pub identity: SigningIdentity<'a>,
    /// The cached `ClientIDSignature`, made with `identity`'s key over the `SourceID` SMSID.
    pub client_id: &'a ClientIdSignature,
    /// `ProxySMSID` (\[profile\]) when an ISV proxy signs for one of its clients.
    pub proxy_smsid: Option<Smsid>,
}

impl<'a> MessageSigner<'a> {
    /// A client signing its own messages.
    pub fn client(identity: SigningIdentity<'a>, client_id: &'a ClientIdSignature) -> Self {
        Self {
            identity,
            client_id,
            proxy_smsid: None,
        }
    }

    /// An ISV proxy (`proxy_smsid`, signing with `identity`) sending for the client whose SMSID
    /// `client_id` covers (computed with the proxy's key).
    pub fn proxy(
        identity: SigningIdentity<'a>,
        client_id: &'a ClientIdSignature,
        proxy_smsid: Smsid,
    ) -> Self {
        Self {
            identity,
            client_id,
            proxy_smsid: Some(proxy_smsid),
        }
    }

    /// The `SourceID` of the messages.
    pub fn source_id(&self) -> Smsid {
        self.client_id.smsid()
    }
}

/// Routing and identity of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MessageParams<'a> {
    /// Target endpoint (see [`crate::wire::header::endpoint`]).
    pub endpoint: &'a str,
    /// ASync for reports, Sync for policy.
    pub reply_mode: ReplyMode,
    /// The message ID (keep it across retries: the MP de-duplicates by it).
    pub message_id: Guid,
    /// `SentTime`.
    pub now: UnixTime,
}

/// Why a signed message could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SignedMessageError {
    /// The body refused to emit: a length overflowed, or an inventory description used an
    /// invalid XML name ([`crate::wire::report::is_xml_name`]).
    Body,
    /// The header could not be emitted (a length overflowed).
    Header,
    /// The signer failed.
    Sign(SignError),
}

impl core::fmt::Display for SignedMessageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Body => f.write_str(
                "the message body refused to emit (a length overflowed, or an inventory \
                 description used an invalid XML name)",
            ),
            Self::Header => {
                f.write_str("the message header could not be emitted (a length overflowed)")
            }
            Self::Sign(e) => write!(f, "signing the message failed: {e}"),
        }
    }
}

impl core::error::Error for SignedMessageError {}

/// One signed `CCM_POST`, ready to emit (any number of times, identically).
#[derive(Clone, Copy)]
pub struct SignedMessage<'a> {
    hook: ClientAuthHook<'a>,
    message_id: Guid,
    reply_mode: ReplyMode,
    source_host: &'a str,
    source_id: Smsid,
    endpoint: &'a str,
    target_host: &'a str,
    port: u16,
    sent_time: DateTime,
    body: &'a dyn Emit,
    layout: Layout,
    /// The attachment's range when `body` is a report's body + attachment stream.
    attachment: Option<AttachmentRange>,
}

/// An empty body: counting the envelope around it gives the envelope's own bytes.
pub(crate) struct NoBody;

impl Emit for NoBody {
    fn emit(&self, _: &mut dyn Sink) -> Result<(), Overflow> {
        Ok(())
    }
}

impl<'a> SignedMessage<'a> {
    /// Sign `body` (one pass: `PayloadSignature` over the octet-stream part, and its length) and
    /// assemble the request. `AuthSenderMachine` and `SourceHost` are `config.netbios_name`.
    pub fn new(
        config: &AgentConfig<'a>,
        signer: &MessageSigner<'a>,
        params: MessageParams<'a>,
        body: &'a dyn Emit,
    ) -> Result<Self, SignedMessageError> {
        Self::build(config, signer, params, body, None)
    }

    /// Sign a discovery or inventory report framed as body + attachment (docs/protocol.md §5), the
    /// attachment named `name`.
    pub fn new_attached(
        config: &AgentConfig<'a>,
        signer: &MessageSigner<'a>,
        params: MessageParams<'a>,
        report: &'a AttachedReport<'a>,
        name: Guid,
    ) -> Result<Self, SignedMessageError> {
        let range = AttachmentRange {
            offset: report.body_len(),
            length: report.attachment_len(),
            name,
        };
        Self::build(config, signer, params, report, Some(range))
    }

    // Hashing the body and assembling the message each run in a frame of their own (out of
    // line): only this small frame and the signature sit under the signing chain, which is the
    // deepest stack of every board phase.
    fn build(
        config: &AgentConfig<'a>,
        signer: &MessageSigner<'a>,
        params: MessageParams<'a>,
        body: &'a dyn Emit,
        attachment: Option<AttachmentRange>,
    ) -> Result<Self, SignedMessageError> {
        let digest = Self::digest(signer, body, attachment.is_some())?;
        // Signed into a slot of this frame: a signature returned by value is copied through
        // several temporaries here, each as large as the longest signature.
        let mut payload_signature =
            SignatureBytes::from_slice(&[]).ok_or(SignedMessageError::Body)?;
        Self::sign_into(signer, &digest.digest, &mut payload_signature)?;
        Self::assemble(
            config,
            signer,
            params,
            body,
            attachment,
            &payload_signature,
            digest.body_len,
        )
    }

    #[inline(never)]
    fn sign_into(
        signer: &MessageSigner<'a>,
        digest: &Digest,
        out: &mut SignatureBytes,
    ) -> Result<(), SignedMessageError> {
        // Matched, not `?`-mapped: each mapped `Result` would be one more signature-sized
        // temporary in this frame, which sits under the signing chain.
        match crate::sign::hash::sign_digest(signer.identity.signer, digest) {
            Ok(signature) => {
                *out = signature;
                Ok(())
            }
            Err(e) => Err(SignedMessageError::Sign(e)),
        }
    }

    /// One pass hashes (with the signer's hash) and counts the body.
    #[inline(never)]
    fn digest(
        signer: &MessageSigner<'a>,
        body: &'a dyn Emit,
        attached: bool,
    ) -> Result<PayloadDigest, SignedMessageError> {
        let hash = signer.identity.signer.signature_hash();
        if attached {
            payload_digest_attached(body, hash)
        } else {
            payload_digest_with(body, hash)
        }
        .map_err(|_| SignedMessageError::Body)
    }

    /// The message around the signed body: hook, header fields and the counted layout.
    #[inline(never)]
    fn assemble(
        config: &AgentConfig<'a>,
        signer: &MessageSigner<'a>,
        params: MessageParams<'a>,
        body: &'a dyn Emit,
        attachment: Option<AttachmentRange>,
        payload_signature: &SignatureBytes,
        body_len: usize,
    ) -> Result<Self, SignedMessageError> {
        let hook = ClientAuthHook {
            auth_sender_machine: config.netbios_name,
            signing_cert_der: signer.identity.cert_der,
            client_id_signature: signer.client_id.signature(),
            payload_signature: *payload_signature,
            hash_algorithm_oid: crate::sign::hash_algorithm_oid(signer.identity.signer),
            proxy_smsid: signer.proxy_smsid,
        };
        let mut msg = Self {
            hook,
            message_id: params.message_id,
            reply_mode: params.reply_mode,
            source_host: config.netbios_name,
            source_id: signer.source_id(),
            endpoint: params.endpoint,
            target_host: config.mp.host,
            port: config.mp.port,
            sent_time: params.now.to_datetime(),
            body,
            layout: Layout {
                body_start: 0,
                body_len,
                content_length: 0,
                attached: attachment.is_some(),
            },
            attachment,
        };
        // The envelope and the request head around the body, counted without it.
        let (host, port) = (msg.target_host, msg.port);
        msg.layout = Layout::new(
            &msg.header(),
            body_len,
            msg.attachment.is_some(),
            |content_length| {
                emitted_len(&RequestHead::ccm_post(
                    host,
                    Some(port),
                    CONTENT_TYPE,
                    content_length,
                ))
            },
        )
        .map_err(|_| SignedMessageError::Header)?;
        Ok(msg)
    }

    /// The `<Msg>` header, clientauth hook included.
    pub fn header(&self) -> MsgHeader<'_> {
        MsgHeader {
            attachment: self.attachment,
            id: self.message_id,
            body_length: self.body_length(),
            reply_mode: self.reply_mode,
            source_host: self.source_host,
            source_id: Some(self.source_id),
            target_endpoint: self.endpoint,
            target_host: self.target_host,
            sent_time: self.sent_time,
            hooks: Some(&self.hook),
        }
    }

    /// The clientauth hook (its `PayloadSignature` included).
    pub fn hook(&self) -> &ClientAuthHook<'a> {
        &self.hook
    }

    /// The message ID.
    pub fn message_id(&self) -> Guid {
        self.message_id
    }

    /// `SourceID`.
    pub fn source_id(&self) -> Smsid {
        self.source_id
    }

    /// The target endpoint.
    pub fn endpoint(&self) -> &'a str {
        self.endpoint
    }

    /// `<Body Length>`: the body's UTF-16LE bytes plus the NUL (with an attachment: the part of
    /// the stream before it, which ends in the NUL).
    pub fn body_length(&self) -> usize {
        match self.attachment {
            Some(a) => a.offset,
            // Cannot overflow: `Layout::new` added more than 2 to it.
            None => self.layout.body_len.saturating_add(2),
        }
    }

    /// The multipart body's length (`Content-Length`).
    pub fn content_length(&self) -> usize {
        self.layout.content_length
    }

    /// Bytes of the whole HTTP request (head + body), without emitting the body.
    pub fn request_length(&self) -> Result<usize, Overflow> {
        emitted_len(&self.head())?
            .checked_add(self.layout.content_length)
            .ok_or(Overflow)
    }

    fn head(&self) -> RequestHead<'a> {
        RequestHead::ccm_post(
            self.target_host,
            Some(self.port),
            CONTENT_TYPE,
            self.layout.content_length,
        )
    }
}

impl Emit for SignedMessage<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        let header = self.header();
        let envelope = Envelope {
            header: &header,
            body: self.body,
        };
        emit_request(out, &self.head(), &envelope, &self.layout)
    }
}

/// Where the parts of a request lie: what a window pass may skip without walking it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// Offset of the first body byte (the request head and the envelope's head come first).
    body_start: usize,
    /// The body's bytes (without the NUL that `<Body Length>` counts).
    body_len: usize,
    /// The multipart body's length (`Content-Length`).
    content_length: usize,
    /// The body is a body + attachment stream: it carries its NUL; the tail has none.
    attached: bool,
}

impl Layout {
    /// Count the envelope around a body of `body_len` bytes (its header walked once, the body not
    /// at all), then the request head announcing it (`head_len` of a `Content-Length`).
    fn new(
        header: &MsgHeader<'_>,
        body_len: usize,
        attached: bool,
        head_len: impl Fn(usize) -> Result<usize, Overflow>,
    ) -> Result<Self, Overflow> {
        let envelope = Envelope {
            header,
            body: &NoBody,
        };
        let mut c = CountingSink::default();
        envelope.emit_head(&mut c)?;
        let envelope_head = c.count;
        if attached {
            Envelope::emit_tail_attached(&mut c)?;
        } else {
            Envelope::emit_tail(&mut c)?;
        }
        let content_length = c.count.checked_add(body_len).ok_or(Overflow)?;
        Ok(Self {
            body_start: head_len(content_length)?
                .checked_add(envelope_head)
                .ok_or(Overflow)?,
            body_len,
            content_length,
            attached,
        })
    }
}

/// Emit `head` then `envelope`, laid out as `layout`. A sink that would drop everything before
/// the body unseen (a window pass past it, a counter) skips it by length, and the body as well
/// when it drops that too: the request head and the `<Msg>` header (GUIDs, dates, the clientauth
/// hook) are walked only by the passes whose window starts in them.
fn emit_request(
    out: &mut dyn Sink,
    head: &RequestHead<'_>,
    envelope: &Envelope<'_>,
    layout: &Layout,
) -> Result<(), Overflow> {
    if out.skippable() >= layout.body_start {
        out.skip(layout.body_start)?;
        if out.skippable() >= layout.body_len {
            out.skip(layout.body_len)?;
        } else {
            envelope.body.emit(out)?;
        }
    } else {
        head.emit(out)?;
        envelope.emit_head(out)?;
        envelope.body.emit(out)?;
    }
    if layout.attached {
        Envelope::emit_tail_attached(out)
    } else {
        Envelope::emit_tail(out)
    }
}

/// A sink that keeps stream offsets `[start, start + buf.len())` and *stops* the emission (with
/// [`Overflow`]) once that window is full, so producing window `k` costs the bytes up to its end
/// rather than the whole message; with a [`Checkpoint`] from the previous pass it also jumps over
/// the repeated items that lie wholly before its window.
struct StopWindow<'b> {
    buf: &'b mut [u8],
    start: usize,
    pos: usize,
    filled: usize,
    checkpoint: Option<&'b mut Checkpoint>,
    /// Offset of item 0 of the sequence being emitted.
    sequence: usize,
}

impl Sink for StopWindow<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let chunk_start = self.pos;
        self.pos = self.pos.checked_add(bytes.len()).ok_or(Overflow)?;
        let win_end = self.start.saturating_add(self.buf.len());
        let from = chunk_start.max(self.start);
        let to = self.pos.min(win_end);
        if from < to {
            let src = bytes.get(from - chunk_start..to - chunk_start);
            let dst = self.buf.get_mut(from - self.start..to - self.start);
            if let (Some(src), Some(dst)) = (src, dst) {
                dst.copy_from_slice(src);
                self.filled = self.filled.max(to - self.start);
            }
        }
        if self.pos >= win_end {
            // Window complete: stop here (not an error for `fill_window`).
            return Err(Overflow);
        }
        Ok(())
    }
    fn skippable(&self) -> usize {
        self.start.saturating_sub(self.pos)
    }
    fn skip(&mut self, len: usize) -> Result<(), Overflow> {
        if len > self.skippable() {
            return Err(Overflow);
        }
        self.pos = self.pos.saturating_add(len);
        Ok(())
    }
    fn sequence_item(&mut self, index: usize) -> usize {
        let Some(checkpoint) = self.checkpoint.as_deref_mut() else {
            return 0;
        };
        if index == 0 {
            self.sequence = self.pos;
        }
        let next_start = self.start.saturating_add(self.buf.len());
        match checkpoint.visit(self.sequence, index, self.pos, self.start, next_start) {
            Some((leave_out, offset)) => {
                self.pos = offset;
                leave_out
            }
            None => 0,
        }
    }
}

/// Emit the bytes of `item` at offsets `[offset, offset + buf.len())` into `buf`; returns how many
/// were written: `buf.len()` for a full window, fewer for the last one, 0 past the end. The
/// emission stops as soon as the window is full. An empty `buf` is refused.
pub fn fill_window(item: &dyn Emit, offset: usize, buf: &mut [u8]) -> Result<usize, Overflow> {
    fill_window_at(item, offset, buf, None)
}

/// [`fill_window`] for a driver that streams one message window after window: `checkpoint`
/// (fresh for each message, [`Checkpoint::default`]) carries from one pass to the next where the
/// message's repeated items stand, so each pass jumps over those before its window.
pub fn fill_window_at(
    item: &dyn Emit,
    offset: usize,
    buf: &mut [u8],
    checkpoint: Option<&mut Checkpoint>,
) -> Result<usize, Overflow> {
    if buf.is_empty() {
        return Err(Overflow);
    }
    let cap = buf.len();
    let mut w = StopWindow {
        buf,
        start: offset,
        pos: 0,
        filled: 0,
        checkpoint,
        sequence: 0,
    };
    match item.emit(&mut w) {
        Ok(()) => Ok(w.filled),
        Err(Overflow) if w.filled == cap => Ok(cap),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::agent::outbound::{Post, PostParams};
    use crate::config::SiteMode;
    use crate::sign::P256Signer;
    use crate::sink::SliceSink;
    use crate::wire::header::endpoint;
    use crate::wire::report::{InstanceContent, InstanceWriter, Namespace, Report, ReportIdentity};
    use p256::ecdsa::signature::Verifier;
    use std::vec;
    use std::vec::Vec;

    fn config() -> AgentConfig<'static> {
        AgentConfig::new(
            "PS1",
            SiteMode::Mixed,
            "http://mp.corp.example:8080",
            "PRN-1",
            "prn-1.corp.example",
        )
        .unwrap()
    }

    fn smsid() -> Smsid {
        Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap()
    }

    fn to_vec(item: &dyn Emit) -> Vec<u8> {
        let mut v = vec![0u8; emitted_len(item).unwrap()];
        let mut s = SliceSink::new(&mut v);
        item.emit(&mut s).unwrap();
        v
    }

    /// `item` streamed through windows of `cap` bytes as the drivers do (with a checkpoint).
    fn streamed(item: &dyn Emit, cap: usize) -> Vec<u8> {
        let mut joined = Vec::new();
        let mut buf = vec![0u8; cap];
        let mut checkpoint = Checkpoint::default();
        loop {
            let n = fill_window_at(item, joined.len(), &mut buf, Some(&mut checkpoint)).unwrap();
            joined.extend_from_slice(&buf[..n]);
            if n < cap {
                return joined;
            }
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    fn inventory(w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        for i in 0..40u64 {
            w.instance(InstanceContent::New, Namespace::Cimv2, "Win32_Thing", |p| {
                p.prop_u64("Index", i)
            })?;
        }
        Ok(())
    }

    #[test]
    fn same_bytes_as_post_with_the_hook_and_lengths_are_right() {
        let signer = P256Signer::from_secret_bytes(&[5; 32]).unwrap();
        let cert = [0x30u8, 0x03, 0x02, 0x01, 0x00];
        let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
        let ms = MessageSigner::client(
            SigningIdentity {
                signer: &signer,
                cert_der: &cert,
            },
            &cid,
        );
        let report = Report::discovery(
            ReportIdentity::new(smsid(), "PRN-1"),
            UnixTime(1_795_428_000).to_datetime(),
            &inventory,
        );
        let params = MessageParams {
            endpoint: endpoint::DDR,
            reply_mode: ReplyMode::Async,
            message_id: Guid([0x11; 16]),
            now: UnixTime(1_795_428_000),
        };
        let cfg = config();
        let msg = SignedMessage::new(&cfg, &ms, params, &report).unwrap();
        let bytes = to_vec(&msg);
        assert_eq!(msg.request_length().unwrap(), bytes.len());

        let hook = *msg.hook();
        let post = Post::new(
            &cfg,
            PostParams {
                endpoint: endpoint::DDR,
                reply_mode: ReplyMode::Async,
                source_id: Some(smsid()),
                message_id: Guid([0x11; 16]),
                now: UnixTime(1_795_428_000),
                hooks: Some(&hook),
            },
            &report,
        )
        .unwrap();
        assert_eq!(to_vec(&post), bytes);
        assert_eq!(post.content_length(), msg.content_length());

        // Window passes that skip the request head and the `<Msg>` header by length (those
        // starting at or past the body) yield the same bytes as those that walk them.
        let body_at = find(&bytes, b"application/octet-stream\r\n\r\n") + 28;
        assert_eq!(msg.layout.body_start, body_at);
        for item in [&msg as &dyn Emit, &post] {
            assert_eq!(emitted_len(item).unwrap(), bytes.len());
            for cap in [
                1,
                2,
                7,
                64,
                511,
                512,
                body_at,
                body_at + 1,
                4096,
                bytes.len() + 1,
            ] {
                assert_eq!(streamed(item, cap), bytes, "window {cap}");
            }
            // A pass starting exactly at the body, and one past its end, in one window each.
            let tail = bytes.len() - body_at;
            let mut buf = vec![0u8; tail];
            assert_eq!(fill_window(item, body_at, &mut buf).unwrap(), tail);
            assert_eq!(buf, bytes[body_at..]);
            let mut buf = [0u8; 8];
            let end = bytes.len() - 3;
            assert_eq!(fill_window(item, end, &mut buf).unwrap(), 3);
            assert_eq!(&buf[..3], b"Z--");
            assert_eq!(fill_window(item, bytes.len(), &mut buf).unwrap(), 0);
        }

        // PayloadSignature verifies over exactly the octet part as sent.
        let octet_hdr = b"content-type: application/octet-stream\r\n\r\n";
        let start = find(&bytes, octet_hdr) + octet_hdr.len();
        let end = bytes.len() - b"\r\n--aAbBcCdDv1234567890VxXyYzZ--".len();
        let octets = &bytes[start..end];
        assert_eq!(octets.len(), msg.body_length() + 2);
        assert!(octets.ends_with(&[0, 0, b'\r', b'\n']));
        let sig = p256::ecdsa::Signature::from_slice(hook.payload_signature.as_bytes()).unwrap();
        signer.verifying_key().verify(octets, &sig).unwrap();
        assert!(signer
            .verifying_key()
            .verify(&octets[..octets.len() - 2], &sig)
            .is_err());
    }

    #[test]
    fn fill_window_reassembles_and_stops_early() {
        let items = [b"abc".as_slice(), b"", b"defghij", b"k"];
        let f = |out: &mut dyn Sink| {
            for i in items {
                out.write(i)?;
            }
            Ok(())
        };
        let whole = to_vec(&f);
        for cap in 1..=13 {
            let mut joined = Vec::new();
            let mut buf = vec![0u8; cap];
            loop {
                let n = fill_window(&f, joined.len(), &mut buf).unwrap();
                joined.extend_from_slice(&buf[..n]);
                if n < cap {
                    break;
                }
            }
            assert_eq!(joined, whole, "cap {cap}");
        }
        assert_eq!(fill_window(&f, 0, &mut []), Err(Overflow));
        // A real failure inside a window is reported.
        let failing = |out: &mut dyn Sink| {
            out.write(b"abc")?;
            Err(Overflow)
        };
        let mut buf = [0u8; 8];
        assert_eq!(fill_window(&failing, 0, &mut buf), Err(Overflow));
        assert_eq!(fill_window(&failing, 0, &mut buf[..2]), Ok(2));
        assert_eq!(fill_window(&failing, 2, &mut buf[..2]), Err(Overflow));
    }

    /// 40 instances whose property closure counts how often it runs.
    struct Counted(std::cell::Cell<usize>);

    impl crate::wire::report::InstanceSource for Counted {
        fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
            for i in 0..40u64 {
                w.instance(InstanceContent::New, Namespace::Cimv2, "Win32_Thing", |p| {
                    self.0.set(self.0.get() + 1);
                    p.prop_u64("Index", i)?;
                    p.prop("Name", "a thing with a name long enough to span windows")
                })?;
            }
            Ok(())
        }
    }

    #[test]
    fn checkpoints_jump_over_instances_before_the_window() {
        let source = Counted(std::cell::Cell::new(0));
        let report = Report::discovery(
            ReportIdentity::new(smsid(), "PRN-1"),
            UnixTime(1_795_428_000).to_datetime(),
            &source,
        );
        // Two instance sequences in one body: a checkpoint of one never serves the other.
        let twice = |out: &mut dyn Sink| {
            report.emit(out)?;
            report.emit(out)
        };
        for item in [&report as &dyn Emit, &twice] {
            let whole = to_vec(item);
            for cap in [1, 3, 64, 100, 511, 4096, whole.len() + 1] {
                let mut joined = Vec::new();
                let mut buf = vec![0u8; cap];
                let mut checkpoint = Checkpoint::default();
                let mut passes = 0;
                source.0.set(0);
                loop {
                    let n = fill_window_at(item, joined.len(), &mut buf, Some(&mut checkpoint))
                        .unwrap();
                    passes += 1;
                    joined.extend_from_slice(&buf[..n]);
                    if n < cap {
                        break;
                    }
                }
                assert_eq!(joined, whole, "window {cap}");
                // With one sequence, each pass runs the closures of the instances from its
                // checkpoint to its window's end only (at most two), not all those before it.
                let runs = source.0.get();
                if std::ptr::eq(item, &report as &dyn Emit) {
                    assert!(
                        runs <= 40 + 2 * passes,
                        "window {cap}: {runs} runs, {passes} passes"
                    );
                }
            }
            // Without a checkpoint every pass walks all the instances before its window.
            source.0.set(0);
            assert_eq!(streamed_without_checkpoint(item, 64), whole);
            assert!(source.0.get() > 40 * 40);
        }
    }

    fn streamed_without_checkpoint(item: &dyn Emit, cap: usize) -> Vec<u8> {
        let mut joined = Vec::new();
        let mut buf = vec![0u8; cap];
        loop {
            let n = fill_window(item, joined.len(), &mut buf).unwrap();
            joined.extend_from_slice(&buf[..n]);
            if n < cap {
                return joined;
            }
        }
    }

    #[test]
    fn proxy_messages_name_the_client_and_carry_proxy_smsid() {
        let proxy_key = P256Signer::from_secret_bytes(&[6; 32]).unwrap();
        let proxy_id = Smsid(Guid([0x22; 16]));
        let cid = ClientIdSignature::compute(&proxy_key, smsid()).unwrap();
        let ms = MessageSigner::proxy(
            SigningIdentity {
                signer: &proxy_key,
                cert_der: &[0xAA],
            },
            &cid,
            proxy_id,
        );
        assert_eq!(ms.source_id(), smsid());
        let body = |out: &mut dyn Sink| crate::wire::xml::XmlWriter::with(out, |w| w.raw("<x/>"));
        let cfg = config();
        let msg = SignedMessage::new(
            &cfg,
            &ms,
            MessageParams {
                endpoint: endpoint::STATUS,
                reply_mode: ReplyMode::Async,
                message_id: Guid([0x33; 16]),
                now: UnixTime(0),
            },
            &body,
        )
        .unwrap();
        let bytes = to_vec(&msg);
        let u = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        find(
            &bytes,
            &u("<SourceID>GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42</SourceID>"),
        );
        find(
            &bytes,
            &u("<Property Name=\"ProxySMSID\">GUID:22222222-2222-2222-2222-222222222222</Property>"),
        );
        find(&bytes, &u("<Property Name=\"PublicKey\">AA</Property>"));
        assert_eq!(msg.source_id(), smsid());
    }

    #[test]
    fn a_refusing_body_is_a_build_error() {
        let signer = P256Signer::from_secret_bytes(&[5; 32]).unwrap();
        let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
        let ms = MessageSigner::client(
            SigningIdentity {
                signer: &signer,
                cert_der: &[],
            },
            &cid,
        );
        let bad = |_: &mut dyn Sink| Err(Overflow);
        let cfg = config();
        let r = SignedMessage::new(
            &cfg,
            &ms,
            MessageParams {
                endpoint: endpoint::DDR,
                reply_mode: ReplyMode::Async,
                message_id: Guid::default(),
                now: UnixTime(0),
            },
            &bad,
        );
        assert_eq!(r.err(), Some(SignedMessageError::Body));
    }
}
