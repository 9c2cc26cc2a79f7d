//! End-to-end tests of the MP emulator's signed endpoints over real TCP (docs/protocol.md §5):
//! discovery, hardware inventory, status and state messages, policy assignments and policy bodies,
//! with the `clientauth` hook, ISV proxies, duplicates and the `SentTime` window. Everything sent
//! here is built by hand from the spec (hand-written XML, UTF-16LE, multipart, P-256 / RSA
//! signatures), independently of both the core and the emulator's own parsers.

use mpagent_sim::mp::db::{ClientStatus, NewPolicy, PolicyTarget, SiteDb};
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

// ---------------------------------------------------------------------------------------------
// Identities and signatures (docs/protocol.md §6)
// ---------------------------------------------------------------------------------------------

enum Key {
    P256(SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

struct Identity {
    key: Key,
    cert_der: Vec<u8>,
}

fn validity() -> x509_cert::time::Validity {
    x509_cert::time::Validity::from_now(Duration::from_secs(365 * 86_400)).unwrap()
}

impl Identity {
    fn p256() -> Identity {
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
            validity(),
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
            validity(),
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

    /// P-256: raw r||s; RSA: PKCS#1 v1.5 SHA-256, byte-reversed. Hex upper.
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

    /// A CryptoAPI PUBLICKEYBLOB of an RSA key (what Windows clients send as PublicKey).
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

fn fresh_id() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    let h = hex::encode_upper(b);
    format!(
        "{{{}-{}-{}-{}-{}}}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

// ---------------------------------------------------------------------------------------------
// Messages (docs/protocol.md §2, §3, §5)
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

/// A signed message, with knobs to get it wrong.
#[derive(Clone)]
struct Signed<'a> {
    endpoint: &'static str,
    body: String,
    source_id: String,
    signer: &'a Identity,
    public_key: String,
    proxy: Option<String>,
    id: String,
    sent_time: Option<String>,
    compress: bool,
    /// What ClientIDSignature covers (before UTF-16LE + NUL).
    signed_client_id: String,
    /// Sign the inflated bytes instead of the compressed ones.
    sign_inflated: bool,
    /// Replace this text in the body after signing.
    tamper: Option<(&'static str, &'static str)>,
    with_hook: bool,
}

impl<'a> Signed<'a> {
    fn new(endpoint: &'static str, body: String, smsid: &str, signer: &'a Identity) -> Self {
        Signed {
            endpoint,
            body,
            source_id: smsid.to_string(),
            signer,
            public_key: signer.cert_hex(),
            proxy: None,
            id: fresh_id(),
            sent_time: Some(now_stamp()),
            compress: false,
            signed_client_id: smsid.to_ascii_uppercase(),
            sign_inflated: false,
            tamper: None,
            with_hook: true,
        }
    }

    fn octet(body: &str, compress: bool) -> (Vec<u8>, usize, Vec<u8>) {
        let mut stream = utf16le_nul(body);
        let len = stream.len();
        stream.extend_from_slice(b"\r\n");
        let wire = if compress {
            zlib(&stream)
        } else {
            stream.clone()
        };
        (wire, len, stream)
    }

    fn build(&self) -> Vec<u8> {
        let (wire, len, inflated) = Self::octet(&self.body, self.compress);
        let payload_sig = self
            .signer
            .sign(if self.sign_inflated { &inflated } else { &wire });
        let wire = match self.tamper {
            Some((from, to)) => {
                let t = self.body.replacen(from, to, 1);
                assert_ne!(t, self.body, "tamper pattern not found");
                Self::octet(&t, self.compress).0
            }
            None => wire,
        };
        let id_sig = self.signer.sign(&utf16le_nul(&self.signed_client_id));
        let proxy = self
            .proxy
            .as_ref()
            .map(|p| format!("<Property Name=\"ProxySMSID\">{p}</Property>"))
            .unwrap_or_default();
        let auth = if self.with_hook {
            format!(
                "<Hook2 Name=\"clientauth\"><Property Name=\"AuthSenderMachine\">DEV</Property>\
                 <Property Name=\"PublicKey\">{}</Property><Property Name=\"ClientIDSignature\">{id_sig}</Property>\
                 <Property Name=\"PayloadSignature\">{payload_sig}</Property>\
                 <Property Name=\"ClientCapabilities\">NonSSL</Property>\
                 <Property Name=\"HashAlgorithm\">{}</Property>{proxy}</Hook2>",
                self.public_key,
                self.signer.oid()
            )
        } else {
            String::new()
        };
        let zhook = if self.compress {
            "<Hook3 Name=\"zlib-compress\" />"
        } else {
            ""
        };
        let hooks = if auth.is_empty() && zhook.is_empty() {
            String::new()
        } else {
            format!("<Hooks>{auth}{zhook}</Hooks>")
        };
        let sent = self
            .sent_time
            .as_ref()
            .map(|t| format!("<SentTime>{t}</SentTime>"))
            .unwrap_or_default();
        let mode = if self.endpoint == "MP_PolicyManager" {
            "Sync"
        } else {
            "ASync"
        };
        let header = format!(
            "<Msg SchemaVersion=\"1.1\"><Body Type=\"ByteRange\" Length=\"{len}\" Offset=\"0\" />\
             <CorrelationID>{{00000000-0000-0000-0000-000000000000}}</CorrelationID>{hooks}\
             <ID>{id}</ID><Payload Type=\"inline\" /><Priority>0</Priority><Protocol>http</Protocol>\
             <ReplyMode>{mode}</ReplyMode><ReplyTo>direct:DEV:SccmMessaging</ReplyTo>{sent}\
             <SourceID>{src}</SourceID><SourceHost>DEV</SourceHost>\
             <TargetAddress>mp:{ep}</TargetAddress><TargetEndpoint>{ep}</TargetEndpoint>\
             <TargetHost>mp.test</TargetHost><Timeout>60000</Timeout></Msg>",
            id = self.id,
            src = self.source_id,
            ep = self.endpoint,
        );
        multipart(&header, &wire)
    }
}

fn report_header(smsid: &str, rtype: &str, action: &str, description: &str) -> String {
    format!(
        "<ReportHeader><Identification><Machine><ClientInstalled>1</ClientInstalled>\
         <ClientType>1</ClientType><ClientID>{smsid}</ClientID><ClientVersion>0.1.0</ClientVersion>\
         <NetBIOSName>DEV</NetBIOSName><CodePage>1252</CodePage><SystemDefaultLCID>1033</SystemDefaultLCID>\
         </Machine></Identification><ReportDetails><ReportContent>Inventory Data</ReportContent>\
         <ReportType>{rtype}</ReportType><Date>20261125120000.000000+000</Date><Version>1.0</Version>\
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
        report_header(
            smsid,
            "Full",
            "{00000000-0000-0000-0000-000000000003}",
            "Discovery"
        )
    )
}

fn hinv(smsid: &str, rtype: &str, items: usize) -> String {
    let mut body = String::new();
    for i in 0..items {
        body.push_str(&format!(
            "<Instance Content=\"New\" Namespace=\"\\\\DEV\\root\\cimv2\" Class=\"Win32_Printer\" \
             ParentClass=\"Win32_Printer\"><Win32_Printer><Name>Tray {i}</Name><PagesPrinted>{}</PagesPrinted>\
             </Win32_Printer></Instance>",
            i * 7
        ));
    }
    format!(
        "<Report>{}<ReportBody>{body}</ReportBody></Report>",
        report_header(
            smsid,
            rtype,
            "{00000000-0000-0000-0000-000000000001}",
            "Hardware"
        )
    )
}

fn status() -> String {
    "<Status><Type>Milestone</Type><Properties><Property Name=\"MessageID\" Value=\"10002\"/>\
     <Property Name=\"Component\" Value=\"mpagent\"/></Properties><Qualifiers>\
     <Qualifier Name=\"Severity\" Value=\"Informational\"/></Qualifiers></Status>"
        .to_string()
}

fn state(smsid: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?><Report>{}<ReportBody><StateMessage>\
         <Topic ID=\"{{P1}}\" Type=\"500\" IDType=\"0\"/><State ID=\"1\" Criticality=\"0\"/>\
         <StateDetails Type=\"1\"><![CDATA[<Applied/>]]></StateDetails><UserParameters>\
         <Param>x</Param></UserParameters></StateMessage></ReportBody></Report>",
        report_header(
            smsid,
            "Full",
            "{00000000-0000-0000-0000-000000000111}",
            "State Message"
        )
    )
}

fn request_assignments(smsid: &str, site: &str) -> String {
    format!(
        "<RequestAssignments SchemaVersion=\"1.00\" ACK=\"false\" RequestType=\"Always\">\
         <Identification><Machine><ClientID>{smsid}</ClientID><FQDN>dev.example.com</FQDN>\
         <NetBIOSName>DEV</NetBIOSName><SID/></Machine><User/></Identification>\
         <PolicySource>SMS:{site}</PolicySource><Resource ResourceType=\"Machine\"/><ServerCookie/>\
         </RequestAssignments>"
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

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

fn exchange(addr: SocketAddr, raw: &[u8]) -> HttpReply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(out[..split].to_vec()).unwrap();
    HttpReply {
        status: head[9..12].parse().unwrap(),
        head,
        body: out[split..].to_vec(),
    }
}

fn units(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The body XML of a reply message (uncompressed replies only: we never ask for zlib).
fn reply_body(r: &HttpReply) -> String {
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
    let h_end = find(delim.as_bytes(), 0);
    let b_start = find(b"\r\n\r\n", h_end) + 4;
    let b_end = find(delim.as_bytes(), b_start);
    let part = &b[b_start..b_end];
    // Real MPs' framing (docs/protocol.md §2): the text and exactly one NUL, nothing after it.
    assert!(part.ends_with(&[0, 0]) && !part[..part.len() - 2].ends_with(&[0, 0]));
    String::from_utf16(&units(&part[..part.len() - 2])).unwrap()
}

fn attr(xml: &str, name: &str) -> Option<String> {
    let pat = format!(" {name}=\"");
    let start = xml.find(&pat)? + pat.len();
    Some(xml[start..start + xml[start..].find('"')?].to_string())
}

// ---------------------------------------------------------------------------------------------
// Site fixture
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
            site_code: "P01".into(),
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

    async fn auto() -> Site {
        Site::start(Approval::Auto, Limits::default()).await
    }

    fn db(&self) -> SiteDb {
        SiteDb::open(&self.db_path).unwrap()
    }

    async fn raw(&self, raw: Vec<u8>) -> HttpReply {
        let addr = self.server.local_addr();
        tokio::task::spawn_blocking(move || exchange(addr, &raw))
            .await
            .unwrap()
    }

    async fn post(&self, body: Vec<u8>) -> HttpReply {
        let mut raw = format!(
            "CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp.test\r\nConnection: close\r\n\
             User-Agent: ConfigMgr Messaging HTTP Sender\r\n\
             Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        self.raw(raw).await
    }

    async fn send(&self, m: &Signed<'_>) -> HttpReply {
        self.post(m.build()).await
    }

    /// Sends and expects the one-way answer: 200 with an empty body.
    async fn accepted(&self, m: &Signed<'_>) {
        let r = self.send(m).await;
        assert_eq!(r.status, 200, "{} {}", m.endpoint, r.text());
        assert!(r.body.is_empty(), "{}", r.text());
    }

    /// Asserts a 403 whose reason contains `needle`, logged in the rejection table.
    async fn refused(&self, m: &Signed<'_>, needle: &str) {
        let r = self.send(m).await;
        self.assert_refused(&r, needle);
    }

    fn assert_refused(&self, r: &HttpReply, needle: &str) {
        assert_eq!(r.status, 403, "expected 403 with {needle:?}: {}", r.text());
        assert!(
            r.text().contains(needle),
            "reason {:?} lacks {needle:?}",
            r.text()
        );
        let rows = self.db().rejections().unwrap();
        assert!(
            rows.iter().any(|row| row.reason.contains(needle)),
            "no rejection row with {needle:?}"
        );
    }

    /// Registers over the wire; `proxy` = (proxy identity, proxy SMSID) signs for AgentType 8.
    async fn register(
        &self,
        dev: &Identity,
        agent_type: u8,
        proxy: Option<(&Identity, &str)>,
    ) -> (String, String) {
        let data = format!(
            "<Data HashAlgorithm=\"{oid}\" SMSID=\"\" RequestType=\"Registration\" TimeStamp=\"{t}\">\
             <AgentInformation AgentIdentity=\"test\" AgentVersion=\"1\" AgentType=\"{agent_type}\" />\
             <Certificates><Encryption Encoding=\"HexBinary\" KeyType=\"1\">{c}</Encryption>\
             <Signing Encoding=\"HexBinary\" KeyType=\"1\">{c}</Signing></Certificates>\
             <DiscoveryProperties><Property Name=\"Netbios Name\" Value=\"DEV\" />\
             <Property Name=\"FQ Name\" Value=\"dev.example.com\" /></DiscoveryProperties></Data>",
            oid = proxy.map_or(dev, |p| p.0).oid(),
            t = now_stamp(),
            c = dev.cert_hex()
        );
        let (signer, attr_smsid) = match proxy {
            Some((p, id)) => (p, format!(" SMSID=\"{id}\"")),
            None => (dev, String::new()),
        };
        let body = format!(
            "<ClientRegistrationRequest>{data}<Signature{attr_smsid}><SignatureValue>{}\
             </SignatureValue></Signature></ClientRegistrationRequest>",
            signer.sign(&utf16le(&data))
        );
        let (octet, len, _) = Signed::octet(&body, false);
        let header = format!(
            "<Msg SchemaVersion=\"1.1\"><Body Type=\"ByteRange\" Length=\"{len}\" Offset=\"0\" />\
             <ID>{}</ID><ReplyMode>Sync</ReplyMode><ReplyTo>direct:DEV:SccmMessaging</ReplyTo>\
             <SentTime>{}</SentTime><SourceHost>DEV</SourceHost>\
             <TargetEndpoint>MP_ClientRegistration</TargetEndpoint></Msg>",
            fresh_id(),
            now_stamp()
        );
        let reply = reply_body(&self.post(multipart(&header, &octet)).await);
        (
            attr(&reply, "SMSID").expect("SMSID"),
            attr(&reply, "Status").unwrap(),
        )
    }

    async fn registered(&self, dev: &Identity) -> String {
        let (smsid, status) = self.register(dev, 0, None).await;
        assert_eq!(status, "0");
        smsid
    }

    fn stored(&self) -> usize {
        self.db().messages(None).unwrap().len()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_accepts_a_correctly_signed_message() {
    let site = Site::auto().await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;
    // The report may name the client in lower case; SourceID is upper case.
    let lower = smsid.to_ascii_lowercase();

    let msgs = [
        Signed::new("MP_DdrEndpoint", ddr(&lower), &smsid, &dev),
        Signed::new("MP_HinvEndpoint", hinv(&smsid, "Full", 3), &smsid, &dev),
        Signed {
            compress: true,
            ..Signed::new("MP_HinvEndpoint", hinv(&smsid, "Delta", 1), &smsid, &dev)
        },
        Signed::new("StatusReceiver", status(), &smsid, &dev),
        Signed::new("MP_RelayEndpoint", state(&smsid), &smsid, &dev),
    ];
    for m in &msgs {
        site.accepted(m).await;
    }
    let rows = site.db().messages(Some(&lower)).unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["ddr", "hinv-full", "hinv-delta", "status", "state"]);
    for (row, m) in rows.iter().zip(&msgs) {
        assert_eq!(row.smsid, smsid);
        assert_eq!(row.endpoint, m.endpoint);
        assert_eq!(row.message_id, m.id);
        assert_eq!(row.body, m.body, "the body is stored as received");
        assert_eq!(row.via_proxy, None);
        assert_eq!(row.sent_time.as_deref(), m.sent_time.as_deref());
    }
    assert!(site.db().rejections().unwrap().is_empty());
    assert!(site.db().messages(Some(&fresh_smsid())).unwrap().is_empty());

    // A larger inventory (1000 instances, about 450 kB of UTF-16) is accepted too.
    site.accepted(&Signed::new(
        "MP_HinvEndpoint",
        hinv(&smsid, "Full", 1000),
        &smsid,
        &dev,
    ))
    .await;
    assert_eq!(site.stored(), 6);
    site.server.shutdown().await;
}

fn fresh_smsid() -> String {
    format!("GUID:{}", fresh_id().trim_matches(['{', '}']))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_messages_are_refused_and_nothing_is_stored() {
    let site = Site::auto().await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;
    let other = Identity::p256();
    let other_smsid = site.registered(&other).await;
    let stranger = Identity::p256(); // never registered
    let good = || Signed::new("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev);

    // Signed by another key, with the right certificate as PublicKey.
    site.refused(
        &Signed {
            signer: &other,
            public_key: dev.cert_hex(),
            ..good()
        },
        "ClientIDSignature for",
    )
    .await;
    // Another client's key and certificate, claiming this SMSID (SMSID spoofing).
    site.refused(
        &Signed {
            signer: &other,
            public_key: other.cert_hex(),
            ..good()
        },
        &format!("PublicKey is not the certificate registered for {smsid}"),
    )
    .await;
    // A key the site never saw.
    site.refused(
        &Signed {
            signer: &stranger,
            public_key: stranger.cert_hex(),
            ..good()
        },
        "PublicKey is not the certificate registered",
    )
    .await;
    // The body changed after signing.
    site.refused(
        &Signed {
            tamper: Some(("Appliance", "Applianck")),
            ..good()
        },
        "PayloadSignature: signature does not verify",
    )
    .await;
    // ClientIDSignature over the lower-case, the other client's, or a NUL-less ID.
    for bad_id in [smsid.to_ascii_lowercase(), other_smsid.clone()] {
        site.refused(
            &Signed {
                signed_client_id: bad_id,
                ..good()
            },
            "ClientIDSignature for",
        )
        .await;
    }
    // Compressed, but signed over the inflated bytes.
    site.refused(
        &Signed {
            compress: true,
            sign_inflated: true,
            ..good()
        },
        "PayloadSignature",
    )
    .await;
    // Unknown, malformed or missing SourceID; no hook.
    let ghost = fresh_smsid();
    site.refused(
        &Signed {
            source_id: ghost.clone(),
            signed_client_id: ghost.clone(),
            body: ddr(&ghost),
            ..good()
        },
        "is not a registered client",
    )
    .await;
    site.refused(
        &Signed {
            source_id: "GUID:{nope}".into(),
            ..good()
        },
        "is not a GUID",
    )
    .await;
    site.refused(
        &Signed {
            source_id: String::new(),
            ..good()
        },
        "without a SourceID",
    )
    .await;
    site.refused(
        &Signed {
            with_hook: false,
            ..good()
        },
        "without a clientauth hook",
    )
    .await;
    site.refused(
        &Signed {
            public_key: "ZZ".into(),
            ..good()
        },
        "bad hex in PublicKey",
    )
    .await;
    // Correctly signed, but the report names another client.
    site.refused(
        &Signed {
            body: ddr(&other_smsid),
            ..good()
        },
        "is not the sender's SourceID",
    )
    .await;
    site.refused(
        &Signed {
            endpoint: "StatusReceiver",
            body: status().replace(
                "<Properties>",
                &format!("<Properties><Property Name=\"ClientID\" Value=\"{other_smsid}\"/>"),
            ),
            ..good()
        },
        "ClientID property",
    )
    .await;
    // Correctly signed, but the wrong shape for the endpoint, or a DTD.
    site.refused(
        &Signed {
            endpoint: "MP_HinvEndpoint",
            ..good()
        },
        "InventoryActionID",
    )
    .await;
    site.refused(
        &Signed {
            body: format!("<!DOCTYPE Report [<!ENTITY x \"y\">]>{}", ddr(&smsid)),
            ..good()
        },
        "document type",
    )
    .await;
    site.refused(
        &Signed {
            endpoint: "MP_RelayEndpoint",
            body: state(&smsid).replacen("<?xml version=\"1.0\" encoding=\"UTF-16\"?>", "", 1),
            ..good()
        },
        "<?xml",
    )
    .await;
    site.refused(
        &Signed {
            endpoint: "MP_SinvEndpoint",
            ..good()
        },
        "unsupported endpoint",
    )
    .await;
    assert_eq!(site.stored(), 0, "nothing refused was stored");
    let rows = site.db().rejections().unwrap();
    assert!(rows
        .iter()
        .all(|r| r.peer == "127.0.0.1" && r.endpoint.is_some()));

    // The honest client is still served, and its RSA peers too (PUBLICKEYBLOB as PublicKey).
    site.accepted(&good()).await;
    let rsa_dev = Identity::rsa();
    let rsa_smsid = site.registered(&rsa_dev).await;
    let blob = rsa_dev.publickeyblob_hex();
    site.accepted(&Signed {
        public_key: blob.clone(),
        compress: true,
        ..Signed::new("MP_DdrEndpoint", ddr(&rsa_smsid), &rsa_smsid, &rsa_dev)
    })
    .await;
    site.accepted(&Signed::new(
        "StatusReceiver",
        status(),
        &rsa_smsid,
        &rsa_dev,
    ))
    .await;
    // A PUBLICKEYBLOB of another RSA key is refused.
    let rsa_other = Identity::rsa();
    site.refused(
        &Signed {
            public_key: rsa_other.publickeyblob_hex(),
            ..Signed::new("StatusReceiver", status(), &rsa_smsid, &rsa_dev)
        },
        "PublicKey is not the certificate",
    )
    .await;
    assert_eq!(site.stored(), 3);
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_and_rejected_clients_may_not_send() {
    let site = Site::start(Approval::Pending, Limits::default()).await;
    let dev = Identity::p256();
    let (smsid, status) = site.register(&dev, 0, None).await;
    assert_eq!(status, "1");
    let ddr_msg = || Signed::new("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev);
    site.refused(&ddr_msg(), "pending approval").await;
    site.refused(
        &Signed::new("MP_HinvEndpoint", hinv(&smsid, "Full", 1), &smsid, &dev),
        "pending approval",
    )
    .await;
    site.refused(
        &Signed::new(
            "MP_PolicyManager",
            request_assignments(&smsid, "P01"),
            &smsid,
            &dev,
        ),
        "pending approval",
    )
    .await;
    assert_eq!(site.stored(), 0);

    assert!(site.db().approve(&smsid).unwrap());
    site.accepted(&ddr_msg()).await;
    assert!(site.db().reject(&smsid).unwrap());
    site.refused(&ddr_msg(), "rejected").await;
    assert_eq!(site.stored(), 1);
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_message_is_stored_once() {
    let site = Site::auto().await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;
    let first = Signed::new("MP_HinvEndpoint", hinv(&smsid, "Full", 2), &smsid, &dev);
    site.accepted(&first).await;
    // The same message again (fresh signatures), its ID in lower case, and a retry restamped
    // much later: all answered 200, none stored.
    site.accepted(&first).await;
    site.accepted(&Signed {
        id: first.id.to_ascii_lowercase(),
        ..first.clone()
    })
    .await;
    site.accepted(&Signed {
        sent_time: Some("2020-01-01T00:00:00Z".into()),
        ..first.clone()
    })
    .await;
    assert_eq!(site.stored(), 1);
    let dups = site
        .db()
        .events()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "duplicate")
        .count();
    assert_eq!(dups, 3);
    // A duplicate is only recognised once authenticated.
    let forged = Signed {
        signer: &Identity::p256(),
        ..first.clone()
    };
    let r = site.post(forged.build()).await;
    site.assert_refused(&r, "ClientIDSignature");

    // Message IDs are per client: another client may use the same ID.
    let dev2 = Identity::p256();
    let smsid2 = site.registered(&dev2).await;
    site.accepted(&Signed {
        id: first.id.clone(),
        ..Signed::new("MP_HinvEndpoint", hinv(&smsid2, "Full", 2), &smsid2, &dev2)
    })
    .await;
    assert_eq!(site.stored(), 2);
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_time_outside_the_window_is_refused() {
    let site = Site::start(
        Approval::Auto,
        Limits {
            sent_time_window: Duration::from_secs(600),
            ..Limits::default()
        },
    )
    .await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;
    let msg = |t: Option<String>| Signed {
        sent_time: t,
        ..Signed::new("MP_DdrEndpoint", ddr(&smsid), &smsid, &dev)
    };
    site.refused(
        &msg(Some("2020-01-01T00:00:00Z".into())),
        "behind the MP clock (window ±600 s)",
    )
    .await;
    site.refused(
        &msg(Some(utc_timestamp_at(now_unix() + 3600))),
        "ahead of the MP clock",
    )
    .await;
    site.refused(&msg(None), "without SentTime").await;
    site.refused(&msg(Some("25/11/2026 12:00".into())), "is not YYYY")
        .await;
    assert_eq!(site.stored(), 0);
    site.accepted(&msg(Some(utc_timestamp_at(now_unix() - 300))))
        .await;
    assert_eq!(site.stored(), 1);
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isv_proxy_speaks_only_for_the_clients_it_registered() {
    let site = Site::auto().await;
    let proxy = Identity::p256();
    let proxy_smsid = site.db().import_cert(&proxy.cert_der).unwrap();
    assert_eq!(site.register(&proxy, 4, None).await.0, proxy_smsid);
    let thing = Identity::p256();
    let (thing_smsid, st) = site.register(&thing, 8, Some((&proxy, &proxy_smsid))).await;
    assert_eq!(st, "0");

    // The proxy speaks for its client: its key, its certificate, ProxySMSID.
    let via = |m: Signed<'_>| -> Vec<u8> {
        Signed {
            proxy: Some(proxy_smsid.clone()),
            ..m
        }
        .build()
    };
    let for_thing = || Signed::new("MP_DdrEndpoint", ddr(&thing_smsid), &thing_smsid, &proxy);
    let r = site.post(via(for_thing())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = site.db().messages(Some(&thing_smsid)).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].via_proxy.as_deref(), Some(proxy_smsid.as_str()));

    // Without ProxySMSID, whoever signs: refused (the client must be spoken for by its proxy).
    site.refused(&for_thing(), "must be signed by that proxy")
        .await;
    site.refused(
        &Signed::new("MP_DdrEndpoint", ddr(&thing_smsid), &thing_smsid, &thing),
        "must be signed by that proxy",
    )
    .await;
    // ProxySMSID named but the client's own key and certificate used.
    site.refused(
        &Signed {
            proxy: Some(proxy_smsid.clone()),
            ..Signed::new("MP_DdrEndpoint", ddr(&thing_smsid), &thing_smsid, &thing)
        },
        &format!("PublicKey is not the certificate of proxy {proxy_smsid}"),
    )
    .await;

    // The proxy cannot speak for a single client that registered itself ...
    let single = Identity::p256();
    let single_smsid = site.registered(&single).await;
    let r = site
        .post(via(Signed::new(
            "MP_DdrEndpoint",
            ddr(&single_smsid),
            &single_smsid,
            &proxy,
        )))
        .await;
    site.assert_refused(&r, "did not register");
    // ... nor for another proxy's client.
    let proxy2 = Identity::p256();
    let proxy2_smsid = site.db().import_cert(&proxy2.cert_der).unwrap();
    site.register(&proxy2, 4, None).await;
    let thing2 = Identity::p256();
    let (thing2_smsid, _) = site
        .register(&thing2, 8, Some((&proxy2, &proxy2_smsid)))
        .await;
    let r = site
        .post(via(Signed::new(
            "MP_DdrEndpoint",
            ddr(&thing2_smsid),
            &thing2_smsid,
            &proxy,
        )))
        .await;
    site.assert_refused(
        &r,
        &format!("proxy {proxy_smsid} did not register {thing2_smsid}"),
    );
    // A single client naming itself as proxy, or a proxy naming an SMSID that is no proxy.
    site.refused(
        &Signed {
            proxy: Some(single_smsid.clone()),
            ..Signed::new("MP_DdrEndpoint", ddr(&thing_smsid), &thing_smsid, &single)
        },
        "did not register",
    )
    .await;
    // A single client's own key cannot speak for another SMSID either.
    site.refused(
        &Signed::new("MP_DdrEndpoint", ddr(&thing_smsid), &single_smsid, &single),
        "is not the sender's SourceID",
    )
    .await;
    site.refused(
        &Signed {
            signed_client_id: thing_smsid.clone(),
            source_id: thing_smsid.clone(),
            ..Signed::new("MP_DdrEndpoint", ddr(&thing_smsid), &single_smsid, &single)
        },
        "must be signed by that proxy",
    )
    .await;
    // The proxy's own messages use its own identity, without ProxySMSID.
    site.accepted(&Signed::new(
        "StatusReceiver",
        status(),
        &proxy_smsid,
        &proxy,
    ))
    .await;
    assert_eq!(site.stored(), 2);
    site.server.shutdown().await;
}

/// `ClientToken` + `ClientTokenSignature` headers for `smsid` at `time`, signed by `key`.
fn token_headers(smsid: &str, time: &str, key: &Identity) -> (String, String) {
    let token = format!("{smsid};{time};2");
    let sig = key.sign(&utf16le_nul(&token));
    (token, sig)
}

fn policy_get(path_query: &str, token: Option<(String, String)>) -> Vec<u8> {
    let mut raw = format!("GET {path_query} HTTP/1.1\r\nHost: mp.test\r\nConnection: close\r\n");
    if let Some((t, s)) = token {
        raw.push_str(&format!(
            "ClientToken: {t}\r\nClientTokenSignature: {s}\r\n"
        ));
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_round_trip() {
    let site = Site::auto().await;
    let dev = Identity::p256();
    let smsid = site.registered(&dev).await;
    let other = Identity::p256();
    let other_smsid = site.registered(&other).await;

    // Nothing assigned yet: a reply without assignments.
    let ask = || {
        Signed::new(
            "MP_PolicyManager",
            request_assignments(&smsid, "P01"),
            &smsid,
            &dev,
        )
    };
    let empty = reply_body(&site.send(&ask()).await);
    assert!(empty.starts_with("<ReplyAssignments"), "{empty}");
    assert!(!empty.contains("<PolicyAssignment"), "{empty}");

    let body_xml =
        "<Policy PolicyID=\"{AA}\"><Setting Name=\"PollSeconds\" Value=\"900\"/>é</Policy>";
    let db = site.db();
    let mine = db
        .add_policy(&NewPolicy {
            policy_id: "{AA}",
            version: "1.00",
            target: PolicyTarget::Client(&smsid),
            category: Some("Appliance"),
            flags: 2,
            body: body_xml,
        })
        .unwrap();
    let everyone = db
        .add_policy(&NewPolicy {
            policy_id: "FLEET-1",
            version: "3",
            target: PolicyTarget::All,
            category: None,
            flags: 0,
            body: "<Fleet/>",
        })
        .unwrap();
    db.add_policy(&NewPolicy {
        policy_id: "{BB}",
        version: "1.00",
        target: PolicyTarget::Client(&other_smsid),
        category: None,
        flags: 0,
        body: "<NotYours/>",
    })
    .unwrap();
    drop(db);

    // RequestAssignments lists this client's assignment and the fleet-wide one.
    let r = site.send(&ask()).await;
    let reply = reply_body(&r);
    assert!(
        r.head.contains("Content-Type: multipart/mixed"),
        "{}",
        r.head
    );
    assert!(
        reply.contains(&format!("<ClientID>{smsid}</ClientID>")),
        "{reply}"
    );
    assert!(
        reply.contains("<PolicySource>SMS:P01</PolicySource>"),
        "{reply}"
    );
    assert_eq!(reply.matches("<PolicyAssignment ").count(), 2, "{reply}");
    assert!(reply.contains(&format!("PolicyAssignmentID=\"{mine}\"")));
    assert!(reply.contains(&format!("PolicyAssignmentID=\"{everyone}\"")));
    assert!(
        reply.contains(
            "<Policy PolicyID=\"{AA}\" PolicyVersion=\"1.00\" PolicyType=\"Machine\" \
         PolicyCategory=\"Appliance\" PolicyFlags=\"2\"><PolicyLocation"
        ),
        "{reply}"
    );
    assert!(
        !reply.contains("{BB}"),
        "another client's policy leaked: {reply}"
    );
    let loc_start = reply.find("<![CDATA[").unwrap() + 9;
    let location = &reply[loc_start..loc_start + reply[loc_start..].find("]]>").unwrap()];
    assert_eq!(location, "http://<mp>/SMS_MP/.sms_pol?{AA}.1.00");
    let path = location.replace("http://<mp>", "");

    // The body with a valid token: UTF-16LE with BOM, hash as announced.
    let ok = || token_headers(&smsid, &now_stamp(), &dev);
    let r = site.raw(policy_get(&path, Some(ok()))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.head.contains("charset=UTF-16"), "{}", r.head);
    assert_eq!(&r.body[..2], &[0xFF, 0xFE]);
    assert_eq!(String::from_utf16(&units(&r.body[2..])).unwrap(), body_xml);
    {
        use sha2::Digest;
        let hash = hex::encode_upper(sha2::Sha256::digest(&r.body));
        assert!(
            reply.contains(&format!("PolicyHash=\"SHA256:{hash}\"")),
            "{reply}"
        );
    }
    // Percent-encoded query, and the fleet policy.
    let r = site
        .raw(policy_get("/SMS_MP/.sms_pol?%7BAA%7D.1.00", Some(ok())))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = site
        .raw(policy_get("/SMS_MP/.sms_pol?FLEET-1.3", Some(ok())))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let fetches = site.db().policy_fetches().unwrap();
    assert_eq!(fetches.len(), 3);
    assert!(fetches.iter().all(|f| f.smsid == smsid));
    assert_eq!(
        (fetches[0].policy_id.as_str(), fetches[0].version.as_str()),
        ("{AA}", "1.00")
    );

    // Bad tokens.
    let hour_ago = utc_timestamp_at(now_unix() - 2 * 3600);
    let cases: Vec<(Option<(String, String)>, &str)> = vec![
        (None, "without ClientToken"),
        (
            Some((ok().0, String::new())),
            "without ClientTokenSignature",
        ),
        (
            Some((ok().0, "XYZ".into())),
            "bad hex in ClientTokenSignature",
        ),
        (
            Some(token_headers(&smsid, &now_stamp(), &other)),
            "ClientTokenSignature for",
        ),
        (Some(token_headers(&smsid, &hour_ago, &dev)), "expired"),
        (
            Some({
                let t = format!("{smsid};{};3", now_stamp());
                let s = dev.sign(&utf16le_nul(&t));
                (t, s)
            }),
            "expected 2",
        ),
        (
            Some({
                let t = format!("{smsid};{}", now_stamp());
                let s = dev.sign(&utf16le_nul(&t));
                (t, s)
            }),
            "is not GUID",
        ),
        (
            Some({
                // Signed without the terminating NUL.
                let (t, _) = ok();
                let s = dev.sign(&utf16le(&t));
                (t, s)
            }),
            "ClientTokenSignature for",
        ),
        (
            Some(token_headers(&fresh_smsid(), &now_stamp(), &dev)),
            "unknown client",
        ),
        // The other client's valid token does not open this client's policy.
        (
            Some(token_headers(&other_smsid, &now_stamp(), &other)),
            "is not assigned to",
        ),
    ];
    for (token, needle) in cases {
        let r = site.raw(policy_get(&path, token)).await;
        site.assert_refused(&r, needle);
    }
    let r = site
        .raw(policy_get("/SMS_MP/.sms_pol?{CC}.1.00", Some(ok())))
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(site.db().policy_fetches().unwrap().len(), 3);

    // Refused policy requests.
    site.refused(
        &Signed {
            body: request_assignments(&other_smsid, "P01"),
            ..ask()
        },
        "is not the sender's SourceID",
    )
    .await;
    site.refused(
        &Signed {
            body: request_assignments(&smsid, "XYZ"),
            ..ask()
        },
        "is not this site",
    )
    .await;
    site.refused(
        &Signed {
            body: request_assignments(&smsid, "P01").replace("Machine\"/>", "User\"/>"),
            ..ask()
        },
        "only Machine",
    )
    .await;
    site.refused(
        &Signed {
            tamper: Some(("SMS:P01", "SMS:P02")),
            ..ask()
        },
        "PayloadSignature",
    )
    .await;
    site.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_clients_fetch_policy_with_the_proxy_key() {
    let site = Site::auto().await;
    let proxy = Identity::p256();
    let proxy_smsid = site.db().import_cert(&proxy.cert_der).unwrap();
    site.register(&proxy, 4, None).await;
    let thing = Identity::p256();
    let (thing_smsid, _) = site.register(&thing, 8, Some((&proxy, &proxy_smsid))).await;
    site.db()
        .add_policy(&NewPolicy {
            policy_id: "P",
            version: "1",
            target: PolicyTarget::Client(&thing_smsid),
            category: None,
            flags: 0,
            body: "<P/>",
        })
        .unwrap();
    let ask = Signed {
        proxy: Some(proxy_smsid.clone()),
        ..Signed::new(
            "MP_PolicyManager",
            request_assignments(&thing_smsid, "P01"),
            &thing_smsid,
            &proxy,
        )
    };
    let reply = reply_body(&site.send(&ask).await);
    assert!(reply.contains("PolicyID=\"P\""), "{reply}");
    let r = site
        .raw(policy_get(
            "/SMS_MP/.sms_pol?P.1",
            Some(token_headers(&thing_smsid, &now_stamp(), &proxy)),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = site
        .raw(policy_get(
            "/SMS_MP/.sms_pol?P.1",
            Some(token_headers(&thing_smsid, &now_stamp(), &thing)),
        ))
        .await;
    site.assert_refused(&r, "ClientTokenSignature for");
    assert_eq!(
        site.db().client(&thing_smsid).unwrap().unwrap().status,
        ClientStatus::Approved
    );
    site.server.shutdown().await;
}
