//! Native mode's TLS over OpenSSL on the host: an MP that asks for the client certificate only
//! after it has read the request, as IIS does (renegotiation on TLS 1.2, post-handshake
//! authentication on TLS 1.3), reached by the host client and by the ISV proxy; and the
//! client's TLS failures, each its own `TlsError` naming the option and the file it came from:
//! an unknown CA (`--ca`), a name mismatch (`--mp`), a server certificate expired or not yet
//! valid, revoked (`--crl`) or not for servers, and our certificate (`--cert`) refused.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use mpagent_core::agent::registration::RegistrationState;
use mpagent_sim::client::tls::TlsError;
use mpagent_sim::client::{self, ClientOptions, PkiFiles};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::tls::TlsVersion;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer, TlsConfig};
use mpagent_sim::pki::{CertKind, IssueParams, Issued, LeafKey, TestCa};
use mpagent_sim::proxy::protocol::Frame;
use mpagent_sim::proxy::{self, ProxyOptions};

/// A native-mode site: its CA and a running MP with a server certificate from `server`.
struct Site {
    dir: tempfile::TempDir,
    ca: TestCa,
    mp: MpServer,
}

fn mp_config(dir: &Path) -> MpConfig {
    MpConfig {
        site_code: "PS1".into(),
        db_path: dir.join("site.db"),
        approval: Approval::Auto,
        limits: Limits {
            read_timeout: Duration::from_secs(5),
            ..Limits::default()
        },
        mp_host: "mp.test.local".into(),
        strict: false,
    }
}

fn server_params() -> IssueParams {
    IssueParams {
        san: vec!["127.0.0.1".into(), "mp.test.local".into()],
        ..IssueParams::new("mp.test.local", CertKind::Server)
    }
}

impl Site {
    /// An MP serving `version`, asking for the certificate after the request when `late`, with
    /// the server certificate `server` issues (from the site's CA).
    async fn start(
        version: TlsVersion,
        late: bool,
        server: impl FnOnce(&TestCa) -> Issued,
    ) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::init(&dir.path().join("ca"), "mpagent Test CA", 30).unwrap();
        let server = server(&ca);
        let mut tls = TlsConfig::from_files(
            &server.cert_pem_path,
            &server.key_pem_path,
            &ca.cert_pem_path(),
            None,
        )
        .unwrap()
        .with_version(version);
        tls.client_cert_after_request = late;
        let mp = MpServer::start_tls(mp_config(dir.path()), tls, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("MP starts in native mode");
        Site { dir, ca, mp }
    }

    async fn normal(version: TlsVersion, late: bool) -> Site {
        Self::start(version, late, |ca| ca.issue(&server_params()).unwrap()).await
    }

    fn db(&self) -> SiteDb {
        SiteDb::open(self.dir.path().join("site.db")).unwrap()
    }

    fn device(&self, name: &str) -> Issued {
        self.ca
            .issue(&IssueParams::new(name, CertKind::Device))
            .unwrap()
    }

    fn options(&self, name: &str, files: PkiFiles) -> ClientOptions {
        let mut o = ClientOptions::native(
            &self.mp.url(),
            "PS1",
            self.dir.path().join(format!("state-{name}")),
            name,
            files,
        );
        o.max_failures = 1;
        o
    }

    fn files(&self, cert: &Issued) -> PkiFiles {
        PkiFiles::new(
            cert.cert_pem_path.clone(),
            cert.key_pem_path.clone(),
            self.ca.cert_pem_path(),
        )
    }

