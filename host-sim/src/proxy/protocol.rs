//! The compact client protocol between constrained devices and the ISV proxy
//! (`docs/proxy-protocol.md`): binary, length-prefixed, versioned.
//!
//! ```text
//! frame   = magic "MPX" | version u8 (1) | type u8 | length u32 BE | payload (length bytes)
//! str     = len u16 BE | UTF-8 bytes
//! pairs   = count u16 BE | (str name, str value) * count
//! ```
//!
//! The decoder is strict and total: every length is checked against what remains and against
//! the limits below, trailing bytes are refused, and any input yields a [`Frame`] or a
//! [`ProtoError`] — never a panic (a fuzz target holds it to that).

use std::fmt;

/// The frame magic.
pub const MAGIC: [u8; 3] = *b"MPX";
/// The protocol version this proxy speaks.
pub const VERSION: u8 = 1;
/// Bytes of the frame header.
pub const HEADER_LEN: usize = 9;
/// Largest payload accepted (either direction).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest string field (bytes of UTF-8).
pub const MAX_STR: usize = 1024;
/// Most `(name, value)` pairs in one frame (inventory items, status properties, policies).
pub const MAX_PAIRS: usize = 256;
/// Longest device ID: `[A-Za-z0-9._-]{1,64}` (it names a directory in the proxy's state).
pub const MAX_DEVICE_ID: usize = 64;
/// Longest device name (NetBIOS-like: `[A-Za-z0-9-]{1,15}`).
pub const MAX_NAME: usize = 15;

/// Frame type codes.
pub mod kind {
    /// Client → proxy: who I am.
    pub const HELLO: u8 = 0x01;
    /// Client → proxy: register me (through you).
    pub const REGISTER: u8 = 0x02;
    /// Client → proxy: heartbeat (a discovery record).
    pub const HEARTBEAT: u8 = 0x03;
    /// Client → proxy: hardware inventory items.
    pub const INVENTORY: u8 = 0x04;
    /// Client → proxy: a status message.
    pub const STATUS: u8 = 0x05;
    /// Client → proxy: a state message.
    pub const STATE: u8 = 0x06;
    /// Client → proxy: which policies are assigned to me?
    pub const POLICY_REQUEST: u8 = 0x07;
    /// Proxy → client: the request was done (a data frame: delivered, detail `{GUID}`; or kept
    /// in the proxy's queue because the MP cannot be reached, detail `queued {GUID}`).
    pub const ACK: u8 = 0x80;
    /// Proxy → client: answer to `REGISTER`.
    pub const REGISTER_RESULT: u8 = 0x82;
    /// Proxy → client: answer to `POLICY_REQUEST`.
    pub const POLICY_LIST: u8 = 0x87;
    /// Either way: something went wrong.
    pub const ERROR: u8 = 0xFF;
}

/// Error codes carried in [`Frame::Error`].
pub mod code {
    /// The frame could not be decoded (the connection is closed after it).
    pub const MALFORMED: u16 = 1;
    /// Another protocol version (the connection is closed after it).
    pub const UNSUPPORTED_VERSION: u16 = 2;
    /// A frame larger than [`super::MAX_PAYLOAD`] (the connection is closed after it).
    pub const TOO_LARGE: u16 = 3;
    /// A frame that is valid but not allowed now (e.g. data before `HELLO` or `REGISTER`).
    pub const SEQUENCE: u16 = 4;
    /// A field's value is not acceptable (e.g. an invalid device ID).
    pub const INVALID: u16 = 5;
    /// The client is not registered (send `REGISTER` first) or its registration is pending.
    pub const NOT_REGISTERED: u16 = 6;
    /// The MP refused the message or registration (the text says why).
    pub const MP_REFUSED: u16 = 7;
    /// The MP could not be reached (`REGISTER`, `POLICY_REQUEST`) or the device's queue is full;
    /// try again later. A data frame the MP cannot take now is queued and acknowledged instead.
    pub const MP_UNAVAILABLE: u16 = 8;
    /// The proxy failed internally.
    pub const INTERNAL: u16 = 9;
}

