//! The MP emulator as a real MP behaves (docs/protocol.md §2, §4, §5), over real TCP: replies
//! framed as real MPs frame them, requests with or without the CRLF inside the compressed part, the
//! strict mode (`MpConfig::strict`: quiet 200 for dropped reports and failed identities,
//! Confirmation replies without SMSID, certificates outside their validity refused), reports as
//! body + attachment, administrator-ordered Reset / Error / CertificateReset replies, and the
//! request shapes the public tools send. Every request is built by hand from the spec.

use mpagent_sim::mp::db::{NextReply, SiteDb};
use mpagent_sim::mp::util::utc_timestamp_at;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::SigningKey;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::Encode;

const BOUNDARY: &str = "aAbBcCdDv1234567890VxXyYzZ";
const ECDSA_OID: &str = "1.2.840.10045.4.3.2";
const RSA_OID: &str = "1.2.840.113549.1.1.11";
const DISCOVERY: &str = "{00000000-0000-0000-0000-000000000003}";
const HARDWARE: &str = "{00000000-0000-0000-0000-000000000001}";

// ---------------------------------------------------------------------------------------------
// Identities (docs/protocol.md §6, §7)
// ---------------------------------------------------------------------------------------------

enum Key {
    P256(SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

struct Identity {
    key: Key,
    cert_der: Vec<u8>,
}

fn valid_for_a_year() -> x509_cert::time::Validity {
    x509_cert::time::Validity::from_now(Duration::from_secs(365 * 86_400)).unwrap()
}

/// Valid for one day that ended a year ago.
fn expired() -> x509_cert::time::Validity {
    let at = |secs: u64| {
        x509_cert::time::Time::try_from(UNIX_EPOCH + Duration::from_secs(secs)).unwrap()
    };
    let start = now_unix() - 366 * 86_400;
    x509_cert::time::Validity {
        not_before: at(start),
        not_after: at(start + 86_400),
    }
}

impl Identity {
    fn p256_valid(validity: x509_cert::time::Validity) -> Identity {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let spki =
            x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
        let cert = CertificateBuilder::new(
            // A self-signed end-entity certificate (CA:FALSE), as a client's is.
            Profile::Leaf {
                issuer: x509_cert::name::Name::from_str("CN=ConfigMgr Client").unwrap(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            x509_cert::serial_number::SerialNumber::from(7u32),
            validity,
            x509_cert::name::Name::from_str("CN=ConfigMgr Client").unwrap(),
            spki,
            &key,
        )
        .unwrap()
        .build::<p256::ecdsa::DerSignature>()
        .unwrap()
        .to_der()
        .unwrap();
        Identity {
            key: Key::P256(key),
            cert_der: cert,
        }
    }

    fn p256() -> Identity {
        Identity::p256_valid(valid_for_a_year())
    }

    /// RSA-1024 (small to keep the debug test fast; the emulator takes any modulus size).
    fn rsa() -> Identity {
        let sk = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap();
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(sk.clone());
        let spki =
            x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(sk.to_public_key()).unwrap();
        let cert = CertificateBuilder::new(
            // A self-signed end-entity certificate (CA:FALSE), as a client's is.
            Profile::Leaf {
                issuer: x509_cert::name::Name::from_str("CN=ConfigMgr Client").unwrap(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            x509_cert::serial_number::SerialNumber::from(8u32),
            valid_for_a_year(),
            x509_cert::name::Name::from_str("CN=ConfigMgr Client").unwrap(),
            spki,
            &signer,
        )
        .unwrap()
        .build::<rsa::pkcs1v15::Signature>()
        .unwrap()
        .to_der()
        .unwrap();
        Identity {
            key: Key::Rsa(Box::new(sk)),
            cert_der: cert,
        }
    }

    fn oid(&self) -> &'static str {
        match self.key {
            Key::P256(_) => ECDSA_OID,
            Key::Rsa(_) => RSA_OID,
        }
    }

    /// P-256: raw r||s; RSA: PKCS#1 v1.5 SHA-256, byte-reversed (CryptoAPI order). Hex upper.
    fn sign(&self, data: &[u8]) -> String {
        match &self.key {
            Key::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(data);
                hex::encode_upper(sig.to_bytes())
            }
            Key::Rsa(k) => {
                use sha2::Digest;
                let mut s = k
                    .sign(
                        rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                        &sha2::Sha256::digest(data),
                    )
                    .unwrap();
                s.reverse();
                hex::encode_upper(s)
            }
        }
    }

    fn cert_hex(&self) -> String {
        hex::encode_upper(&self.cert_der)
    }

    /// A CryptoAPI PUBLICKEYBLOB of the RSA key (what the public tools send as `PublicKey`).
    fn publickeyblob_hex(&self) -> String {
        use rsa::traits::PublicKeyParts;
        let Key::Rsa(k) = &self.key else {
            panic!("not RSA")
        };
        let mut b = vec![0x06, 0x02, 0x00, 0x00, 0x00, 0xA4, 0x00, 0x00];
        b.extend_from_slice(b"RSA1");
        b.extend_from_slice(&((k.size() * 8) as u32).to_le_bytes());
        let e = k.e().to_bytes_le();
        let mut e4 = [0u8; 4];
        e4[..e.len()].copy_from_slice(&e);
        b.extend_from_slice(&e4);
        let mut n = k.n().to_bytes_le();
        n.resize(k.size(), 0);
        b.extend_from_slice(&n);
        hex::encode_upper(b)
    }
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn utf16le_nul(s: &str) -> Vec<u8> {
    let mut v = utf16le(s);
    v.extend_from_slice(&[0, 0]);
    v
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn now_stamp() -> String {
    utc_timestamp_at(now_unix())
}

fn fresh_guid() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn fresh_id() -> String {
    format!("{{{}}}", fresh_guid())
}

// ---------------------------------------------------------------------------------------------
// Envelope (docs/protocol.md §2, §3)
// ---------------------------------------------------------------------------------------------

fn multipart(header: &str, octet: &[u8]) -> Vec<u8> {
    let mut out =
        format!("--{BOUNDARY}\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n").into_bytes();
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&utf16le(header));
    out.extend_from_slice(
        format!("\r\n--{BOUNDARY}\r\ncontent-type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(octet);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--").as_bytes());
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// How the octet stream ends and travels.
#[derive(Clone, Copy)]
struct Framing {
    compress: bool,
    /// The CRLF after the ranges inside the stream (inside the compressed data when
    /// compressed), as the public tools send it; without it the stream ends at the last range.
    crlf_inside: bool,
    /// Ask for a zlib reply.
    zlib_reply: bool,
}

const TOOLS: Framing = Framing {
    compress: true,
    crlf_inside: true,
    zlib_reply: true,
};
const PLAIN: Framing = Framing {
    compress: false,
    crlf_inside: true,
    zlib_reply: false,
};

/// The octet stream (before compression) of a body and optional attachment (docs/protocol.md §5 report
/// framing): body = UTF-16LE + `00 00`; attachment = `FF FE` + UTF-16LE, no NUL; then the CRLF if
/// `crlf_inside`. Returns the stream, the body length and the attachment length.
fn stream(body: &str, attachment: Option<&str>, crlf_inside: bool) -> (Vec<u8>, usize, usize) {
    let mut s = utf16le_nul(body);
    let body_len = s.len();
    let mut att_len = 0;
    if let Some(a) = attachment {
        let mut b = vec![0xFF, 0xFE];
        b.extend_from_slice(&utf16le(a));
        att_len = b.len();
        s.extend_from_slice(&b);
    }
    if crlf_inside {
        s.extend_from_slice(b"\r\n");
    }
    (s, body_len, att_len)
}

struct Header<'a> {
    endpoint: &'a str,
    id: String,
    source_id: Option<&'a str>,
    hooks: String,
    body_len: usize,
    attachment: Option<(usize, usize)>,
    zlib_reply: bool,
}

impl Header<'_> {
    fn xml(&self) -> String {
        let attachment = self
            .attachment
            .map(|(off, len)| {
                format!(
                    "<Attachment Type=\"ByteRange\" Offset=\"{off}\" Length=\"{len}\" \
                     Name=\"{DISCOVERY}\" />"
                )
            })
            .unwrap_or_default();
        let source = self
            .source_id
            .map(|s| format!("<SourceID>{s}</SourceID>"))
            .unwrap_or_default();
        let mode = if matches!(self.endpoint, "MP_ClientRegistration" | "MP_PolicyManager") {
            "Sync"
        } else {
            "ASync"
        };
        format!(
            "<Msg{rc} SchemaVersion=\"1.1\">{attachment}<Body Type=\"ByteRange\" Length=\"{len}\" \
             Offset=\"0\" /><CorrelationID>{{00000000-0000-0000-0000-000000000000}}</CorrelationID>\
             {hooks}<ID>{id}</ID><Payload Type=\"inline\" /><Priority>0</Priority>\
             <Protocol>http</Protocol><ReplyMode>{mode}</ReplyMode>\
             <ReplyTo>direct:DEV:SccmMessaging</ReplyTo><SentTime>{t}</SentTime>{source}\
             <SourceHost>DEV</SourceHost><TargetAddress>mp:{ep}</TargetAddress>\
             <TargetEndpoint>{ep}</TargetEndpoint><TargetHost>mp.test</TargetHost>\
             <Timeout>60000</Timeout></Msg>",
            rc = if self.zlib_reply {
                " ReplyCompression=\"zlib\""
            } else {
                ""
            },
            len = self.body_len,
            hooks = self.hooks,
            id = self.id,
            t = now_stamp(),
            ep = self.endpoint,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Registration (docs/protocol.md §4)
// ---------------------------------------------------------------------------------------------

/// `<Data>` of a Registration proposing `proposed` (`GUID:…`, or empty).
fn registration_data(dev: &Identity, proposed: &str) -> String {
    format!(
        "<Data HashAlgorithm=\"{oid}\" SMSID=\"{proposed}\" RequestType=\"Registration\" \
         TimeStamp=\"{t}\"><AgentInformation AgentIdentity=\"test\" AgentVersion=\"1\" \
         AgentType=\"0\" /><Certificates><Encryption Encoding=\"HexBinary\" KeyType=\"1\">{c}\
         </Encryption><Signing Encoding=\"HexBinary\" KeyType=\"1\">{c}</Signing></Certificates>\
         <DiscoveryProperties><Property Name=\"Netbios Name\" Value=\"DEV\" />\
         <Property Name=\"FQ Name\" Value=\"dev.example.com\" /></DiscoveryProperties></Data>",
        oid = dev.oid(),
        t = now_stamp(),
        c = dev.cert_hex()
    )
}

/// The real client's Confirmation: no certificates, `<Signature SMSID=…>` naming itself.
fn confirmation_body(dev: &Identity, smsid: &str) -> String {
    let data = format!(
        "<Data HashAlgorithm=\"{oid}\" SMSID=\"{smsid}\" RequestType=\"Confirmation\" \
         TimeStamp=\"{t}\"><AgentInformation AgentIdentity=\"test\" AgentVersion=\"1\" \
         AgentType=\"0\" /></Data>",
        oid = dev.oid(),
        t = now_stamp(),
    );
    format!(
        "<ClientRegistrationRequest>{data}<Signature SMSID=\"{smsid}\"><SignatureValue>{}\
         </SignatureValue></Signature></ClientRegistrationRequest>",
        dev.sign(&utf16le(&data))
    )
}

fn registration_body(dev: &Identity, proposed: &str) -> String {
    let data = registration_data(dev, proposed);
    format!(
        "<ClientRegistrationRequest>{data}<Signature><SignatureValue>{}</SignatureValue>\
         </Signature></ClientRegistrationRequest>",
        dev.sign(&utf16le(&data))
    )
}

fn registration_message(body: &str, framing: Framing, id: &str) -> Vec<u8> {
    let (s, body_len, _) = stream(body, None, framing.crlf_inside);
    let hooks = if framing.compress {
        "<Hooks><Hook3 Name=\"zlib-compress\" /></Hooks>".to_string()
    } else {
        String::new()
    };
    let header = Header {
        endpoint: "MP_ClientRegistration",
        id: id.to_string(),
        source_id: None,
        hooks,
        body_len,
        attachment: None,
        zlib_reply: framing.zlib_reply,
    };
    let wire = if framing.compress { zlib(&s) } else { s };
    multipart(&header.xml(), &wire)
}

// ---------------------------------------------------------------------------------------------
// Signed messages (docs/protocol.md §5)
// ---------------------------------------------------------------------------------------------

struct Signed<'a> {
    endpoint: &'static str,
    body: String,
    attachment: Option<String>,
    smsid: String,
    signer: &'a Identity,
    public_key: String,
    framing: Framing,
    /// Flip one byte of the octet stream after signing.
    tamper: bool,
}

impl<'a> Signed<'a> {
    fn new(endpoint: &'static str, body: String, smsid: &str, signer: &'a Identity) -> Self {
        Signed {
            endpoint,
            body,
            attachment: None,
            smsid: smsid.to_string(),
            signer,
            public_key: signer.cert_hex(),
            framing: PLAIN,
            tamper: false,
        }
    }

    /// Body + attachment as docs/protocol.md §5 frames a report.
    fn report(endpoint: &'static str, full: String, smsid: &str, signer: &'a Identity) -> Self {
        Signed {
            attachment: Some(full.clone()),
            ..Signed::new(endpoint, header_only(&full), smsid, signer)
        }
    }

    fn build(&self) -> Vec<u8> {
        let (s, body_len, att_len) = stream(
            &self.body,
            self.attachment.as_deref(),
            self.framing.crlf_inside,
        );
        let mut wire = if self.framing.compress { zlib(&s) } else { s };
        let payload_sig = self.signer.sign(&wire);
        if self.tamper {
            let last = wire.len() - 1;
            wire[last] ^= 1;
        }
        let id_sig = self
            .signer
            .sign(&utf16le_nul(&self.smsid.to_ascii_uppercase()));
        let zhook = if self.framing.compress {
            "<Hook3 Name=\"zlib-compress\" />"
        } else {
            ""
        };
        let hooks = format!(
            "<Hooks><Hook2 Name=\"clientauth\"><Property Name=\"AuthSenderMachine\">DEV</Property>\
             <Property Name=\"PublicKey\">{}</Property>\
             <Property Name=\"ClientIDSignature\">{id_sig}</Property>\
             <Property Name=\"PayloadSignature\">{payload_sig}</Property>\
             <Property Name=\"ClientCapabilities\">NonSSL</Property>\
             <Property Name=\"HashAlgorithm\">{}</Property></Hook2>{zhook}</Hooks>",
            self.public_key,
            self.signer.oid()
        );
        let header = Header {
            endpoint: self.endpoint,
            id: fresh_id(),
            source_id: Some(&self.smsid),
            hooks,
            body_len,
            attachment: self.attachment.as_ref().map(|_| (body_len, att_len)),
            zlib_reply: self.framing.zlib_reply,
        };
        multipart(&header.xml(), &wire)
    }
}

fn report_header(smsid: &str, action: &str, description: &str) -> String {
    format!(
        "<ReportHeader><Identification><Machine><ClientInstalled>1</ClientInstalled>\
         <ClientType>1</ClientType><ClientID>{smsid}</ClientID><ClientVersion>0.1.0</ClientVersion>\
         <NetBIOSName>DEV</NetBIOSName><CodePage>1252</CodePage><SystemDefaultLCID>1033</SystemDefaultLCID>\
         </Machine></Identification><ReportDetails><ReportContent>Inventory Data</ReportContent>\
         <ReportType>Full</ReportType><Date>20261125120000.000000+000</Date><Version>1.0</Version>\
         <Format>1.1</Format></ReportDetails><InventoryAction ActionType=\"Predefined\">\
         <InventoryActionID>{action}</InventoryActionID><Description>{description}</Description>\
         </InventoryAction></ReportHeader>"
    )
}

fn ddr(smsid: &str) -> String {
    format!(
        "<Report>{}<ReportBody><Instance Content=\"New\" Namespace=\"\\\\DEV\\root\\ccm\" \
         Class=\"CCM_DiscoveryData\" ParentClass=\"CCM_DiscoveryData\"><CCM_DiscoveryData>\
         <PlatformID>Appliance</PlatformID></CCM_DiscoveryData></Instance></ReportBody></Report>",
        report_header(smsid, DISCOVERY, "Discovery")
    )
}

fn hinv(smsid: &str) -> String {
    format!(
        "<Report>{}<ReportBody><Instance Content=\"New\" Namespace=\"\\\\DEV\\root\\cimv2\" \
         Class=\"Win32_Printer\" ParentClass=\"Win32_Printer\"><Win32_Printer><Name>Tray 1</Name>\
         </Win32_Printer></Instance></ReportBody></Report>",
        report_header(smsid, HARDWARE, "Hardware")
    )
}

/// The header-only report of a full one: `…</ReportHeader><ReportBody/></Report>`.
fn header_only(full: &str) -> String {
    let end = full.find("</ReportHeader>").unwrap() + "</ReportHeader>".len();
    format!("{}<ReportBody/></Report>", &full[..end])
}

// ---------------------------------------------------------------------------------------------
// HTTP and the site
// ---------------------------------------------------------------------------------------------

struct HttpReply {
    status: u16,
    body: Vec<u8>,
}

impl HttpReply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn exchange(addr: SocketAddr, body: &[u8]) -> HttpReply {
    let mut raw = format!(
        "CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp.test\r\nConnection: close\r\n\
         User-Agent: ConfigMgr Messaging HTTP Sender\r\n\
         Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(out[..split].to_vec()).unwrap();
    HttpReply {
        status: head[9..12].parse().unwrap(),
        body: out[split..].to_vec(),
    }
}

fn units(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The reply's header XML and its body part, inflated if the header lists `zlib-compress`.
fn reply_parts(r: &HttpReply) -> (String, Vec<u8>) {
    assert_eq!(r.status, 200, "{}", r.text());
    let b = &r.body;
    let delim = format!("\r\n--{BOUNDARY}");
    let find = |n: &[u8], from: usize| {
        b[from..]
            .windows(n.len())
            .position(|w| w == n)
            .map(|p| p + from)
            .unwrap()
    };
    let h_start = find(b"\r\n\r\n", 0) + 4;
    let h_end = find(delim.as_bytes(), h_start);
    let b_start = find(b"\r\n\r\n", h_end) + 4;
    let b_end = find(delim.as_bytes(), b_start);
    let header = &b[h_start..h_end];
    assert_eq!(&header[..2], &[0xFF, 0xFE]);
    let header = String::from_utf16(&units(&header[2..])).unwrap();
    let part = b[b_start..b_end].to_vec();
    let part = if header.contains("zlib-compress") {
        inflate(&part)
    } else {
        part
    };
    (header, part)
}

/// The reply body as a public tool that works against real MPs reads it: the body part decoded
/// as UTF-16, exactly one trailing character (the NUL) dropped. Asserts that real MPs' framing
/// holds: `Length` is the whole part and nothing follows the one NUL.
fn reply_xml(r: &HttpReply) -> String {
    let (header, part) = reply_parts(r);
    assert!(
        header.contains(&format!("Length=\"{}\"", part.len())),
        "{header} vs a part of {} bytes",
        part.len()
    );
    let text = String::from_utf16(&units(&part)).unwrap();
    let xml = text.strip_suffix('\0').expect("ends with a NUL");
    assert!(!xml.ends_with('\0') && !xml.ends_with('\n'), "{xml:?}");
    xml.to_string()
}

fn attr(xml: &str, name: &str) -> Option<String> {
    let pat = format!(" {name}=\"");
    let start = xml.find(&pat)? + pat.len();
    Some(xml[start..start + xml[start..].find('"')?].to_string())
}

struct Site {
    _dir: tempfile::TempDir,
    db_path: PathBuf,
    server: MpServer,
}

impl Site {
    async fn start(approval: Approval, strict: bool) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("site.db");
        let config = MpConfig {
            site_code: "P01".into(),
            db_path: db_path.clone(),
            approval,
            limits: Limits::default(),
            mp_host: "mp.test".into(),
            strict,
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

    fn db(&self) -> SiteDb {
        SiteDb::open(&self.db_path).unwrap()
    }

    async fn post(&self, body: Vec<u8>) -> HttpReply {
        let addr = self.server.local_addr();
        tokio::task::spawn_blocking(move || exchange(addr, &body))
            .await
            .unwrap()
    }

    /// Registration reply: (Status, SMSID).
    async fn register_with(
        &self,
        body: &str,
        framing: Framing,
        id: &str,
    ) -> (String, Option<String>) {
        let xml = reply_xml(&self.post(registration_message(body, framing, id)).await);
        assert!(xml.starts_with("<ClientRegistrationResponse"), "{xml}");
        (attr(&xml, "Status").unwrap(), attr(&xml, "SMSID"))
    }

    /// Registers `dev` proposing a fresh SMSID; asserts Status 0 and returns the SMSID.
    async fn registered(&self, dev: &Identity) -> String {
        let proposed = format!("GUID:{}", fresh_guid());
        let (status, smsid) = self
            .register_with(&registration_body(dev, &proposed), PLAIN, &fresh_id())
            .await;
        assert_eq!(status, "0");
        assert_eq!(smsid.as_deref(), Some(proposed.as_str()));
        proposed
    }

    /// A one-way message answered as real MPs answer it: 200, empty body.
    async fn answered_200_empty(&self, m: &Signed<'_>) {
        let r = self.post(m.build()).await;
        assert_eq!(r.status, 200, "{} {}", m.endpoint, r.text());
        assert!(r.body.is_empty(), "{}", r.text());
    }

    /// A rejection row whose reason contains `needle` exists.
    fn recorded(&self, needle: &str) {
        let rows = self.db().rejections().unwrap();
        assert!(
            rows.iter().any(|r| r.reason.contains(needle)),
            "no rejection with {needle:?} in {:?}",
            rows.iter().map(|r| &r.reason).collect::<Vec<_>>()
        );
    }

    fn bodies(&self) -> Vec<(String, String)> {
        self.db()
            .messages(None)
            .unwrap()
            .into_iter()
            .map(|m| (m.kind, m.body))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Requests with the CRLF inside the compressed part (the public tools), without it, and
/// uncompressed either way are all accepted; every reply ends at its one NUL, zlib or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_or_without_the_crlf_and_replies_ending_at_the_nul() {
    let site = Site::start(Approval::Auto, true).await;
    for compress in [true, false] {
        for crlf_inside in [true, false] {
            for zlib_reply in [true, false] {
                let dev = Identity::p256();
                let proposed = format!("GUID:{}", fresh_guid());
                let framing = Framing {
                    compress,
                    crlf_inside,
                    zlib_reply,
                };
                let (status, smsid) = site
                    .register_with(&registration_body(&dev, &proposed), framing, &fresh_id())
                    .await;
                let what = format!("compress {compress}, CRLF inside {crlf_inside}");
                assert_eq!(status, "0", "{what}");
                assert_eq!(smsid.as_deref(), Some(proposed.as_str()), "{what}");
            }
        }
    }
    assert!(site.db().rejections().unwrap().is_empty());
    // Anything but one CRLF after the ranges is refused with the reason, and the MP goes on.
    let dev = Identity::p256();
    let (mut s, body_len, _) = stream(&registration_body(&dev, ""), None, true);
    s.extend_from_slice(b"\r\n");
    let header = Header {
        endpoint: "MP_ClientRegistration",
        id: fresh_id(),
        source_id: None,
        hooks: String::new(),
        body_len,
        attachment: None,
        zlib_reply: false,
    };
    let r = site.post(multipart(&header.xml(), &s)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("only a CRLF may follow"), "{}", r.text());
    site.registered(&Identity::p256()).await;
}

/// Strict, approval pending: the first answer is Status 1 with the proposed SMSID; the real
/// client's Confirmation (no certificates, `Signature SMSID`, the registration's message ID) is
/// answered without SMSID, Status 1 until approved, then 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_pending_then_confirmations_without_smsid() {
    let site = Site::start(Approval::Pending, true).await;
    let dev = Identity::p256();
    let proposed = format!("GUID:{}", fresh_guid());
    let id = fresh_id();
    let (status, smsid) = site
        .register_with(&registration_body(&dev, &proposed), TOOLS, &id)
        .await;
    assert_eq!((status.as_str(), smsid.as_deref()), ("1", Some(&*proposed)));

    let (status, smsid) = site
        .register_with(&confirmation_body(&dev, &proposed), TOOLS, &id)
        .await;
    assert_eq!((status.as_str(), smsid), ("1", None));
    assert!(site.db().approve(&proposed).unwrap());
    let (status, smsid) = site
        .register_with(&confirmation_body(&dev, &proposed), PLAIN, &id)
        .await;
    assert_eq!((status.as_str(), smsid), ("0", None));

    // Not strict: the SMSID is named (today's diagnostics).
    let site = Site::start(Approval::Auto, false).await;
    let smsid = site.registered(&dev).await;
    let (status, named) = site
        .register_with(&confirmation_body(&dev, &smsid), PLAIN, &fresh_id())
        .await;
    assert_eq!((status.as_str(), named.as_deref()), ("0", Some(&*smsid)));
}

/// A proposed SMSID that another client holds is not given away: a fresh one is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposed_smsid_is_honoured_only_when_free() {
    let site = Site::start(Approval::Auto, true).await;
    let taken = site.registered(&Identity::p256()).await;
    let (status, smsid) = site
        .register_with(
            &registration_body(&Identity::p256(), &taken),
            PLAIN,
            &fresh_id(),
        )
        .await;
    assert_eq!(status, "0");
    let smsid = smsid.unwrap();
    assert!(smsid.starts_with("GUID:") && smsid != taken, "{smsid}");
}

/// Strict: a certificate outside its validity is refused with the dates, as a real MP's
/// "Registration request body is invalid".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_an_expired_certificate() {
    let site = Site::start(Approval::Auto, true).await;
    let old = Identity::p256_valid(expired());
    let r = site
        .post(registration_message(
            &registration_body(&old, ""),
            PLAIN,
            &fresh_id(),
        ))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("Registration request body is invalid")
            && r.text().contains("valid from"),
        "{}",
        r.text()
    );
    site.recorded("valid from");
    assert!(site.db().clients().unwrap().is_empty());
}

/// Strict: reports as body + attachment are stored from the attachment (the full report); a
/// single-body report and a pending client's report get 200 with an empty body and are dropped,
/// the reason recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_reports_travel_as_attachments_and_the_rest_is_dropped_quietly() {
    let site = Site::start(Approval::Auto, true).await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;

    site.answered_200_empty(&Signed::report("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev))
        .await;
    site.answered_200_empty(&Signed {
        framing: TOOLS,
        ..Signed::report("MP_HinvEndpoint", hinv(&smsid), &smsid, &dev)
    })
    .await;
    site.answered_200_empty(&Signed {
        framing: Framing {
            crlf_inside: false,
            ..TOOLS
        },
        ..Signed::report("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev)
    })
    .await;
    let bodies = site.bodies();
    let kinds: Vec<&str> = bodies.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["ddr", "hinv-full", "ddr"]);
    assert_eq!(bodies[0].1, ddr(&smsid), "stored from the attachment");
    assert_eq!(bodies[1].1, hinv(&smsid));

    // A single body: 200, nothing stored, the reason recorded.
    site.answered_200_empty(&Signed::new("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev))
        .await;
    assert_eq!(site.bodies().len(), 3);
    site.recorded("sent as a single body");
    site.recorded("(answered 200 with an empty body, as a real MP does)");

    // An attachment that is not `FF FE` + UTF-16LE: refused with the reason; the MP goes on.
    let mut bad = Signed::report("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev);
    bad.attachment = Some("\0".into());
    let r = site.post(bad.build()).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("attachment"), "{}", r.text());

    // A pending client's report: 200, dropped, recorded.
    let pending = Site::start(Approval::Pending, true).await;
    let dev2 = Identity::p256();
    let proposed = format!("GUID:{}", fresh_guid());
    let (status, _) = pending
        .register_with(&registration_body(&dev2, &proposed), PLAIN, &fresh_id())
        .await;
    assert_eq!(status, "1");
    pending
        .answered_200_empty(&Signed::report(
            "MP_DdrEndpoint",
            ddr(&proposed),
            &proposed,
            &dev2,
        ))
        .await;
    assert!(pending.bodies().is_empty());
    pending.recorded("pending approval");
}

/// Not strict: a single-body report is still stored (existing tests and tools rely on it), and
/// the attachment form too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_strict_takes_single_bodies_and_attachments() {
    let site = Site::start(Approval::Auto, false).await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;
    site.answered_200_empty(&Signed::new("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev))
        .await;
    site.answered_200_empty(&Signed::report("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev))
        .await;
    let bodies = site.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0].1, bodies[1].1);
}

/// Strict: identity and signature failures get 200 with an empty body, the reason recorded;
/// non-strict keeps the 403 with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_identity_and_signature_failures_are_answered_200_empty() {
    let site = Site::start(Approval::Auto, true).await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;
    site.answered_200_empty(&Signed {
        tamper: true,
        ..Signed::report("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev)
    })
    .await;
    site.recorded("PayloadSignature");
    let stranger = format!("GUID:{}", fresh_guid());
    site.answered_200_empty(&Signed::report(
        "MP_DdrEndpoint",
        ddr(&stranger),
        &stranger,
        &dev,
    ))
    .await;
    assert!(site.bodies().is_empty());
    assert_eq!(site.db().rejections().unwrap().len(), 2);

    let loud = Site::start(Approval::Auto, false).await;
    let smsid = loud.registered(&dev).await;
    let r = loud
        .post(
            Signed {
                tamper: true,
                ..Signed::report("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev)
            }
            .build(),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("PayloadSignature"), "{}", r.text());
}

/// `mp next-reply`: the next registration reply is Reset (2), Error (3) or CertificateReset (4),
/// without SMSID, once; after Reset the client registers afresh and gets its SMSID back; after
/// CertificateReset a new certificate proposing the same SMSID gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_reset_error_and_certificate_reset_replies() {
    let site = Site::start(Approval::Auto, true).await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;

    assert!(site.db().set_next_reply(&smsid, NextReply::Reset).unwrap());
    let body = registration_body(&dev, &smsid);
    let (status, named) = site.register_with(&body, PLAIN, &fresh_id()).await;
    assert_eq!((status.as_str(), named), ("2", None));
    let (status, named) = site.register_with(&body, PLAIN, &fresh_id()).await;
    assert_eq!((status.as_str(), named.as_deref()), ("0", Some(&*smsid)));

    assert!(site.db().set_next_reply(&smsid, NextReply::Error).unwrap());
    let (status, named) = site
        .register_with(&confirmation_body(&dev, &smsid), PLAIN, &fresh_id())
        .await;
    assert_eq!((status.as_str(), named), ("3", None));
    let (status, _) = site
        .register_with(&confirmation_body(&dev, &smsid), PLAIN, &fresh_id())
        .await;
    assert_eq!(status, "0", "an ordered reply is used once");

    assert!(site
        .db()
        .set_next_reply(&smsid, NextReply::CertificateReset)
        .unwrap());
    let (status, named) = site
        .register_with(&confirmation_body(&dev, &smsid), PLAIN, &fresh_id())
        .await;
    assert_eq!((status.as_str(), named), ("4", None));
    let renewed = Identity::p256();
    let (status, named) = site
        .register_with(&registration_body(&renewed, &smsid), PLAIN, &fresh_id())
        .await;
    assert_eq!((status.as_str(), named.as_deref()), ("0", Some(&*smsid)));
    let row = site.db().client(&smsid).unwrap().unwrap();
    assert_eq!(row.cert_der, renewed.cert_der);

    assert!(!site
        .db()
        .set_next_reply(&format!("GUID:{}", fresh_guid()), NextReply::Reset)
        .unwrap());
}

/// The shapes the public tools send: RSA with a CryptoAPI PUBLICKEYBLOB as `PublicKey`, zlib with
/// the CRLF inside, the Confirmation without certificates — in strict mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_tool_shapes_work_in_strict_mode() {
    let site = Site::start(Approval::Auto, true).await;
    let dev = Identity::rsa();
    let proposed = format!("GUID:{}", fresh_guid());
    let id = fresh_id();
    let (status, smsid) = site
        .register_with(&registration_body(&dev, &proposed), TOOLS, &id)
        .await;
    assert_eq!((status.as_str(), smsid.as_deref()), ("0", Some(&*proposed)));
    let (status, _) = site
        .register_with(&confirmation_body(&dev, &proposed), TOOLS, &id)
        .await;
    assert_eq!(status, "0");
    let mut m = Signed::report("MP_DdrEndpoint", ddr(&proposed), &proposed, &dev);
    m.public_key = dev.publickeyblob_hex();
    m.framing = TOOLS;
    site.answered_200_empty(&m).await;
    assert_eq!(site.bodies().len(), 1, "{:?}", site.db().rejections());
    assert!(site.db().rejections().unwrap().is_empty());
}

/// The raw HTTP request of `body`, as [`exchange`] sends it.
fn raw_request(body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp.test\r\nConnection: close\r\n\
         Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Runs the independent Python checker (`tests/interop/report_framing.py`) on a request.
fn check_framing(body: &[u8]) -> (bool, String) {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/report_framing.py");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), raw_request(body)).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(file.path())
        .output()
        .expect("python3 must be installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The checker written from docs/protocol.md accepts the body + attachment requests this MP stores,
/// in every framing, and refuses a single body, a NUL-terminated attachment and a stray byte.
#[test]
fn the_independent_checker_agrees_on_the_report_framing() {
    let dev = Identity::p256();
    let smsid = format!("GUID:{}", fresh_guid());
    for framing in [
        TOOLS,
        PLAIN,
        Framing {
            crlf_inside: false,
            ..TOOLS
        },
    ] {
        let m = Signed {
            framing,
            ..Signed::report("MP_HinvEndpoint", hinv(&smsid), &smsid, &dev)
        };
        let (ok, out) = check_framing(&m.build());
        assert!(ok, "{out}");
        assert!(out.contains("ENDPOINT=MP_HinvEndpoint\n") && out.contains("INSTANCES=1\n"));
        let crlf = if framing.crlf_inside { "yes" } else { "no" };
        assert!(out.contains(&format!("CRLF_INSIDE={crlf}\n")), "{out}");
    }
    let (ok, out) =
        check_framing(&Signed::new("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev).build());
    assert!(!ok && out.contains("0 Attachment elements"), "{out}");
    let mut nul = Signed::report("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev);
    nul.attachment = Some(format!("{}\0", ddr(&smsid)));
    let (ok, out) = check_framing(&nul.build());
    assert!(!ok && out.contains("NUL inside"), "{out}");
    let (ok, out) = check_framing(
        &Signed {
            tamper: true,
            ..Signed::report("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev)
        }
        .build(),
    );
    assert!(!ok && out.contains("only a CRLF may follow"), "{out}");
}

fn request_assignments(smsid: &str) -> String {
    format!(
        "<RequestAssignments SchemaVersion=\"1.00\" ACK=\"false\" RequestType=\"Always\">\
         <Identification><Machine><ClientID>{smsid}</ClientID><FQDN>dev.example.com</FQDN>\
         <NetBIOSName>DEV</NetBIOSName><SID/></Machine><User/></Identification>\
         <PolicySource>SMS:P01</PolicySource><Resource ResourceType=\"Machine\"/><ServerCookie/>\
         </RequestAssignments>"
    )
}

/// `GET /SMS_MP/.sms_pol?{query}` with a `ClientToken` signed by `dev`: (status, body).
fn get_policy_body(addr: SocketAddr, query: &str, smsid: &str, dev: &Identity) -> (u16, Vec<u8>) {
    let token = format!("{smsid};{};2", now_stamp());
    let raw = format!(
        "GET /SMS_MP/.sms_pol?{query} HTTP/1.1\r\nHost: mp.test\r\nConnection: close\r\n\
         ClientToken: {token}\r\nClientTokenSignature: {}\r\n\r\n",
        dev.sign(&utf16le_nul(&token))
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    (status, out[split..].to_vec())
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode_upper(sha2::Sha256::digest(b))
}

/// Strict policy: nothing assigned → 200 with an empty body; an assignment's location is
/// addressed by hash (`.SHA256:`) and `PolicyHash` is the served body's SHA-256; the tampering
/// hook serves another body under the same announced hash, and the published one again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_policy_by_hash_empty_when_nothing_and_a_tampering_hook() {
    use mpagent_sim::mp::db::{NewPolicy, PolicyTarget};
    let site = Site::start(Approval::Auto, true).await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;
    let ask = || Signed {
        framing: TOOLS,
        ..Signed::new(
            "MP_PolicyManager",
            request_assignments(&smsid),
            &smsid,
            &dev,
        )
    };
    site.answered_200_empty(&ask()).await;

    let id = "{5C4D3A3E-0000-4000-8000-000000000001}";
    let honest = "<Policy><Setting Name=\"Duplex\" Value=\"on\"/></Policy>";
    site.db()
        .add_policy(&NewPolicy {
            policy_id: id,
            version: "1.00",
            target: PolicyTarget::All,
            category: None,
            flags: 0,
            body: honest,
        })
        .unwrap();
    let xml = reply_xml(&site.post(ask().build()).await);
    let hash = attr(&xml, "PolicyHash").unwrap();
    let hash = hash.strip_prefix("SHA256:").unwrap().to_string();
    let location = format!("<![CDATA[http://<mp>/SMS_MP/.sms_pol?{id}.SHA256:{hash}]]>");
    assert!(xml.contains(&location), "{xml}");

    let addr = site.server.local_addr();
    let query = format!("{id}.SHA256:{hash}");
    let (status, body) = get_policy_body(addr, &query, &smsid, &dev);
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), hash);
    let mut expected = vec![0xFF, 0xFE];
    expected.extend_from_slice(&utf16le(honest));
    assert_eq!(body, expected);
    // The version form keeps working.
    let (status, by_version) = get_policy_body(addr, &format!("{id}.1.00"), &smsid, &dev);
    assert_eq!((status, by_version), (200, body.clone()));
    // A hash no body has: 404 with the reason.
    let (status, _) = get_policy_body(
        addr,
        &format!("{id}.SHA256:{}", "0".repeat(64)),
        &smsid,
        &dev,
    );
    assert_eq!(status, 404);

    let db = site.db();
    assert!(db
        .tamper_policy(
            id,
            "1.00",
            Some("<Policy><Setting Name=\"Duplex\" Value=\"oo\"/></Policy>")
        )
        .unwrap());
    let (status, tampered) = get_policy_body(addr, &query, &smsid, &dev);
    assert_eq!(status, 200);
    assert_ne!(sha256_hex(&tampered), hash, "served under the honest hash");
    let again = reply_xml(&site.post(ask().build()).await);
    assert!(
        again.contains(&location),
        "the assignment still announces the published body"
    );
    assert!(db.tamper_policy(id, "1.00", None).unwrap());
    let (_, restored) = get_policy_body(addr, &query, &smsid, &dev);
    assert_eq!(restored, body);
    assert!(!db.tamper_policy("{NOPE}", "1.00", None).unwrap());
}
