//! Native mode end to end over loopback TLS: the test CA issues the MP's and the
//! devices' certificates; the MP emulator serves HTTPS requiring client certificates; the host
//! client registers with its provisioned certificate. Refusals are checked on both sides: the
//! client's start-up validation (nothing on the wire), and the MP's handshake and signer checks
//! (witnessed by its rejection table). The ISV proxy in native mode: its CA-issued certificate
//! imported, it registers itself and a device over TLS and relays the device's data; a proxy
//! certificate from another CA is refused at the handshake; bad configurations at start-up.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use embedded_io_async::{Read as _, Write as _};
use mpagent_core::agent::registration::{Registrar, RegistrationState, SigningIdentity};
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::io::{self, AttemptFailure, Connector as _, RegisterError, RegisterOptions};
use mpagent_core::wire::registration::{AgentType, RequestType};
use mpagent_sim::client::state::ClientSigner;
use mpagent_sim::client::tls::{client_config, TlsConnector, TlsLabels, NATIVE_CERT_FILE};
use mpagent_sim::client::transport::{SystemClock, TcpConnector};
use mpagent_sim::client::{self, ClientOptions, NativeConfigError, PkiFiles};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer, TlsConfig};
use mpagent_sim::pki::{self, CertKind, IssueParams, Issued, TestCa};
use mpagent_sim::proxy::protocol::Frame;
use mpagent_sim::proxy::{self, ProxyOptions};

/// A site in native mode: its CA, the MP's certificate, the running MP.
struct Site {
    dir: tempfile::TempDir,
    ca: TestCa,
    mp: MpServer,
}

impl Site {
    async fn start() -> Site {
        Self::start_with_crl(false).await
    }

    async fn start_with_crl(crl: bool) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::init(&dir.path().join("ca"), "mpagent Test CA", 30).unwrap();
        let server = ca
            .issue(&IssueParams {
                san: vec!["127.0.0.1".into(), "mp.test.local".into()],
                ..IssueParams::new("mp.test.local", CertKind::Server)
            })
            .unwrap();
        let tls = TlsConfig::from_files(
            &server.cert_pem_path,
            &server.key_pem_path,
            &ca.cert_pem_path(),
            crl.then(|| ca.crl_pem_path()).as_deref(),
        )
        .unwrap();
        let mp = MpServer::start_tls(
            MpConfig {
                site_code: "PS1".into(),
                db_path: dir.path().join("site.db"),
                approval: Approval::Auto,
                limits: Limits::default(),
                mp_host: "mp.test.local".into(),
                strict: false,
            },
            tls,
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .expect("MP starts in native mode");
        assert!(mp.url().starts_with("https://"));
        Site { dir, ca, mp }
    }

    fn db(&self) -> SiteDb {
        SiteDb::open(self.dir.path().join("site.db")).unwrap()
    }

    fn device(&self, name: &str) -> Issued {
        self.ca
            .issue(&IssueParams::new(name, CertKind::Device))
            .unwrap()
    }