/// `RegisterResult` statuses (as the MP's, docs/protocol.md §4).
pub mod reg_status {
    /// Registered and approved.
    pub const REGISTERED: u8 = 0;
    /// Registered, approval pending.
    pub const PENDING: u8 = 1;
    /// The site rejected the registration.
    pub const REJECTED: u8 = 3;
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `HELLO`: the device's stable ID and its name.
    Hello {
        /// `[A-Za-z0-9._-]{1,64}`.
        device_id: String,
        /// `[A-Za-z0-9-]{1,15}`.
        name: String,
    },
    /// `REGISTER` (empty payload).
    Register,
    /// `HEARTBEAT` (empty payload).
    Heartbeat,
    /// `INVENTORY`: items as `(name, value)` pairs.
    Inventory {
        /// The items.
        items: Vec<(String, String)>,
    },
    /// `STATUS`: a message type and its properties.
    Status {
        /// e.g. `device-online`.
        message_type: String,
        /// Properties.
        properties: Vec<(String, String)>,
    },
    /// `STATE`: a topic and its state.
    State {
        /// Topic ID.
        topic: String,
        /// State ID.
        state: u32,
    },
    /// `POLICY_REQUEST` (empty payload).
    PolicyRequest,
    /// `ACK`: which frame type was done, and a detail (e.g. the MP message ID).
    Ack {
        /// The acknowledged frame type.
        of: u8,
        /// Detail text.
        detail: String,
    },
    /// `REGISTER_RESULT`.
    RegisterResult {
        /// [`reg_status`].
        status: u8,
        /// `GUID:…` (empty when rejected).
        smsid: String,
    },
    /// `POLICY_LIST`: `(policy ID, version)` pairs.
    PolicyList {
        /// The assigned policies.
        policies: Vec<(String, String)>,
    },
    /// `ERROR`.
    Error {
        /// [`code`].
        code: u16,
        /// Human-readable reason.
        text: String,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// Fewer bytes than the header or the declared length.
    Truncated,
    /// The magic is not `MPX`.
    BadMagic,
    /// A version other than [`VERSION`].
    UnsupportedVersion(u8),
    /// Declared length above [`MAX_PAYLOAD`].
    TooLarge(u64),
    /// An unknown frame type.
    UnknownType(u8),
    /// The payload does not match its type's layout.
    Malformed(&'static str),
}

impl ProtoError {
    /// The [`code`] an `ERROR` frame reports it with.
    pub fn code(&self) -> u16 {
        match self {
            ProtoError::UnsupportedVersion(_) => code::UNSUPPORTED_VERSION,
            ProtoError::TooLarge(_) => code::TOO_LARGE,
            _ => code::MALFORMED,
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Truncated => write!(f, "truncated frame"),
            ProtoError::BadMagic => write!(f, "bad magic (expected \"MPX\")"),
            ProtoError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported protocol version {v} (this proxy speaks {VERSION})"
                )
            }
            ProtoError::TooLarge(n) => {
                write!(f, "frame payload of {n} bytes exceeds {MAX_PAYLOAD}")
            }
            ProtoError::UnknownType(t) => write!(f, "unknown frame type 0x{t:02X}"),
            ProtoError::Malformed(what) => write!(f, "malformed payload: {what}"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// A checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Frame type.
    pub kind: u8,
    /// Payload length (≤ [`MAX_PAYLOAD`]).
    pub len: usize,
}

/// Check the 9-byte header (magic, version, size limit; the type is checked with the payload).
pub fn decode_header(b: &[u8]) -> Result<Header, ProtoError> {
    let h: &[u8; HEADER_LEN] = b
        .get(..HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(ProtoError::Truncated)?;
    let [m0, m1, m2, version, kind, l0, l1, l2, l3] = *h;
    if [m0, m1, m2] != MAGIC {
        return Err(ProtoError::BadMagic);
    }
    if version != VERSION {
        return Err(ProtoError::UnsupportedVersion(version));
    }
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    let len_usize = usize::try_from(len).map_err(|_| ProtoError::TooLarge(u64::from(len)))?;
    if len_usize > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge(u64::from(len)));
    }
    Ok(Header {
        kind,
        len: len_usize,
    })
}

/// Decode one whole frame at the start of `b`; returns it and the bytes it took.
pub fn decode(b: &[u8]) -> Result<(Frame, usize), ProtoError> {
    let h = decode_header(b)?;
    let end = HEADER_LEN
        .checked_add(h.len)
        .ok_or(ProtoError::TooLarge(h.len as u64))?;
    let payload = b.get(HEADER_LEN..end).ok_or(ProtoError::Truncated)?;
    Ok((decode_payload(h.kind, payload)?, end))
}

/// A cursor over a payload.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtoError> {
        if n > self.b.len() {
            return Err(ProtoError::Malformed(what));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ProtoError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ProtoError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes(s.try_into().unwrap_or([0, 0])))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ProtoError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes(s.try_into().unwrap_or([0; 4])))
    }

    fn str(&mut self, what: &'static str) -> Result<String, ProtoError> {
        let n = usize::from(self.u16(what)?);
        if n > MAX_STR {
            return Err(ProtoError::Malformed("string longer than 1024 bytes"));
        }
        let s = self.take(n, what)?;
        let s = std::str::from_utf8(s).map_err(|_| ProtoError::Malformed("string not UTF-8"))?;
        if s.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ProtoError::Malformed("control character in a string"));
        }
        Ok(s.to_owned())
    }

    fn pairs(&mut self, what: &'static str) -> Result<Vec<(String, String)>, ProtoError> {
        let n = usize::from(self.u16(what)?);
        if n > MAX_PAIRS {
            return Err(ProtoError::Malformed("more than 256 pairs"));
        }
        // Each pair takes at least 4 bytes: refuse impossible counts before allocating.
        if n.saturating_mul(4) > self.b.len() {
            return Err(ProtoError::Malformed(what));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.str(what)?;
            let value = self.str(what)?;
            v.push((name, value));
        }
        Ok(v)
    }

    fn end(self) -> Result<(), ProtoError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Malformed("trailing bytes after the payload"))
        }
    }
}

