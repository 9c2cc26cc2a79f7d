//! End-to-end tests of the MP emulator's registration endpoint over real TCP. The requests are
//! built here by hand from docs/protocol.md (§2–§4, §6): hand-written XML, a P-256 key, a
//! self-signed certificate from x509-cert's builder, UTF-16LE, multipart, `CCM_POST` on a raw
//! socket.

use mpagent_sim::mp::db::{ClientStatus, SiteDb};
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::Encode;

const BOUNDARY: &str = "aAbBcCdDv1234567890VxXyYzZ";
const ECDSA_OID: &str = "1.2.840.10045.4.3.2";

// ---------------------------------------------------------------------------------------------
// An independent test client
// ---------------------------------------------------------------------------------------------

struct Device {
    key: SigningKey,
    cert_der: Vec<u8>,
    name: String,
}

impl Device {
    fn new(name: &str) -> Device {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let cert_der = self_signed(&key, "ConfigMgr Client");
        Device {
            key,
            cert_der,
            name: name.to_string(),
        }
    }

    fn cert_hex(&self) -> String {
        hex::encode_upper(&self.cert_der)
    }
}

fn self_signed(key: &SigningKey, cn: &str) -> Vec<u8> {
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
    let name = x509_cert::name::Name::from_str(&format!("CN={cn}")).unwrap();
    let builder = CertificateBuilder::new(
        // A self-signed end-entity certificate (CA:FALSE), as a client's is.
        Profile::Leaf {
            issuer: name.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        x509_cert::serial_number::SerialNumber::from(7u32),
        x509_cert::time::Validity::from_now(Duration::from_secs(365 * 86_400)).unwrap(),
        name,
        spki,
        key,
    )
    .unwrap();
    builder
        .build::<p256::ecdsa::DerSignature>()
        .unwrap()
        .to_der()
        .unwrap()
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// ECDSA P-256 over the UTF-16LE bytes, raw r||s, hex upper (docs/protocol.md §6).
fn sign(key: &SigningKey, data: &str) -> String {
    let sig: p256::ecdsa::Signature = key.sign(&utf16le(data));
    hex::encode_upper(sig.to_bytes())
}

/// The `<Data>` element (docs/protocol.md §4), on one line.
fn data_xml(dev: &Device, request_type: &str, smsid: &str, agent_type: u8) -> String {
    format!(
        "<Data HashAlgorithm=\"{ECDSA_OID}\" SMSID=\"{smsid}\" RequestType=\"{request_type}\" TimeStamp=\"2026-11-23T10:00:00Z\">\
         <AgentInformation AgentIdentity=\"mpagent\" AgentVersion=\"0.1.0\" AgentType=\"{agent_type}\" />\
         <Certificates><Encryption Encoding=\"HexBinary\" KeyType=\"1\">{c}</Encryption>\
         <Signing Encoding=\"HexBinary\" KeyType=\"1\">{c}</Signing></Certificates>\
         <DiscoveryProperties><Property Name=\"Netbios Name\" Value=\"{n}\" />\
         <Property Name=\"FQ Name\" Value=\"{n}.example.com\" /><Property Name=\"Locale ID\" Value=\"1033\" />\
         <Property Name=\"InternetFlag\" Value=\"0\" /></DiscoveryProperties></Data>",
        c = dev.cert_hex(),
        n = dev.name
    )
}

fn wrap(data: &str, sig_hex: &str, proxy: Option<&str>) -> String {
    let attr = proxy.map(|p| format!(" SMSID=\"{p}\"")).unwrap_or_default();
    format!(
        "<ClientRegistrationRequest>{data}<Signature{attr}><SignatureValue>{sig_hex}</SignatureValue></Signature></ClientRegistrationRequest>"
    )
}

/// A signed registration body of `dev`.
fn registration(dev: &Device) -> String {
    let data = data_xml(dev, "Registration", "", 0);
    wrap(&data, &sign(&dev.key, &data), None)
}

fn confirmation(dev: &Device, smsid: &str) -> String {
    let data = data_xml(dev, "Confirmation", smsid, 0);
    wrap(&data, &sign(&dev.key, &data), None)
}

/// The whole HTTP body: `<Msg>` header (UTF-16LE + BOM) and the body part (UTF-16LE + NUL + CRLF,
/// zlib-compressed when `compress`).
fn envelope_with(
    body_xml: &str,
    endpoint: &str,
    compress: bool,
    reply_zlib: bool,
    length_delta: isize,
) -> Vec<u8> {
    let mut body = utf16le(body_xml);
    body.extend_from_slice(&[0, 0]);
    let length = (body.len() as isize + length_delta) as usize;
    body.extend_from_slice(b"\r\n");
    if compress {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&body).unwrap();
        body = enc.finish().unwrap();
    }
    let hooks = if compress {
        "<Hooks><Hook3 Name=\"zlib-compress\" /></Hooks>"
    } else {
        ""
    };
    let rc = if reply_zlib {
        " ReplyCompression=\"zlib\""
    } else {
        ""
    };
    let header = format!(
        "<Msg{rc} SchemaVersion=\"1.1\"><Body Type=\"ByteRange\" Length=\"{length}\" Offset=\"0\" />\
         <CorrelationID>{{00000000-0000-0000-0000-000000000000}}</CorrelationID>{hooks}\
         <ID>{{5DD100CD-DF1D-45F5-BA17-A327F43465F8}}</ID><Payload Type=\"inline\" /><Priority>0</Priority>\
         <Protocol>http</Protocol><ReplyMode>Sync</ReplyMode><ReplyTo>direct:DEV:SccmMessaging</ReplyTo>\
         <SentTime>2026-11-23T10:00:00Z</SentTime><SourceHost>DEV</SourceHost>\
         <TargetAddress>mp:{endpoint}</TargetAddress><TargetEndpoint>{endpoint}</TargetEndpoint>\
         <TargetHost>mp.test</TargetHost><Timeout>60000</Timeout></Msg>"
    );
    let mut out =
        format!("--{BOUNDARY}\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n").into_bytes();
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&utf16le(&header));
    out.extend_from_slice(
        format!("\r\n--{BOUNDARY}\r\ncontent-type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(&body);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--").as_bytes());
    out
}