    fn options(&self, name: &str, cert: &Issued) -> ClientOptions {
        let mut o = ClientOptions::native(
            &self.mp.url(),
            "PS1",
            self.dir.path().join(format!("state-{name}")),
            name,
            files(cert, &self.ca.cert_pem_path()),
        );
        o.max_failures = 1;
        o
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

fn files(cert: &Issued, ca: &Path) -> PkiFiles {
    PkiFiles::new(
        cert.cert_pem_path.clone(),
        cert.key_pem_path.clone(),
        ca.to_path_buf(),
    )
}

fn config_error(err: &anyhow::Error) -> &NativeConfigError {
    err.downcast_ref::<NativeConfigError>()
        .unwrap_or_else(|| panic!("not a start-up configuration error: {err:#}"))
}

#[tokio::test]
async fn a_native_client_registers_over_tls_with_its_ca_issued_certificate() {
    let site = Site::start().await;
    let dev = site.device("KIOSK-N1");
    let opts = site.options("KIOSK-N1", &dev);
    let first = client::register(&opts, &mut |_| {}).await.unwrap();
    let RegistrationState::Registered(smsid) = first.state else {
        panic!("{:?}", first.state)
    };
    assert!(!first.identity_created);
    assert_eq!(first.cert_path, dev.cert_pem_path);
    // The site knows the device by its CA-issued certificate.
    let clients = site.db().clients().unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].cert_der, dev.cert_der);
    assert!(clients[0].smsid.eq_ignore_ascii_case(&smsid.to_string()));
    // The state directory holds the registration and the certificate it belongs to, no key.
    assert_eq!(
        std::fs::read(opts.state_dir.join(NATIVE_CERT_FILE)).unwrap(),
        dev.cert_der
    );
    assert!(!opts.state_dir.join("key.pk8").exists());
    // A second run keeps the SMSID (DER files this time: either encoding is read).
    let mut again = opts.clone();
    again.pki = Some(PkiFiles::new(
        dev.cert_der_path.clone(),
        dev.key_der_path.clone(),
        site.ca.dir().join(pki::CA_CERT_DER),
    ));
    let second = client::register(&again, &mut |_| {}).await.unwrap();
    assert_eq!(second.state, RegistrationState::Registered(smsid));
    // A new certificate for the device: the old registration is dropped and it registers anew.
    let renewed = site
        .ca
        .issue(&IssueParams {
            file_stem: Some("KIOSK-N1-renewed".into()),
            ..IssueParams::new("KIOSK-N1", CertKind::Device)
        })
        .unwrap();
    let mut renewed_opts = opts.clone();
    renewed_opts.pki = Some(files(&renewed, &site.ca.cert_pem_path()));
    let mut sent = Vec::new();
    let third = client::register(&renewed_opts, &mut |p| {
        if let io::Progress::Sending { request_type, .. } = p {
            sent.push(*request_type)
        }
    })
    .await
    .unwrap();
    assert!(matches!(third.state, RegistrationState::Registered(_)));
    assert_eq!(
        sent.first(),
        Some(&RequestType::Registration),
        "the renewed certificate registers again (then confirms): {sent:?}"
    );
    assert_eq!(site.db().clients().unwrap().len(), 2);
    assert_eq!(site.rejections(0).await, "");
    site.mp.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_at_the_handshake() {
    let site = Site::start().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::init(other_dir.path(), "Some Other CA", 30).unwrap();
    let stranger = other
        .issue(&IssueParams::new("STRANGER", CertKind::Device))
        .unwrap();
    // It trusts the site's CA for the MP, but its own certificate is not the site CA's.
    let opts = site.options("STRANGER", &stranger);
    let err = client::register(&opts, &mut |_| {}).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("the last: invalid data"),
        "{err:#}"
    );
    let log = site.rejections(1).await;
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(site.db().clients().unwrap().is_empty());
    site.mp.shutdown().await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused_at_start_up_and_by_the_mp() {
    let site = Site::start().await;
    let expired = site
        .ca
        .issue(&IssueParams {
            not_before: Some(pki::parse_date("2020-01-01").unwrap()),
            days: 30,
            ..IssueParams::new("OLD-1", CertKind::Device)
        })
        .unwrap();
    // The client's own check: a clear error, nothing sent.
    let err = client::register(&site.options("OLD-1", &expired), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(config_error(&err), NativeConfigError::Expired { .. }),
        "{err:#}"
    );
    assert!(format!("{err}").contains("expired"), "{err}");
    assert_eq!(site.rejections(0).await, "");

    // A raw rustls client that skips that check: the MP refuses the handshake.
    let mut raw = tls_as(&site, &expired);
    // TLS 1.3: the client finishes its side of the handshake before the server has checked the
    // client certificate, so the refusal (an alert) arrives on the first read.
    if let Ok(mut conn) = raw.connect().await {
        let _ = conn
            .write_all(b"GET /SMS_MP/.sms_aut?MPLIST HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        let got = conn.read(&mut buf).await;
        assert!(
            matches!(got, Err(_) | Ok(0)),
            "the MP answered an expired certificate: {got:?}"
        );
    }
    let log = site.rejections(1).await;
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.to_lowercase().contains("expired"), "{log}");
    site.mp.shutdown().await;
}

#[tokio::test]
async fn a_mixed_mode_client_is_refused_by_a_native_mode_mp() {
    let site = Site::start().await;
    let opts = ClientOptions {
        max_failures: 1,
        ..ClientOptions::mixed(
            &format!("http://{}", site.mp.local_addr()),
            "PS1",
            site.dir.path().join("mixed"),
            "PLAIN-1",
        )
    };
    let err = client::register(&opts, &mut |_| {}).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("the MP answered HTTP 403"),
        "{err:#}"
    );
    let log = site.rejections(1).await;
    assert!(log.contains("plain HTTP on the native-mode port"), "{log}");
    assert!(site.db().clients().unwrap().is_empty());
    site.mp.shutdown().await;
}