/// Decode a payload of type `kind`.
pub fn decode_payload(kind: u8, payload: &[u8]) -> Result<Frame, ProtoError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge(payload.len() as u64));
    }
    let mut r = Reader { b: payload };
    let frame = match kind {
        kind::HELLO => Frame::Hello {
            device_id: r.str("hello device id")?,
            name: r.str("hello name")?,
        },
        kind::REGISTER => Frame::Register,
        kind::HEARTBEAT => Frame::Heartbeat,
        kind::INVENTORY => Frame::Inventory {
            items: r.pairs("inventory items")?,
        },
        kind::STATUS => Frame::Status {
            message_type: r.str("status type")?,
            properties: r.pairs("status properties")?,
        },
        kind::STATE => Frame::State {
            topic: r.str("state topic")?,
            state: r.u32("state id")?,
        },
        kind::POLICY_REQUEST => Frame::PolicyRequest,
        kind::ACK => Frame::Ack {
            of: r.u8("ack type")?,
            detail: r.str("ack detail")?,
        },
        kind::REGISTER_RESULT => Frame::RegisterResult {
            status: r.u8("register status")?,
            smsid: r.str("register smsid")?,
        },
        kind::POLICY_LIST => Frame::PolicyList {
            policies: r.pairs("policy list")?,
        },
        kind::ERROR => Frame::Error {
            code: r.u16("error code")?,
            text: r.str("error text")?,
        },
        other => return Err(ProtoError::UnknownType(other)),
    };
    r.end()?;
    Ok(frame)
}

/// Whether `id` is a valid device ID.
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && id != "."
        && id != ".."
}

/// Whether `name` is a valid device name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Encoding truncates to the limit (on a char boundary) rather than emitting a bad frame.
    let mut n = s.len().min(MAX_STR);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..n]);
}

fn put_pairs(out: &mut Vec<u8>, pairs: &[(String, String)]) {
    let n = pairs.len().min(MAX_PAIRS);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    for (a, b) in &pairs[..n] {
        put_str(out, a);
        put_str(out, b);
    }
}

impl Frame {
    /// The frame type code.
    pub fn kind(&self) -> u8 {
        match self {
            Frame::Hello { .. } => kind::HELLO,
            Frame::Register => kind::REGISTER,
            Frame::Heartbeat => kind::HEARTBEAT,
            Frame::Inventory { .. } => kind::INVENTORY,
            Frame::Status { .. } => kind::STATUS,
            Frame::State { .. } => kind::STATE,
            Frame::PolicyRequest => kind::POLICY_REQUEST,
            Frame::Ack { .. } => kind::ACK,
            Frame::RegisterResult { .. } => kind::REGISTER_RESULT,
            Frame::PolicyList { .. } => kind::POLICY_LIST,
            Frame::Error { .. } => kind::ERROR,
        }
    }

    /// An `ERROR` frame.
    pub fn error(code: u16, text: impl Into<String>) -> Frame {
        Frame::Error {
            code,
            text: text.into(),
        }
    }