fn envelope(body_xml: &str) -> Vec<u8> {
    envelope_with(body_xml, "MP_ClientRegistration", false, false, 0)
}

struct HttpReply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl HttpReply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes, reads until the server closes.
fn exchange(addr: SocketAddr, raw: &[u8]) -> HttpReply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    parse_http(&out)
}

fn parse_http(out: &[u8]) -> HttpReply {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no HTTP head")
        + 4;
    let head = String::from_utf8(out[..split].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("no Content-Length");
    assert_eq!(out.len() - split, len, "Content-Length matches the body");
    HttpReply {
        status,
        head,
        body: out[split..].to_vec(),
    }
}

fn ccm_post(addr: SocketAddr, body: &[u8]) -> HttpReply {
    let mut raw = format!(
        "CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp.test\r\nConnection: close\r\n\
         User-Agent: ConfigMgr Messaging HTTP Sender\r\n\
         Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    exchange(addr, &raw)
}

/// Parses a reply envelope independently: (header XML, body XML).
fn reply_parts(r: &HttpReply) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.head.contains(&format!(
            "Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\""
        )),
        "{}",
        r.head
    );
    let b = &r.body;
    let delim = format!("\r\n--{BOUNDARY}");
    let find = |hay: &[u8], n: &[u8], from: usize| {
        hay[from..]
            .windows(n.len())
            .position(|w| w == n)
            .map(|p| p + from)
    };
    let h_start = find(b, b"\r\n\r\n", 0).unwrap() + 4;
    let h_end = find(b, delim.as_bytes(), h_start).unwrap();
    let b_start = find(b, b"\r\n\r\n", h_end).unwrap() + 4;
    let b_end = find(b, delim.as_bytes(), b_start).unwrap();
    assert!(b.ends_with(format!("--{BOUNDARY}--").as_bytes()));
    let header = &b[h_start..h_end];
    assert_eq!(&header[..2], &[0xFF, 0xFE], "reply header has a BOM");
    let header = String::from_utf16(&units(&header[2..])).unwrap();
    let mut part = b[b_start..b_end].to_vec();
    if header.contains("zlib-compress") {
        let mut d = flate2::read::ZlibDecoder::new(&part[..]);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        part = out;
    }
    // Real MPs' framing (docs/protocol.md §2): the text and exactly one NUL, nothing after it.
    assert!(
        part.ends_with(&[0, 0]) && !part[..part.len() - 2].ends_with(&[0, 0]),
        "body ends with exactly one NUL"
    );
    let len = part.len();
    assert!(
        header.contains(&format!("Length=\"{len}\"")),
        "{header} vs {len}"
    );
    let body = String::from_utf16(&units(&part[..len - 2])).unwrap();
    (header, body)
}