#[tokio::test]
async fn start_up_validation_refuses_bad_configurations_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::init(&dir.path().join("ca"), "CA", 30).unwrap();
    // Nothing listens behind this port: any connection attempt would be counted.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let https = format!("https://127.0.0.1:{port}");
    let good = ca
        .issue(&IssueParams::new("GOOD", CertKind::Device))
        .unwrap();
    let native = |name: &str, cert: &Issued| {
        ClientOptions::native(
            &https,
            "PS1",
            dir.path().join(name),
            name,
            files(cert, &ca.cert_pem_path()),
        )
    };
    let check = |opts: ClientOptions| async move {
        let err = client::register(&opts, &mut |_| {}).await.unwrap_err();
        (config_error(&err).clone(), err.to_string())
    };

    // Native mode without a certificate.
    let mut o = native("none", &good);
    o.pki = None;
    let (e, text) = check(o).await;
    assert_eq!(e, NativeConfigError::NoCertificate);
    assert!(text.contains("--cert"), "{text}");

    // Expired, and not yet valid.
    let old = ca
        .issue(&IssueParams {
            not_before: Some(pki::parse_date("2019-06-01").unwrap()),
            days: 10,
            ..IssueParams::new("OLD", CertKind::Device)
        })
        .unwrap();
    let (e, text) = check(native("old", &old)).await;
    assert!(matches!(e, NativeConfigError::Expired { .. }), "{e:?}");
    assert!(text.contains("2019-06-11T00:00:00Z"), "{text}");
    let future = ca
        .issue(&IssueParams {
            not_before: Some(pki::parse_date("2099-01-01").unwrap()),
            days: 10,
            ..IssueParams::new("FUTURE", CertKind::Device)
        })
        .unwrap();
    let (e, _) = check(native("future", &future)).await;
    assert!(matches!(e, NativeConfigError::NotYetValid { .. }), "{e:?}");

    // A certificate without the SMS signing EKU (a TLS server certificate).
    let server = ca
        .issue(&IssueParams::new("web.example", CertKind::Server))
        .unwrap();
    let (e, text) = check(native("noeku", &server)).await;
    assert!(matches!(e, NativeConfigError::NoSigningEku { .. }), "{e:?}");
    assert!(text.contains("1.3.6.1.4.1.311.101.2"), "{text}");

    // A key that is not the certificate's.
    let other = ca
        .issue(&IssueParams::new("OTHER", CertKind::Device))
        .unwrap();
    let mut o = native("mismatch", &good);
    o.pki.as_mut().unwrap().key = other.key_pem_path.clone();
    let (e, _) = check(o).await;
    assert!(matches!(e, NativeConfigError::KeyMismatch { .. }), "{e:?}");

    // Unreadable files.
    let mut o = native("missing", &good);
    o.pki.as_mut().unwrap().ca = dir.path().join("no-such-ca.pem");
    let (e, text) = check(o).await;
    assert!(matches!(e, NativeConfigError::Unreadable { .. }), "{e:?}");
    assert!(text.contains("no-such-ca.pem"), "{text}");

    // The scheme against the mode, both ways, and certificate files in mixed mode.
    let mut o = native("http", &good);
    o.mp_url = format!("http://127.0.0.1:{port}");
    let (e, _) = check(o).await;
    assert!(
        matches!(e, NativeConfigError::NativeNeedsHttps { .. }),
        "{e:?}"
    );
    let o = ClientOptions::mixed(&https, "PS1", dir.path().join("https"), "MIXED");
    let (e, _) = check(o).await;
    assert!(
        matches!(e, NativeConfigError::MixedNeedsHttp { .. }),
        "{e:?}"
    );
    let mut o = native("mixedpki", &good);
    o.mode = SiteMode::Mixed;
    o.mp_url = format!("http://127.0.0.1:{port}");
    let (e, _) = check(o).await;
    assert_eq!(e, NativeConfigError::CertificateInMixedMode);

    // None of them went near the network.
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "a refused configuration connected anyway"
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_when_the_mp_checks_the_crl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::init(&dir.path().join("ca"), "CA", 30).unwrap();
    let good = ca
        .issue(&IssueParams::new("GOOD", CertKind::Device))
        .unwrap();
    let bad = ca
        .issue(&IssueParams::new("LOST", CertKind::Device))
        .unwrap();
    ca.revoke(&bad.serial_hex).unwrap();
    let server = ca
        .issue(&IssueParams {
            san: vec!["127.0.0.1".into()],
            ..IssueParams::new("mp", CertKind::Server)
        })
        .unwrap();
    let tls = TlsConfig::from_files(
        &server.cert_der_path,
        &server.key_der_path,
        &ca.dir().join(pki::CA_CERT_DER),
        Some(&ca.dir().join(pki::CRL_DER)),
    )
    .unwrap();
    let mp = MpServer::start_tls(
        MpConfig {
            site_code: "PS1".into(),
            db_path: dir.path().join("site.db"),
            approval: Approval::Auto,
            limits: Limits::default(),
            mp_host: "mp".into(),
            strict: false,
        },
        tls,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let opts = |name: &str, cert: &Issued| {
        let mut o = ClientOptions::native(
            &mp.url(),
            "PS1",
            dir.path().join(name),
            name,
            files(cert, &ca.cert_pem_path()),
        );
        o.max_failures = 1;
        o
    };
    let ok = client::register(&opts("GOOD", &good), &mut |_| {})
        .await
        .unwrap();
    assert!(matches!(ok.state, RegistrationState::Registered(_)));
    assert!(client::register(&opts("LOST", &bad), &mut |_| {})
        .await
        .is_err());
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let mut log = String::new();
    for _ in 0..40 {
        log = format!("{:?}", db.rejections().unwrap());
        if log.contains("Revoked") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.contains("Revoked"), "{log}");
    assert_eq!(db.clients().unwrap().len(), 1);
    mp.shutdown().await;
}