    /// The whole frame, header included. Fields beyond the limits are cut to them (so an
    /// encoded frame always decodes).
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        match self {
            Frame::Hello { device_id, name } => {
                put_str(&mut p, device_id);
                put_str(&mut p, name);
            }
            Frame::Register | Frame::Heartbeat | Frame::PolicyRequest => {}
            Frame::Inventory { items } => put_pairs(&mut p, items),
            Frame::Status {
                message_type,
                properties,
            } => {
                put_str(&mut p, message_type);
                put_pairs(&mut p, properties);
            }
            Frame::State { topic, state } => {
                put_str(&mut p, topic);
                p.extend_from_slice(&state.to_be_bytes());
            }
            Frame::Ack { of, detail } => {
                p.push(*of);
                put_str(&mut p, detail);
            }
            Frame::RegisterResult { status, smsid } => {
                p.push(*status);
                put_str(&mut p, smsid);
            }
            Frame::PolicyList { policies } => put_pairs(&mut p, policies),
            Frame::Error { code, text } => {
                p.extend_from_slice(&code.to_be_bytes());
                put_str(&mut p, text);
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + p.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind());
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(&p);
        out
    }
}

/// Reading a frame from a stream failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection cleanly between frames.
    Closed,
    /// The transport failed (or the peer closed inside a frame).
    Io(std::io::Error),
    /// The bytes are not a valid frame.
    Proto(ProtoError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => write!(f, "connection closed"),
            ReadError::Io(e) => write!(f, "i/o: {e}"),
            ReadError::Proto(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Read one frame (header first: an oversized or foreign frame is refused before its payload
/// is read).
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Result<Frame, ReadError> {
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut h[got..]).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(if got == 0 {
                ReadError::Closed
            } else {
                ReadError::Proto(ProtoError::Truncated)
            });
        }
        got += n;
    }
    let head = decode_header(&h).map_err(ReadError::Proto)?;
    let mut payload = vec![0u8; head.len];
    r.read_exact(&mut payload).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ReadError::Proto(ProtoError::Truncated)
        } else {
            ReadError::Io(e)
        }
    })?;
    decode_payload(head.kind, &payload).map_err(ReadError::Proto)
}