fn units(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn attr(xml: &str, name: &str) -> Option<String> {
    let pat = format!(" {name}=\"");
    let start = xml.find(&pat)? + pat.len();
    Some(xml[start..start + xml[start..].find('"')?].to_string())
}

/// (Status, SMSID, ApprovalStatus) of a registration reply.
fn registration_reply(r: &HttpReply) -> (String, Option<String>, Option<String>) {
    let (_, body) = reply_parts(r);
    assert!(body.starts_with("<ClientRegistrationResponse "), "{body}");
    (
        attr(&body, "Status").unwrap(),
        attr(&body, "SMSID"),
        attr(&body, "ApprovalStatus"),
    )
}

// ---------------------------------------------------------------------------------------------
// Server fixture
// ---------------------------------------------------------------------------------------------

struct Site {
    _dir: tempfile::TempDir,
    db_path: PathBuf,
    server: MpServer,
}

impl Site {
    async fn start(approval: Approval, limits: Limits) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("site.db");
        let config = MpConfig {
            site_code: "p01".into(),
            db_path: db_path.clone(),
            approval,
            limits,
            mp_host: "mp.test".into(),
            strict: false,
        };
        let server = MpServer::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Site {
            _dir: dir,
            db_path,
            server,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn db(&self) -> SiteDb {
        SiteDb::open(&self.db_path).unwrap()
    }

    /// Runs a blocking client exchange off the runtime.
    async fn post(&self, body: Vec<u8>) -> HttpReply {
        let addr = self.addr();
        tokio::task::spawn_blocking(move || ccm_post(addr, &body))
            .await
            .unwrap()
    }

    async fn raw(&self, raw: Vec<u8>) -> HttpReply {
        let addr = self.addr();
        tokio::task::spawn_blocking(move || exchange(addr, &raw))
            .await
            .unwrap()
    }

    /// Asserts a 403 whose reason contains `needle`, recorded in the rejection table.
    async fn assert_refused(&self, r: &HttpReply, needle: &str) {
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(
            r.text().contains(needle),
            "reason {:?} lacks {needle:?}",
            r.text()
        );
        let rows = self.db().rejections().unwrap();
        assert!(
            rows.iter().any(|row| row.reason.contains(needle)),
            "no rejection row with {needle:?}: {rows:?}"
        );
    }
}

fn is_smsid(s: &str) -> bool {
    let g = s.strip_prefix("GUID:").unwrap_or("");
    g.len() == 36
        && g.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_uppercase())
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_registration_is_accepted_and_idempotent() {
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let dev = Device::new("DEV1");
    let r = site.post(envelope(&registration(&dev))).await;
    let (header, _) = reply_parts(&r);
    assert!(
        header.contains("<CorrelationID>{5DD100CD-DF1D-45F5-BA17-A327F43465F8}</CorrelationID>"),
        "{header}"
    );
    assert!(
        header.contains("<TargetEndpoint>SccmMessaging</TargetEndpoint>"),
        "{header}"
    );
    let (status, smsid, approval) = registration_reply(&r);
    assert_eq!(status, "0");
    let smsid = smsid.expect("SMSID");
    assert!(is_smsid(&smsid), "{smsid}");
    assert_eq!(approval, None);

    // Same certificate again (fresh signature, new request): same SMSID.
    let r2 = site.post(envelope(&registration(&dev))).await;
    assert_eq!(
        registration_reply(&r2),
        ("0".into(), Some(smsid.clone()), None)
    );

    let clients = site.db().clients().unwrap();
    assert_eq!(clients.len(), 1);
    let c = &clients[0];
    assert_eq!(c.smsid, smsid);
    assert_eq!(c.agent_type, 0);
    assert_eq!(c.status, ClientStatus::Approved);
    assert_eq!(c.netbios_name.as_deref(), Some("DEV1"));
    assert_eq!(c.fqdn.as_deref(), Some("DEV1.example.com"));
    assert_eq!(c.cert_der, dev.cert_der);
    assert!(c.registered_by_proxy.is_none());

    // A second device gets another SMSID.
    let other = Device::new("DEV2");
    let (s3, id3, _) = registration_reply(&site.post(envelope(&registration(&other))).await);
    assert_eq!(s3, "0");
    assert_ne!(id3.unwrap(), smsid);
    assert!(site.db().rejections().unwrap().is_empty());
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_then_approve_then_confirmation_gives_zero() {
    let site = Site::start(Approval::Pending, Limits::default()).await;
    let dev = Device::new("DEV1");
    let (status, smsid, approval) =
        registration_reply(&site.post(envelope(&registration(&dev))).await);
    assert_eq!(status, "1");
    assert_eq!(approval.as_deref(), Some("-1"));
    let smsid = smsid.expect("pending reply carries the SMSID");

    let (s, id, _) = registration_reply(&site.post(envelope(&confirmation(&dev, &smsid))).await);
    assert_eq!((s.as_str(), id.as_deref()), ("1", Some(smsid.as_str())));

    // The administrator approves (lower case works too).
    assert!(site.db().approve(&smsid.to_ascii_lowercase()).unwrap());
    let (s, id, ap) = registration_reply(&site.post(envelope(&confirmation(&dev, &smsid))).await);
    assert_eq!(
        (s.as_str(), id.as_deref(), ap),
        ("0", Some(smsid.as_str()), None)
    );

    // Confirmation by another device for this SMSID is refused.
    let thief = Device::new("EVIL");
    let r = site.post(envelope(&confirmation(&thief, &smsid))).await;
    site.assert_refused(&r, "not the one registered").await;

    // Blocking the client: Status 3 without SMSID, on registration and confirmation.
    assert!(site.db().reject(&smsid).unwrap());
    let (s, id, _) = registration_reply(&site.post(envelope(&registration(&dev))).await);
    assert_eq!((s.as_str(), id), ("3", None));
    let (s, id, _) = registration_reply(&site.post(envelope(&confirmation(&dev, &smsid))).await);
    assert_eq!((s.as_str(), id), ("3", None));
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_data_is_refused_with_403_and_logged() {
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let dev = Device::new("DEV1");
    let data = data_xml(&dev, "Registration", "", 0);
    let sig = sign(&dev.key, &data);
    // One character changed after signing.
    let tampered = data.replace("Value=\"DEV1\"", "Value=\"DEV2\"");
    assert_ne!(tampered, data);
    let r = site.post(envelope(&wrap(&tampered, &sig, None))).await;
    site.assert_refused(&r, "signature does not verify").await;
    let rows = site.db().rejections().unwrap();
    assert_eq!(
        rows.last().unwrap().endpoint.as_deref(),
        Some("MP_ClientRegistration")
    );
    assert!(rows.last().unwrap().peer == "127.0.0.1");
    assert!(site.db().clients().unwrap().is_empty());

    // Lower-case hex of the honest signature is accepted.
    let ok = wrap(&data, &sig.to_ascii_lowercase(), None);
    assert_eq!(registration_reply(&site.post(envelope(&ok)).await).0, "0");
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_by_another_key_or_in_another_format_is_refused() {
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let dev = Device::new("DEV1");
    let data = data_xml(&dev, "Registration", "", 0);
    let other = SigningKey::random(&mut rand_core::OsRng);
    let r = site
        .post(envelope(&wrap(&data, &sign(&other, &data), None)))
        .await;
    site.assert_refused(&r, "signature does not verify").await;

    // The right key over the UTF-8 bytes instead of UTF-16LE.
    let sig: p256::ecdsa::Signature = dev.key.sign(data.as_bytes());
    let r = site
        .post(envelope(&wrap(
            &data,
            &hex::encode_upper(sig.to_bytes()),
            None,
        )))
        .await;
    site.assert_refused(&r, "signature does not verify").await;

    // DER-encoded ECDSA instead of raw r||s.
    let sig: p256::ecdsa::Signature = dev.key.sign(&utf16le(&data));
    let r = site
        .post(envelope(&wrap(
            &data,
            &hex::encode_upper(sig.to_der().as_bytes()),
            None,
        )))
        .await;
    site.assert_refused(&r, "wrong length").await;

    // Bad hex, unknown algorithm, RSA OID with an EC certificate.
    let r = site.post(envelope(&wrap(&data, "XYZ", None))).await;
    site.assert_refused(&r, "bad hex in SignatureValue").await;
    let d2 = data.replace(ECDSA_OID, "1.2.840.10045.4.3.4");
    let r = site
        .post(envelope(&wrap(&d2, &sign(&dev.key, &d2), None)))
        .await;
    site.assert_refused(&r, "unknown HashAlgorithm").await;
    let d3 = data.replace(ECDSA_OID, "1.2.840.113549.1.1.11");
    let r = site
        .post(envelope(&wrap(&d3, &sign(&dev.key, &d3), None)))
        .await;
    site.assert_refused(&r, "does not fit").await;
    assert!(site.db().clients().unwrap().is_empty());
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_refused_and_the_server_keeps_serving() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let site = Site::start(Approval::Auto, limits).await;
    let dev = Device::new("DEV1");
    let big = format!("{}<!--{}-->", registration(&dev), "x".repeat(200_000));
    let r = site.post(envelope(&big)).await;
    site.assert_refused(&r, "exceeds the limit").await;
    // The next honest request is served.
    assert_eq!(
        registration_reply(&site.post(envelope(&registration(&dev))).await).0,
        "0"
    );

    // A zlib body that inflates beyond the limit is refused too.
    let bomb = format!("{}{}", registration(&dev), " ".repeat(100_000));
    let r = site
        .post(envelope_with(
            &bomb,
            "MP_ClientRegistration",
            true,
            false,
            0,
        ))
        .await;
    site.assert_refused(&r, "decompresses to more than").await;
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_request_and_zlib_reply() {
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let dev = Device::new("DEV1");
    let r = site
        .post(envelope_with(
            &registration(&dev),
            "MP_ClientRegistration",
            true,
            true,
            0,
        ))
        .await;
    let (header, body) = reply_parts(&r);
    assert!(header.contains("zlib-compress"), "{header}");
    assert_eq!(attr(&body, "Status").as_deref(), Some("0"));
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused() {
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let dev = Device::new("DEV1");
    let good = registration(&dev);

    let r = site
        .post(envelope_with(
            &good,
            "MP_ClientRegistration",
            false,
            false,
            2,
        ))
        .await;
    // Two bytes too many take in the CRLF, which may follow the ranges: the body then lacks its NUL.
    site.assert_refused(&r, "does not end with the UTF-16 NUL")
        .await;
    let r = site
        .post(envelope_with(
            &good,
            "MP_ClientRegistration",
            false,
            false,
            -2,
        ))
        .await;
    site.assert_refused(&r, "header announces").await;

    let doctype = format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{good}");
    site.assert_refused(
        &site.post(envelope(&doctype)).await,
        "document type declaration",
    )
    .await;

    let r = site
        .post(envelope_with(&good, "MP_Nowhere", false, false, 0))
        .await;
    site.assert_refused(&r, "unsupported endpoint").await;
    // A signed endpoint without SourceID and clientauth hook.
    let r = site
        .post(envelope_with(&good, "MP_DdrEndpoint", false, false, 0))
        .await;
    site.assert_refused(&r, "without a SourceID").await;

    site.assert_refused(&site.post(b"garbage".to_vec()).await, "multipart")
        .await;

    // Odd number of body bytes (Length agrees): cut one byte from the UTF-16 body.
    let mut env = envelope_with(&good, "MP_ClientRegistration", false, false, -1);
    let tail = format!("\u{0}\u{0}\r\n\r\n--{BOUNDARY}--");
    let pos = env.len() - tail.len();
    env.remove(pos - 1);
    site.assert_refused(&site.post(env).await, "odd number of bytes")
        .await;

    // Header without its BOM.
    let env = envelope(&good);
    let bom = env.windows(2).position(|w| w == [0xFF, 0xFE]).unwrap();
    let mut no_bom = env.clone();
    no_bom.drain(bom..bom + 2);
    site.assert_refused(&site.post(no_bom).await, "BOM").await;

    // A decoy <Data> in a comment.
    let decoy = good.replacen("<Data ", "<!--<Data >--><Data ", 1);
    site.assert_refused(&site.post(envelope(&decoy)).await, "comment")
        .await;

    // Truncated XML.
    site.assert_refused(
        &site.post(envelope(&good[..good.len() - 30])).await,
        "malformed registration XML",
    )
    .await;

    // Too many headers.
    let mut raw = String::from("GET /SMS_MP/.sms_aut?MPLIST HTTP/1.1\r\n");
    for i in 0..40 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    site.assert_refused(
        &site.raw(raw.into_bytes()).await,
        "too many request headers",
    )
    .await;

    // Huge head.
    let raw = format!(
        "GET /SMS_MP/.sms_aut?MPLIST HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    site.assert_refused(&site.raw(raw.into_bytes()).await, "request head exceeds")
        .await;

    assert!(site.db().clients().unwrap().is_empty());
    // Still serving.
    assert_eq!(registration_reply(&site.post(envelope(&good)).await).0, "0");
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_lookups_and_status_codes() {
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: mp.test\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let r = site.raw(get("/SMS_MP/.sms_aut?MPLIST")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("<SiteCode>P01</SiteCode>"),
        "{}",
        r.text()
    );
    assert!(r.head.contains("\r\nDate: "), "{}", r.head);
    let r = site.raw(get("/SMS_MP/.sms_aut?MPCERT")).await;
    assert_eq!(r.status, 200);
    let der = hex::decode(r.text().trim()).unwrap();
    assert_eq!(der[0], 0x30);
    let r = site.raw(get("/SMS_MP/.sms_aut?MPKEYINFORMATION")).await;
    assert!(r.text().contains("<FQDN>mp.test</FQDN>"));
    assert_eq!(site.raw(get("/nowhere")).await.status, 404);
    assert_eq!(site.raw(get("/ccm_system/request")).await.status, 405);
    let r = site
        .raw(b"CCM_POST /ccm_system_windowsauth/request HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec())
        .await;
    assert_eq!(r.status, 401);
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let addr = site.addr();
    let bodies = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut replies = Vec::new();
        for _ in 0..2 {
            s.write_all(b"GET /SMS_MP/.sms_aut?MPLIST HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "server closed a keep-alive connection");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                    let len: usize = head
                        .split("content-length: ")
                        .nth(1)
                        .unwrap()
                        .split("\r\n")
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    if buf.len() >= p + 4 + len {
                        break;
                    }
                }
            }
            replies.push(parse_http(&buf));
        }
        replies
    })
    .await
    .unwrap();
    assert!(bodies
        .iter()
        .all(|r| r.status == 200 && r.head.contains("keep-alive")));
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_cut_off_and_others_are_served() {
    let limits = Limits {
        read_timeout: Duration::from_millis(700),
        ..Limits::default()
    };
    let site = Site::start(Approval::Auto, limits).await;
    let addr = site.addr();
    let slow = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"CCM_POST /ccm_system/request HTTP/1.1\r\nContent-Le")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        parse_http(&out)
    });
    // Meanwhile an honest client is served.
    let dev = Device::new("DEV1");
    assert_eq!(
        registration_reply(&site.post(envelope(&registration(&dev))).await).0,
        "0"
    );
    let r = slow.await.unwrap();
    site.assert_refused(&r, "read timeout").await;
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposed_smsid_is_honoured_when_free() {
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let dev = Device::new("DEV1");
    let proposed = "GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42";
    let data = data_xml(&dev, "Registration", proposed, 0);
    let (s, id, _) = registration_reply(
        &site
            .post(envelope(&wrap(&data, &sign(&dev.key, &data), None)))
            .await,
    );
    assert_eq!(
        (s.as_str(), id.as_deref()),
        ("0", Some("GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42"))
    );
    // Another certificate proposing the same SMSID gets a fresh one.
    let dev2 = Device::new("DEV2");
    let data = data_xml(&dev2, "Registration", proposed, 0);
    let (_, id2, _) = registration_reply(
        &site
            .post(envelope(&wrap(&data, &sign(&dev2.key, &data), None)))
            .await,
    );
    let id2 = id2.unwrap();
    assert!(is_smsid(&id2));
    assert_ne!(id2, id.unwrap());
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isv_proxy_and_its_clients() {
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let proxy = Device::new("PROXY");
    let reg_as = |dev: &Device, agent: u8, signer: &SigningKey, proxy_id: Option<&str>| {
        let data = data_xml(dev, "Registration", "", agent);
        envelope(&wrap(&data, &sign(signer, &data), proxy_id))
    };

    // Not imported yet: refused.
    let r = site.post(reg_as(&proxy, 4, &proxy.key, None)).await;
    site.assert_refused(&r, "not imported").await;

    let proxy_smsid = site.db().import_cert(&proxy.cert_der).unwrap();
    assert!(is_smsid(&proxy_smsid));
    assert_eq!(
        site.db().import_cert(&proxy.cert_der).unwrap(),
        proxy_smsid,
        "import is idempotent"
    );

    // A proxy client before the proxy registered itself: refused.
    let client = Device::new("THING1");
    let r = site
        .post(reg_as(&client, 8, &proxy.key, Some(&proxy_smsid)))
        .await;
    site.assert_refused(&r, "has not registered itself").await;

    // The proxy registers and gets the SMSID assigned at import.
    let (s, id, _) = registration_reply(&site.post(reg_as(&proxy, 4, &proxy.key, None)).await);
    assert_eq!(
        (s.as_str(), id.as_deref()),
        ("0", Some(proxy_smsid.as_str()))
    );

    // An imported proxy certificate cannot pose as an ordinary client.
    let r = site.post(reg_as(&proxy, 0, &proxy.key, None)).await;
    site.assert_refused(&r, "already registered").await;

    // Proxy client signed by the proxy: accepted and recorded as the proxy's.
    let (s, client_id, _) = registration_reply(
        &site
            .post(reg_as(&client, 8, &proxy.key, Some(&proxy_smsid)))
            .await,
    );
    assert_eq!(s, "0");
    let client_id = client_id.unwrap();
    let row = site.db().client(&client_id).unwrap().unwrap();
    assert_eq!(row.agent_type, 8);
    assert_eq!(
        row.registered_by_proxy.as_deref(),
        Some(proxy_smsid.as_str())
    );
    assert_eq!(row.cert_der, client.cert_der);

    // Signed by the client's own key, or naming an unknown proxy, or with a proxy SMSID on
    // AgentType 0: refused.
    let other = Device::new("THING2");
    let r = site
        .post(reg_as(&other, 8, &other.key, Some(&proxy_smsid)))
        .await;
    site.assert_refused(&r, "signature does not verify").await;
    let r = site
        .post(reg_as(
            &other,
            8,
            &proxy.key,
            Some("GUID:00000000-0000-0000-0000-000000000001"),
        ))
        .await;
    site.assert_refused(&r, "not an imported ISV proxy").await;
    let r = site
        .post(reg_as(&other, 0, &other.key, Some(&proxy_smsid)))
        .await;
    site.assert_refused(&r, "only allowed for AgentType 8")
        .await;
    let r = site.post(reg_as(&other, 8, &proxy.key, None)).await;
    site.assert_refused(&r, "without Signature/@SMSID").await;
    let r = site.post(reg_as(&other, 1, &other.key, None)).await;
    site.assert_refused(&r, "AgentType 1 is not supported")
        .await;
    site.server.shutdown().await;
}

/// Registrations of one certificate arriving at the same instant (a device retrying
/// while its first request is still in flight) all get the one SMSID; none hits the UNIQUE
/// certificate constraint as a 500. Several rounds of 12 released together by a barrier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_certificate_share_the_smsid() {
    const AT_ONCE: usize = 12;
    let site = Site::start(Approval::Auto, Limits::default()).await;
    let addr = site.addr();
    let devices: Vec<Device> = (0..8).map(|i| Device::new(&format!("RACE{i}"))).collect();
    for dev in &devices {
        let bodies: Vec<Vec<u8>> = (0..AT_ONCE).map(|_| envelope(&registration(dev))).collect();
        let replies = tokio::task::spawn_blocking(move || {
            let gate = std::sync::Arc::new(std::sync::Barrier::new(AT_ONCE));
            let threads: Vec<_> = bodies
                .into_iter()
                .map(|body| {
                    let gate = gate.clone();
                    std::thread::spawn(move || {
                        gate.wait();
                        ccm_post(addr, &body)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        let mut ids = std::collections::BTreeSet::new();
        for r in &replies {
            assert_eq!(r.status, 200, "{}", r.text());
            let (status, smsid, _) = registration_reply(r);
            assert_eq!(status, "0");
            ids.insert(smsid.expect("SMSID"));
        }
        assert_eq!(ids.len(), 1, "one certificate, one SMSID: {ids:?}");
        let row = site
            .db()
            .client_by_thumbprint(&mpagent_sim::mp::verify::thumbprint(&dev.cert_der))
            .unwrap()
            .expect("registered");
        assert_eq!(Some(&row.smsid), ids.first());
    }
    assert_eq!(site.db().clients().unwrap().len(), devices.len());
    assert!(site.db().rejections().unwrap().is_empty());
    site.server.shutdown().await;
}

/// Sends raw bytes and reads the answer; `None` if the connection failed (a refused connection
/// may be reset while we are still sending).
fn try_exchange(addr: SocketAddr, raw: &[u8]) -> Option<HttpReply> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(raw).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    Some(parse_http(&out))
}

/// A flood of idle connections, three times `max_connections`. The server takes them
/// all at once: `max_connections` are served (and cut off after the read timeout), as many wait
/// for a slot, the rest are answered 503 at once; every refusal carries a logged reason. An
/// honest client that retries on 503 (as `Retry-After` asks) registers within a bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_refused_with_reasons_and_the_honest_client_is_served() {
    const MAX: usize = 2;
    const FLOOD: usize = 3 * MAX;
    let limits = Limits {
        max_connections: MAX,
        // Long enough that the whole flood is accepted before the first slot frees.
        read_timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let site = Site::start(Approval::Auto, limits).await;
    let addr = site.addr();
    let dev = Device::new("HONEST");
    let body = envelope(&registration(&dev));
    let mut request = format!(
        "CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp.test\r\nConnection: close\r\n\
         Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let (flood, honest, busy_seen) = tokio::task::spawn_blocking(move || {
        // Connected (in the kernel's accept queue) before the honest client: accepted first.
        let flood: Vec<TcpStream> = (0..FLOOD)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let started = std::time::Instant::now();
        let (mut busy_seen, mut attempts) = (0, 0);
        let honest = loop {
            attempts += 1;
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the honest client was not served within 30 s"
            );
            match try_exchange(addr, &request) {
                Some(r) if r.status == 503 => {
                    assert!(r.head.contains("Retry-After: 1"), "{}", r.head);
                    busy_seen += 1;
                }
                Some(r) => break r,
                None => {}
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        eprintln!(
            "honest client served after {:?}, attempt {attempts} ({busy_seen} × 503 read)",
            started.elapsed()
        );
        let flood: Vec<HttpReply> = flood
            .into_iter()
            .map(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut out = Vec::new();
                s.read_to_end(&mut out).unwrap();
                parse_http(&out)
            })
            .collect();
        (flood, honest, busy_seen)
    })
    .await
    .unwrap();
    assert_eq!(registration_reply(&honest).0, "0");

    let rows = site.db().rejections().unwrap();
    let (mut timed_out, mut busy) = (0, busy_seen);
    for r in &flood {
        match r.status {
            403 => {
                assert!(r.text().contains("read timeout"), "{}", r.text());
                timed_out += 1;
            }
            503 => {
                assert!(
                    r.text().starts_with("busy: all 2 connection slots"),
                    "{}",
                    r.text()
                );
                busy += 1;
            }
            other => panic!("flood connection answered {other}: {}", r.text()),
        }
        assert!(
            rows.iter().any(|row| row.reason == r.text().trim_end()),
            "no rejection row for {:?}: {rows:?}",
            r.text()
        );
    }
    // Served ones time out; beyond the slots and the waiting line, some are refused at once.
    assert!(timed_out >= MAX, "{timed_out} timed out");
    assert!(busy >= FLOOD - 2 * MAX, "{busy} refused as busy");
    // Every 503 seen is logged (the honest client's refused attempts may have been reset before
    // it read the answer: logged but not counted here).
    let logged_busy: i64 = rows
        .iter()
        .filter(|r| r.reason.starts_with("busy: "))
        .map(|r| r.count)
        .sum();
    assert!(
        logged_busy >= busy as i64,
        "{logged_busy} logged, {busy} seen: {rows:?}"
    );
    site.server.shutdown().await;
}