#[tokio::test]
async fn registration_must_be_signed_by_the_presented_tls_certificate() {
    let site = Site::start().await;
    let presented = site.device("DEV-A");
    let signer_cert = site.device("DEV-B");
    // TLS as DEV-A (a valid certificate of the site's CA) ...
    let mut connector = tls_as(&site, &presented);
    // ... but the registration signed by DEV-B with DEV-B's certificate.
    let signer = ClientSigner::from_pkcs8_der(&signer_cert.key_pkcs8).unwrap();
    let url = site.mp.url();
    let config = AgentConfig::new("PS1", SiteMode::Native, &url, "DEV-B", "dev-b.local").unwrap();
    let mut registrar = Registrar::new(RegistrationState::Unregistered);
    let mut buf = vec![0u8; 4096];
    let result = io::register(
        &mut connector,
        &mut SystemClock,
        &config,
        &SigningIdentity {
            signer: &signer,
            cert_der: &signer_cert.cert_der,
        },
        AgentType::Client,
        &mut registrar,
        &mut rand_core::OsRng,
        &mut buf,
        RegisterOptions {
            return_when_pending: true,
            max_failures: 1,
        },
        &mut |_| {},
    )
    .await;
    assert_eq!(
        result,
        Err(RegisterError::GaveUp(AttemptFailure::Status(403)))
    );
    let log = site.rejections(1).await;
    assert!(
        log.contains("not the TLS client certificate presented"),
        "{log}"
    );
    assert!(site.db().clients().unwrap().is_empty());
    site.mp.shutdown().await;
}

/// The raw TLS transport as `cert` (no start-up checks), trusting the site's CA.
fn tls_as(site: &Site, cert: &Issued) -> TlsConnector {
    let ca = pki::read_certs(&site.ca.cert_pem_path()).unwrap();
    let chain = pki::read_certs(&cert.cert_pem_path).unwrap();
    let key = pki::read_private_key(&cert.key_pem_path).unwrap();
    let tcp = TcpConnector {
        host: "127.0.0.1".into(),
        port: site.mp.local_addr().port(),
        connect_timeout: Duration::from_secs(5),
    };
    let labels = TlsLabels {
        ca: site.ca.cert_pem_path().display().to_string(),
        cert: cert.cert_pem_path.display().to_string(),
        crl: None,
    };
    TlsConnector::new(tcp, client_config(&ca, &[], chain, key, labels).unwrap()).unwrap()
}