    /// The refusals the MP logged, waiting up to two seconds for at least `n`.
    async fn rejections(&self, n: usize) -> String {
        let mut rows = Vec::new();
        for _ in 0..40 {
            rows = self.db().rejections().unwrap();
            if rows.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rows.iter()
            .map(|r| r.reason.clone())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The `TlsError` inside a failed registration.
fn tls_error(err: &anyhow::Error) -> &TlsError {
    err.downcast_ref::<TlsError>()
        .unwrap_or_else(|| panic!("not a TLS error: {err:#}"))
}

async fn registers(site: &Site, name: &str) {
    let dev = site.device(name);
    let out = client::register(&site.options(name, site.files(&dev)), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert!(
        matches!(out.state, RegistrationState::Registered(_)),
        "{:?}",
        out.state
    );
    let clients = site.db().clients().unwrap();
    assert!(clients.iter().any(|c| c.cert_der == dev.cert_der));
}

/// A bare TLS client without a certificate: the handshake completes (the MP asked for none),
/// then a request is sent and the reply awaited; returns what was read or the error.
fn request_without_certificate(
    ca: std::path::PathBuf,
    addr: std::net::SocketAddr,
    max: openssl::ssl::SslVersion,
) -> String {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    b.set_max_proto_version(Some(max)).unwrap();
    let connector = b.build();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut ssl = connector
        .configure()
        .unwrap()
        .into_ssl("127.0.0.1")
        .unwrap();
    // Post-handshake authentication offered (TLS 1.3), so the MP can ask.
    mpagent_sim::ossl::set_post_handshake_auth(&mut ssl, true);
    let mut tls = ssl
        .connect(tcp)
        .expect("the handshake asks for no certificate");
    tls.write_all(
        b"CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let mut reply = Vec::new();
    match tls.read_to_end(&mut reply) {
        Ok(_) => String::from_utf8_lossy(&reply).into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_client_registers_with_an_mp_that_renegotiates_for_the_certificate() {
    let site = Site::normal(TlsVersion::Tls12, true).await;
    registers(&site, "LATE-12").await;
    assert_eq!(site.rejections(0).await, "");
    // The MP did ask late: a client without a certificate completes the handshake, and is
    // refused only once the request has been read.
    let (ca, addr) = (site.ca.cert_pem_path(), site.mp.local_addr());
    let got = tokio::task::spawn_blocking(move || {
        request_without_certificate(ca, addr, openssl::ssl::SslVersion::TLS1_2)
    })
    .await
    .unwrap();
    assert!(!got.contains("HTTP/1.1 200"), "{got}");
    let log = site.rejections(1).await;
    assert!(
        log.contains("TLS client certificate after the request"),
        "{log}"
    );
    assert!(log.contains("renegotiation (TLS 1.2)"), "{log}");
    site.mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_client_registers_with_an_mp_that_asks_after_a_tls13_handshake() {
    let site = Site::normal(TlsVersion::Tls13, true).await;
    registers(&site, "LATE-13").await;
    assert_eq!(site.rejections(0).await, "");
    let (ca, addr) = (site.ca.cert_pem_path(), site.mp.local_addr());
    let got = tokio::task::spawn_blocking(move || {
        request_without_certificate(ca, addr, openssl::ssl::SslVersion::TLS1_3)
    })
    .await
    .unwrap();
    assert!(!got.contains("HTTP/1.1 200"), "{got}");
    let log = site.rejections(1).await;
    assert!(
        log.contains("post-handshake authentication (TLS 1.3)"),
        "{log}"
    );
    site.mp.shutdown().await;
}

#[tokio::test]
async fn the_host_client_registers_over_tls12_and_tls13_only_mps() {
    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let site = Site::normal(version, false).await;
        registers(&site, "ONLY").await;
        site.mp.shutdown().await;
    }
}

#[tokio::test]
async fn a_wrong_ca_is_an_unknown_ca_naming_the_ca_option() {
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::init(other_dir.path(), "Some Other CA", 30).unwrap();
    // rustls sends the MP's certificate alone, OpenSSL (asking late) its chain with the CA.
    for late in [false, true] {
        let site = Site::normal(TlsVersion::Any, late).await;
        let dev = site.device("WRONG-CA");
        let mut files = site.files(&dev);
        files.ca = other.cert_pem_path();
        let err = client::register(&site.options("WRONG-CA", files), &mut |_| {})
            .await
            .unwrap_err();
        let t = tls_error(&err);
        let TlsError::UnknownCa { subject, .. } = t else {
            panic!("late={late}: {t:?}")
        };
        assert_eq!(
            subject, "CN=mp.test.local",
            "the MP's own certificate is named"
        );
        let text = t.to_string();
        assert!(
            text.contains("--ca") && text.contains(&other.cert_pem_path().display().to_string()),
            "{text}"
        );
        assert!(site.db().clients().unwrap().is_empty());
        site.mp.shutdown().await;
    }
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_a_name_mismatch_naming_the_mp_option() {
    let site = Site::start(TlsVersion::Any, false, |ca| {
        ca.issue(&IssueParams {
            san: vec!["other.example".into()],
            ..IssueParams::new("other.example", CertKind::Server)
        })
        .unwrap()
    })
    .await;
    let dev = site.device("NAME");
    let err = client::register(&site.options("NAME", site.files(&dev)), &mut |_| {})
        .await
        .unwrap_err();
    let t = tls_error(&err);
    let TlsError::NameMismatch { host, .. } = t else {
        panic!("{t:?}")
    };
    assert_eq!(host, "127.0.0.1");
    let text = t.to_string();
    assert!(text.contains(&format!("--mp {}", site.mp.url())), "{text}");
    site.mp.shutdown().await;
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_server_certificate_is_its_own_error() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired = Site::start(TlsVersion::Any, false, |ca| {
        ca.issue(&IssueParams {
            not_before: Some(now - 10 * 86_400),
            days: 1,
            ..server_params()
        })
        .unwrap()
    })
    .await;
    let dev = expired.device("EXP");
    let err = client::register(&expired.options("EXP", expired.files(&dev)), &mut |_| {})
        .await
        .unwrap_err();
    let t = tls_error(&err);
    assert!(matches!(t, TlsError::Expired { .. }), "{t:?}");
    assert!(t.to_string().contains("has expired: valid until"), "{t}");
    expired.mp.shutdown().await;

    let future = Site::start(TlsVersion::Any, false, |ca| {
        ca.issue(&IssueParams {
            not_before: Some(now + 86_400),
            ..server_params()
        })
        .unwrap()
    })
    .await;
    let dev = future.device("NYV");
    let err = client::register(&future.options("NYV", future.files(&dev)), &mut |_| {})
        .await
        .unwrap_err();
    let t = tls_error(&err);
    assert!(matches!(t, TlsError::NotYetValid { .. }), "{t:?}");
    assert!(
        t.to_string().contains("is not valid yet: valid from"),
        "{t}"
    );
    future.mp.shutdown().await;
}

#[tokio::test]
async fn a_revoked_server_certificate_is_refused_with_the_crl_option() {
    let site = Site::normal(TlsVersion::Any, false).await;
    // Before the revocation, the CRL is checked and passes.
    let dev = site.device("CRL-OK");
    let mut files = site.files(&dev);
    files.crl = Some(site.ca.crl_pem_path());
    registers_with(&site, "CRL-OK", files.clone()).await;
    // Revoke the server certificate the MP presents (the last issued before the device).
    let serial = server_serial(&site);
    site.ca.revoke(&serial).unwrap();
    let dev = site.device("CRL-BAD");
    let mut files = site.files(&dev);
    files.crl = Some(site.ca.crl_pem_path());
    let err = client::register(&site.options("CRL-BAD", files), &mut |_| {})
        .await
        .unwrap_err();
    let t = tls_error(&err);
    let TlsError::Revoked { crl, serial: s, .. } = t else {
        panic!("{t:?}")
    };
    assert_eq!(crl, &site.ca.crl_pem_path().display().to_string());
    assert!(
        s.trim_start_matches('0')
            .eq_ignore_ascii_case(serial.trim_start_matches('0')),
        "{s} vs {serial}"
    );
    assert!(t.to_string().contains("--crl"), "{t}");
    site.mp.shutdown().await;
}

async fn registers_with(site: &Site, name: &str, files: PkiFiles) {
    let out = client::register(&site.options(name, files), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert!(matches!(out.state, RegistrationState::Registered(_)));
}

/// The serial of the MP's server certificate (`mp.test.local.pem` in the CA directory).
fn server_serial(site: &Site) -> String {
    let der = std::fs::read(site.ca.dir().join("mp.test.local.der")).unwrap();
    mpagent_sim::pki::cert_serial_hex(&der).unwrap()
}

#[tokio::test]
async fn a_server_certificate_without_server_auth_is_refused() {
    let site = Site::start(TlsVersion::Any, false, |ca| {
        // A device certificate (clientAuth only) with the MP's names.
        ca.issue(&IssueParams {
            san: vec!["127.0.0.1".into()],
            ..IssueParams::new("127.0.0.1", CertKind::Device)
        })
        .unwrap()
    })
    .await;
    let dev = site.device("EKU");
    let err = client::register(&site.options("EKU", site.files(&dev)), &mut |_| {})
        .await
        .unwrap_err();
    let t = tls_error(&err);
    assert!(matches!(t, TlsError::NotServerAuth { .. }), "{t:?}");
    site.mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_certificate_refused_by_the_mp_names_the_cert_option_and_the_alert() {
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::init(other_dir.path(), "Some Other CA", 30).unwrap();
    // rustls on TLS 1.2 (refused in the handshake), rustls on TLS 1.3 (after it), OpenSSL
    // asking after the request on 1.2 and 1.3.
    for (version, late) in [
        (TlsVersion::Tls12, false),
        (TlsVersion::Tls13, false),
        (TlsVersion::Tls12, true),
        (TlsVersion::Tls13, true),
    ] {
        let site = Site::normal(version, late).await;
        let stranger = other
            .issue(&IssueParams {
                file_stem: Some(format!("STRANGER-{version:?}-{late}")),
                ..IssueParams::new("STRANGER", CertKind::Device)
            })
            .unwrap();
        let err = client::register(
            &site.options("STRANGER", site.files(&stranger)),
            &mut |_| {},
        )
        .await
        .unwrap_err();
        let t = tls_error(&err);
        let TlsError::ClientCertRefused { alert, cert, .. } = t else {
            panic!("{version:?} late={late}: {t:?}")
        };
        assert_eq!(*alert, 48, "unknown_ca: {t}");
        assert_eq!(cert, &stranger.cert_pem_path.display().to_string());
        assert!(t.to_string().contains("--cert"), "{t}");
        assert!(site.db().clients().unwrap().is_empty());
        site.mp.shutdown().await;
    }
}

fn rsa(p: IssueParams) -> IssueParams {
    IssueParams {
        key: LeafKey::Rsa2048,
        ..p
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_client_registers_with_an_rsa_mp_that_renegotiates() {
    let site = Site::start(TlsVersion::Tls12, true, |ca| {
        ca.issue(&rsa(server_params())).unwrap()
    })
    .await;
    let dev = site
        .ca
        .issue(&rsa(IssueParams::new("RSA-DEV", CertKind::Device)))
        .unwrap();
    let out = client::register(&site.options("RSA-DEV", site.files(&dev)), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(matches!(out.state, RegistrationState::Registered(_)));
    assert_eq!(site.db().clients().unwrap()[0].cert_der, dev.cert_der);
    assert_eq!(site.rejections(0).await, "");
    site.mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_isv_proxy_runs_native_mode_against_an_mp_that_asks_after_the_request() {
    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let site = Site::start(version, true, |ca| ca.issue(&rsa(server_params())).unwrap()).await;
        let cert = site
            .ca
            .issue(&rsa(IssueParams::new("PROXY-L", CertKind::Proxy)))
            .unwrap();
        // The administrator imports the proxy's CA-issued certificate.
        let imported = site.db().import_cert(&cert.cert_der).unwrap();
        let mut opts = ProxyOptions::native(
            &site.mp.url(),
            "PS1",
            site.dir.path().join("proxy-state"),
            site.files(&cert),
        );
        opts.name = "PROXY-L".into();
        let proxy = proxy::start(opts, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{version:?}: the native proxy registers: {e:#}"));
        assert!(proxy.smsid().to_string().eq_ignore_ascii_case(&imported));
        let proxy_id = proxy.smsid().to_string();
        let (mut conn, smsid) =
            mpagent_tests::proxy_device(proxy.local_addr(), "l-dev-1", "L-THING-1").await;
        for frame in [
            Frame::Heartbeat,
            Frame::Inventory {
                items: vec![("fw".into(), "3.0".into())],
            },
        ] {
            let want = frame.kind();
            match conn.request(&frame).await.unwrap() {
                Frame::Ack { of, .. } => assert_eq!(of, want),
                other => panic!("{version:?} {want:#x}: {other:?}"),
            }
        }
        let db = site.db();
        let proxy_row = db.client(&proxy_id).unwrap().expect("proxy registered");
        assert_eq!(proxy_row.cert_der, cert.cert_der);
        let device_row = db.client(&smsid).unwrap().expect("device registered");
        assert_eq!(device_row.agent_type, 8);
        assert_eq!(
            device_row.registered_by_proxy.as_deref(),
            Some(proxy_id.as_str())
        );
        let kinds: Vec<String> = db
            .messages(Some(&smsid))
            .unwrap()
            .into_iter()
            .map(|m| m.kind)
            .collect();
        assert_eq!(kinds, ["ddr", "hinv-full"], "{version:?}");
        assert_eq!(site.rejections(0).await, "", "{version:?}");
        tokio::task::spawn_blocking(move || proxy.shutdown())
            .await
            .unwrap();
        site.mp.shutdown().await;
    }
}

/// Debian's `openssl s_server` as an independent TLS 1.2 peer: it accepts our connection without
/// asking for a certificate, then (its `R` command) renegotiates asking for one, as IIS does
/// after the request; our connector answers inside its read with the RSA certificate, which
/// s_server verifies against the CA, and the data that follows arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_server_renegotiates_for_our_certificate() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::init(&dir.path().join("ca"), "Interop CA", 30).unwrap();
    let server = ca.issue(&rsa(server_params())).unwrap();
    let dev = ca
        .issue(&rsa(IssueParams::new("INTEROP-DEV", CertKind::Device)))
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("openssl")
        // A renegotiation that resumes the session would ask for no certificate; IIS makes it
        // a full handshake, and so does this.
        .args([
            "s_server",
            "-tls1_2",
            "-no_resumption_on_reneg",
            "-msg",
            "-accept",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&server.cert_pem_path)
        .arg("-key")
        .arg(&server.key_pem_path)
        .arg("-CAfile")
        .arg(ca.cert_pem_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server runs");
    let out = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().unwrap();
    let reader = {
        let out = out.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        })
    };
    let wait_for = |what: &str| {
        for _ in 0..100 {
            if out.lock().unwrap().contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("s_server never printed {what:?}:\n{}", out.lock().unwrap());
    };
    wait_for("ACCEPT");
    let mut stdin = child.stdin.take().unwrap();

    let files = PkiFiles::new(
        dev.cert_pem_path.clone(),
        dev.key_pem_path.clone(),
        ca.cert_pem_path(),
    );
    let identity = mpagent_sim::client::tls::load_native_identity(
        &files,
        mpagent_sim::client::transport::unix_now(),
    )
    .unwrap();
    let config = mpagent_sim::client::tls::client_config(
        &identity.ca,
        &[],
        identity.chain.clone(),
        identity.key.clone_key(),
        mpagent_sim::client::tls::TlsLabels::of(&files),
    )
    .unwrap();
    let tcp = mpagent_sim::client::transport::TcpConnector {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_secs(5),
    };
    let connector = mpagent_sim::client::tls::TlsConnector::new(tcp, config).unwrap();
    let mut tls = connector
        .connect_tls()
        .await
        .expect("handshake with s_server");
    assert_eq!(tls.ssl().version_str(), "TLSv1.2");
    tls.write_all(b"request\n").await.unwrap();
    tls.flush().await.unwrap();
    wait_for("request");
    // The certificate was not asked for in the handshake.
    assert!(!out.lock().unwrap().contains("CertificateVerify"));
    stdin.write_all(b"R\n").unwrap();
    stdin.flush().unwrap();
    // Our read answers the HelloRequest; the reply comes once the renegotiation is done.
    let read = tokio::spawn(async move {
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("reply within 10 s")
            .expect("read after renegotiation");
        buf.truncate(n);
        (buf, tls)
    });
    tokio::task::spawn_blocking({
        let out = out.clone();
        move || {
            for _ in 0..100 {
                if out.lock().unwrap().contains("CertificateVerify") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            stdin.write_all(b"reply\n").unwrap();
            stdin.flush().unwrap();
            stdin
        }
    })
    .await
    .unwrap();
    let (got, tls) = read.await.unwrap();
    assert_eq!(got, b"reply\n");
    let log = out.lock().unwrap().clone();
    assert!(log.contains("HelloRequest"), "{log}");
    assert!(log.contains("CertificateVerify"), "{log}");
    // The renegotiated session knows the server; s_server verified our certificate (else the
    // renegotiation would have failed with VERIFY_PEER).
    assert!(tls.ssl().peer_certificate().is_some());
    drop(tls);
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cycle_runs_against_an_mp_that_renegotiates_on_every_connection() {
    use mpagent_sim::client::run::{self, Due};
    use mpagent_sim::mp::db::{NewPolicy, PolicyTarget};
    let site = Site::start(TlsVersion::Tls12, true, |ca| {
        ca.issue(&rsa(server_params())).unwrap()
    })
    .await;
    // A policy body over one TLS record (16 KiB).
    let settings: String = (0..400)
        .map(|i| format!("<Setting Name=\"S{i:04}\" Value=\"value-{i:04}\"/>"))
        .collect();
    let body = format!("<Policy>{settings}</Policy>");
    assert!(body.len() > 16 * 1024, "{}", body.len());
    site.db()
        .add_policy(&NewPolicy {
            policy_id: "{11111111-2222-3333-4444-555555555555}",
            version: "1.00",
            target: PolicyTarget::All,
            category: None,
            flags: 0,
            body: &body,
        })
        .unwrap();
    let dev = site
        .ca
        .issue(&rsa(IssueParams::new("CYCLE", CertKind::Device)))
        .unwrap();
    let opts = site.options("CYCLE", site.files(&dev));
    let due = Due {
        heartbeat: true,
        inventory_items: 3,
        status: true,
        policy: true,
    };
    let report = run::run_cycle(&opts, due, &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.delivery_stopped, None, "{report:?}");
    assert_eq!(report.delivered, 4, "{report:?}");
    assert_eq!(
        report.policies_applied,
        vec!["{11111111-2222-3333-4444-555555555555}.1.00"]
    );
    let kinds: Vec<String> = site
        .db()
        .messages(report.smsid.as_deref())
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(kinds, ["ddr", "hinv-full", "status", "state"]);
    assert_eq!(site.rejections(0).await, "");
    site.mp.shutdown().await;
}

#[tokio::test]
async fn a_crl_without_the_mps_ca_is_unusable_naming_the_crl_option() {
    let site = Site::normal(TlsVersion::Any, false).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::init(other_dir.path(), "Some Other CA", 30).unwrap();
    let dev = site.device("CRL-OTHER");
    let mut files = site.files(&dev);
    files.crl = Some(other.crl_pem_path());
    let err = client::register(&site.options("CRL-OTHER", files), &mut |_| {})
        .await
        .unwrap_err();
    let t = tls_error(&err);
    let TlsError::CrlUnusable { crl, .. } = t else {
        panic!("{t:?}")
    };
    assert_eq!(crl, &other.crl_pem_path().display().to_string());
    assert!(t.to_string().contains("has no CRL of its issuer"), "{t}");
    site.mp.shutdown().await;
}