/// Write one frame.
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    frame: &Frame,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(&frame.encode()).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames() -> Vec<Frame> {
        let pairs = vec![("a".to_string(), "1".to_string()), ("ü".into(), "".into())];
        vec![
            Frame::Hello {
                device_id: "dev-1".into(),
                name: "THING-1".into(),
            },
            Frame::Register,
            Frame::Heartbeat,
            Frame::Inventory {
                items: pairs.clone(),
            },
            Frame::Status {
                message_type: "device-online".into(),
                properties: pairs.clone(),
            },
            Frame::State {
                topic: "fw-update".into(),
                state: 0xDEAD_BEEF,
            },
            Frame::PolicyRequest,
            Frame::Ack {
                of: kind::HEARTBEAT,
                detail: "{X}".into(),
            },
            Frame::RegisterResult {
                status: 0,
                smsid: "GUID:1".into(),
            },
            Frame::PolicyList { policies: pairs },
            Frame::error(code::INVALID, "nope"),
        ]
    }

    #[test]
    fn every_frame_round_trips() {
        for f in all_frames() {
            let b = f.encode();
            assert_eq!(&b[..3], b"MPX");
            assert_eq!(b[3], VERSION);
            assert_eq!(decode(&b).unwrap(), (f.clone(), b.len()), "{f:?}");
            // Every strict prefix is truncated, never a frame or a panic.
            for cut in 0..b.len() {
                assert!(decode(&b[..cut]).is_err(), "{f:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn wire_layout_is_as_documented() {
        let b = Frame::Hello {
            device_id: "d".into(),
            name: "N".into(),
        }
        .encode();
        assert_eq!(
            b,
            [b'M', b'P', b'X', 1, 0x01, 0, 0, 0, 6, 0, 1, b'd', 0, 1, b'N']
        );
    }

    #[test]
    fn header_errors() {
        let mut b = Frame::Heartbeat.encode();
        b[0] = b'X';
        assert_eq!(decode(&b), Err(ProtoError::BadMagic));
        let mut b = Frame::Heartbeat.encode();
        b[3] = 2;
        assert_eq!(decode(&b), Err(ProtoError::UnsupportedVersion(2)));
        assert_eq!(
            ProtoError::UnsupportedVersion(2).code(),
            code::UNSUPPORTED_VERSION
        );
        let mut b = Frame::Heartbeat.encode();
        b[4] = 0x42;
        assert_eq!(decode(&b), Err(ProtoError::UnknownType(0x42)));
        let b = [b'M', b'P', b'X', 1, 1, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(decode(&b), Err(ProtoError::TooLarge(0xFFFF_FFFF)));
        assert_eq!(ProtoError::TooLarge(1).code(), code::TOO_LARGE);
    }

    #[test]
    fn payload_errors() {
        // Trailing bytes.
        assert!(matches!(
            decode_payload(kind::HEARTBEAT, &[0]),
            Err(ProtoError::Malformed(_))
        ));
        // A string longer than what remains.
        assert!(decode_payload(kind::HELLO, &[0, 5, b'a']).is_err());
        // Invalid UTF-8 and control characters.
        assert!(decode_payload(kind::HELLO, &[0, 1, 0xFF, 0, 0]).is_err());
        assert!(decode_payload(kind::HELLO, &[0, 1, 0x07, 0, 0]).is_err());
        // Too many pairs, or more pairs than bytes.
        assert!(decode_payload(kind::INVENTORY, &[0x01, 0x01]).is_err());
        assert!(decode_payload(kind::INVENTORY, &[0, 3, 0, 0, 0, 0]).is_err());
        // A string over the limit.
        let mut p = vec![0x04, 0x01];
        p.extend(std::iter::repeat_n(b'a', 1025));
        p.extend([0, 0]);
        assert!(decode_payload(kind::HELLO, &p).is_err());
    }

    #[test]
    fn encoding_clips_to_the_limits() {
        let long = "é".repeat(600); // 1200 bytes
        let f = Frame::Status {
            message_type: long,
            properties: (0..300).map(|i| (i.to_string(), String::new())).collect(),
        };
        let (back, _) = decode(&f.encode()).unwrap();
        match back {
            Frame::Status {
                message_type,
                properties,
            } => {
                assert_eq!(message_type.len(), 1024);
                assert_eq!(properties.len(), MAX_PAIRS);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn device_ids_and_names() {
        assert!(valid_device_id("dev-1.a_b"));
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_device_id(bad), "{bad}");
        }
        assert!(valid_name("THING-1"));
        for bad in ["", "a.b", "ABCDEFGHIJKLMNOP", "a_b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    /// A stable-toolchain stand-in for the fuzz target: mutated valid frames and random bytes
    /// never panic, and whatever decodes re-encodes to the bytes consumed.
    #[test]
    fn mutations_never_panic_and_accepted_frames_are_canonical() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: Vec<Vec<u8>> = all_frames().iter().map(Frame::encode).collect();
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut b = seeds[round % seeds.len()].clone();
            for _ in 0..(next() % 4 + 1) {
                let r = next();
                match r % 3 {
                    0 if !b.is_empty() => {
                        let i = (r >> 8) as usize % b.len();
                        b[i] = (r >> 40) as u8;
                    }
                    1 => b.truncate((r >> 8) as usize % (b.len() + 1)),
                    _ => b.push((r >> 16) as u8),
                }
            }
            if let Ok((f, used)) = decode(&b) {
                assert_eq!(f.encode(), &b[..used]);
                accepted += 1;
            }
            if let Some((&k, p)) = b.split_first() {
                if let Ok(f) = decode_payload(k, p) {
                    assert_eq!(&f.encode()[HEADER_LEN..], p);
                }
            }
        }
        assert!(accepted > 100, "{accepted}");
    }

    #[tokio::test]
    async fn stream_reading() {
        let mut bytes = Frame::Heartbeat.encode();
        bytes.extend(Frame::Register.encode());
        let mut r = &bytes[..];
        assert_eq!(read_frame(&mut r).await.unwrap(), Frame::Heartbeat);
        assert_eq!(read_frame(&mut r).await.unwrap(), Frame::Register);
        assert!(matches!(read_frame(&mut r).await, Err(ReadError::Closed)));
        let mut r = &bytes[..4];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(ReadError::Proto(ProtoError::Truncated))
        ));
        let b = Frame::Hello {
            device_id: "abc".into(),
            name: "N".into(),
        }
        .encode();
        let mut r = &b[..b.len() - 1];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(ReadError::Proto(ProtoError::Truncated))
        ));
    }
}