#[tokio::test]
async fn signed_messages_must_come_from_the_presented_tls_certificate() {
    use mpagent_core::agent::messages::sign_message;
    use mpagent_core::agent::signed::MessageSigner;
    use mpagent_core::guid::Guid;
    use mpagent_core::io::SendError;
    use mpagent_core::wire::clientauth::ClientIdSignature;
    use mpagent_core::wire::report::{NoInstances, Report, ReportIdentity};

    let site = Site::start().await;
    let a = site.device("DEV-A");
    let b = site.device("DEV-B");
    let reg = client::register(&site.options("DEV-A", &a), &mut |_| {})
        .await
        .unwrap();
    let RegistrationState::Registered(smsid) = reg.state else {
        panic!("{:?}", reg.state)
    };
    // DEV-A's heartbeat DDR, signed by DEV-A.
    let signer = ClientSigner::from_pkcs8_der(&a.key_pkcs8).unwrap();
    let cid = ClientIdSignature::compute(&signer, smsid).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &signer,
            cert_der: &a.cert_der,
        },
        &cid,
    );
    let url = site.mp.url();
    let config = AgentConfig::new("PS1", SiteMode::Native, &url, "DEV-A", "dev-a.local").unwrap();
    let now = mpagent_sim::client::transport::unix_now();
    let ddr = Report::discovery(
        ReportIdentity::new(smsid, "DEV-A"),
        now.to_datetime(),
        &NoInstances,
    );
    let mut buf = vec![0u8; 1024];
    let mut rng = rand_core::OsRng;
    // Over DEV-A's own TLS connection: stored.
    let msg = sign_message(&config, &me, &ddr, Guid::random(&mut rng), now).unwrap();
    io::send_message(&mut tls_as(&site, &a), &msg, &mut buf)
        .await
        .unwrap();
    // The same kind of message over DEV-B's connection (a valid certificate of the site's CA):
    // refused, although its signatures are DEV-A's and correct.
    let msg = sign_message(&config, &me, &ddr, Guid::random(&mut rng), now).unwrap();
    let sent = io::send_message(&mut tls_as(&site, &b), &msg, &mut buf).await;
    assert_eq!(sent, Err(SendError::Status(403)));
    let log = site.rejections(1).await;
    assert!(
        log.contains("not the TLS client certificate presented"),
        "{log}"
    );
    assert_eq!(site.db().messages(None).unwrap().len(), 1);
    site.mp.shutdown().await;
}

#[test]
fn openssl_verifies_the_issued_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::init(dir.path(), "mpagent Test CA", 30).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::init(other_dir.path(), "Other CA", 30).unwrap();
    let verify = |leaf: &Path, purpose: &str| {
        let out = Command::new("openssl")
            .arg("verify")
            .args(["-purpose", purpose])
            .arg("-CAfile")
            .arg(ca.cert_pem_path())
            .arg(leaf)
            .output()
            .expect("openssl runs (tests/run-all.sh installs it)");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    for (cn, kind, purpose) in [
        ("PRN-0001", CertKind::Device, "sslclient"),
        ("PROXY-1", CertKind::Proxy, "sslclient"),
        ("mp.corp.example", CertKind::Server, "sslserver"),
    ] {
        let leaf = ca.issue(&IssueParams::new(cn, kind)).unwrap();
        let (ok, text) = verify(&leaf.cert_pem_path, purpose);
        assert!(ok && text.contains(": OK"), "{cn}: {text}");
    }
    let stranger = other
        .issue(&IssueParams::new("STRANGER", CertKind::Device))
        .unwrap();
    let (ok, text) = verify(&stranger.cert_pem_path, "sslclient");
    assert!(!ok, "another CA's certificate verified: {text}");
    // The CRL is well-formed and signed by the CA.
    let out = Command::new("openssl")
        .args(["crl", "-noout", "-CAfile"])
        .arg(ca.cert_pem_path())
        .arg("-in")
        .arg(ca.crl_pem_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("verify OK"), "{text}");
}

impl Site {
    /// Native-mode proxy options with the CA-issued `cert` (the MP checked against the site CA).
    fn proxy_options(&self, name: &str, cert: &Issued) -> ProxyOptions {
        let mut o = ProxyOptions::native(
            &self.mp.url(),
            "PS1",
            self.dir.path().join(format!("proxy-{name}")),
            files(cert, &self.ca.cert_pem_path()),
        );
        o.name = name.into();
        o
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_proxy_registers_itself_and_a_device_and_relays_over_tls() {
    let site = Site::start().await;
    let cert = site
        .ca
        .issue(&IssueParams::new("PROXY-N1", CertKind::Proxy))
        .unwrap();
    // The administrator imports the proxy's CA-issued certificate (nothing to export).
    let imported = site.db().import_cert(&cert.cert_der).unwrap();
    let proxy = proxy::start(
        site.proxy_options("PROXY-N1", &cert),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the native proxy registers over TLS");
    assert!(proxy.smsid().to_string().eq_ignore_ascii_case(&imported));
    let proxy_id = proxy.smsid().to_string();

    let (mut conn, smsid) =
        mpagent_tests::proxy_device(proxy.local_addr(), "n-dev-1", "N-THING-1").await;
    for frame in [
        Frame::Heartbeat,
        Frame::Inventory {
            items: vec![("fw".into(), "2.1".into())],
        },
    ] {
        let want = frame.kind();
        match conn.request(&frame).await.unwrap() {
            Frame::Ack { of, .. } => assert_eq!(of, want),
            other => panic!("{want:#x}: {other:?}"),
        }
    }

    // The MP (native) accepted: each request came over TLS with the proxy's certificate, which
    // is also the certificate that signed it (otherwise it refuses, see the tests above).
    let db = site.db();
    let proxy_row = db.client(&proxy_id).unwrap().expect("proxy registered");
    assert_eq!(proxy_row.agent_type, 4);
    assert_eq!(proxy_row.cert_der, cert.cert_der);
    let device_row = db.client(&smsid).unwrap().expect("device registered");
    assert_eq!(device_row.agent_type, 8);
    assert_eq!(
        device_row.registered_by_proxy.as_deref(),
        Some(proxy_id.as_str())
    );
    let messages = db.messages(Some(&smsid)).unwrap();
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["ddr", "hinv-full"]);
    assert!(messages
        .iter()
        .all(|m| m.via_proxy.as_deref() == Some(proxy_id.as_str())));
    assert_eq!(site.rejections(0).await, "");
    // The state directory keeps the registration and the certificate it belongs to, no key.
    let state = site.dir.path().join("proxy-PROXY-N1");
    assert_eq!(
        std::fs::read(state.join(NATIVE_CERT_FILE)).unwrap(),
        cert.cert_der
    );
    assert!(!state.join("key.pk8").exists());
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
    site.mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_proxy_with_a_certificate_from_another_ca_is_refused() {
    let site = Site::start().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::init(other_dir.path(), "Some Other CA", 30).unwrap();
    let cert = other
        .issue(&IssueParams::new("PROXY-X", CertKind::Proxy))
        .unwrap();
    // Even imported, a certificate the site's CA did not issue does not get past the handshake.
    site.db().import_cert(&cert.cert_der).unwrap();
    let err = proxy::start(
        site.proxy_options("PROXY-X", &cert),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .err()
    .expect("refused");
    let err = format!("{err:#}");
    assert!(err.contains("did not accept our certificate"), "{err}");
    assert!(err.contains("unknown_ca"), "{err}");
    let log = site.rejections(1).await;
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(site.db().clients().unwrap().is_empty());
    site.mp.shutdown().await;
}

#[tokio::test]
async fn a_native_proxy_is_validated_at_start_up_like_a_client() {
    let site = Site::start().await;
    let start = |opts: ProxyOptions| async move {
        proxy::start(opts, "127.0.0.1:0".parse().unwrap())
            .await
            .err()
            .expect("refused at start-up")
    };
    let expired = site
        .ca
        .issue(&IssueParams {
            not_before: Some(pki::parse_date("2020-01-01").unwrap()),
            days: 30,
            ..IssueParams::new("PROXY-OLD", CertKind::Proxy)
        })
        .unwrap();
    let err = start(site.proxy_options("PROXY-OLD", &expired)).await;
    assert!(
        matches!(config_error(&err), NativeConfigError::Expired { .. }),
        "{err:#}"
    );
    let good = site
        .ca
        .issue(&IssueParams::new("PROXY-OK", CertKind::Proxy))
        .unwrap();
    let mut http = site.proxy_options("PROXY-OK", &good);
    http.mp_url = format!("http://{}", site.mp.local_addr());
    let err = start(http).await;
    assert!(
        matches!(
            config_error(&err),
            NativeConfigError::NativeNeedsHttps { .. }
        ),
        "{err:#}"
    );
    let mut no_files = site.proxy_options("PROXY-OK", &good);
    no_files.pki = None;
    let err = start(no_files).await;
    assert_eq!(config_error(&err), &NativeConfigError::NoCertificate);
    let mut wrong_key = site.proxy_options("PROXY-OK", &good);
    wrong_key.pki.as_mut().unwrap().key = expired.key_pem_path.clone();
    let err = start(wrong_key).await;
    assert!(
        matches!(config_error(&err), NativeConfigError::KeyMismatch { .. }),
        "{err:#}"
    );
    // Nothing reached the MP.
    assert_eq!(site.rejections(0).await, "");
    assert!(site.db().clients().unwrap().is_empty());
    site.mp.shutdown().await;
}
