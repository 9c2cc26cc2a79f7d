//! End to end over loopback with an RSA-2048 agent (what real sites take, docs/protocol.md §6): the
//! host client with `--key rsa2048` against the MP emulator, the site database as the witness.

use std::path::Path;

use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::config::SiteMode;
use mpagent_core::io::{AttemptFailure, RegisterError};
use mpagent_core::profile;
use mpagent_core::sign::{RsaSigner, SignatureScheme, Signer};
use mpagent_sim::client::state::StateDir;
use mpagent_sim::client::transport::unix_now;
use mpagent_sim::client::{self, ClientOptions, KeyKind};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};

/// Another RSA-2048 key (the core's test vector), for "signed with the wrong key".
const STRANGER_PK1: &[u8] = include_bytes!("../../core/src/sign/rsa/testdata/rsa2048.pk1.der");

async fn start_mp(dir: &Path, approval: Approval) -> MpServer {
    MpServer::start(
        MpConfig {
            site_code: "PS1".into(),
            db_path: dir.join("site.db"),
            approval,
            limits: Limits::default(),
            mp_host: "mp.test.local".into(),
            strict: false,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("MP starts")
}

fn options(mp: &MpServer, dir: &Path, name: &str) -> ClientOptions {
    ClientOptions {
        max_failures: 2,
        key: KeyKind::Rsa2048,
        ..ClientOptions::mixed(
            &format!("http://{}", mp.local_addr()),
            "PS1",
            dir.join(name),
            name,
        )
    }
}

#[tokio::test]
async fn rsa_agent_registers_is_approved_and_reuses_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Pending).await;
    let opts = options(&mp, dir.path(), "RSA-PRN-1");

    // Registration (pending), the administrator approves, confirmation: both requests signed
    // with the RSA key and verified by the emulator.
    let first = client::register(&opts, &mut |_| {}).await.unwrap();
    assert!(first.identity_created);
    let RegistrationState::Pending(smsid) = first.state else {
        panic!("{:?}", first.state)
    };
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    assert!(db.approve(&smsid.to_string()).unwrap());
    let second = client::register(&opts, &mut |_| {}).await.unwrap();
    assert_eq!(second.state, RegistrationState::Registered(smsid));
    assert!(!second.identity_created);

    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    let row = &clients[0];
    assert_eq!(row.smsid.to_uppercase(), smsid.to_string().to_uppercase());
    assert_eq!(row.hash_algorithm.as_deref(), Some(profile::RSA_SHA256_OID));
    assert!(db.rejections().unwrap().is_empty());

    // The state directory holds the RSA identity, and the site has its certificate.
    let identity = StateDir::open(&opts.state_dir)
        .unwrap()
        .load_or_create_identity("RSA-PRN-1", unix_now())
        .unwrap();
    assert_eq!(identity.signer.kind(), KeyKind::Rsa2048);
    assert_eq!(identity.signer.scheme(), SignatureScheme::RsaPkcs1Sha256);
    assert_eq!(row.cert_der, identity.cert_der);
    mp.shutdown().await;
}

use mpagent_tests::Tampering;

async fn register_with(
    mp: &MpServer,
    signer: &dyn Signer,
    cert: &[u8],
) -> Result<RegistrationState, RegisterError> {
    mpagent_tests::register_once(mp.local_addr(), "RSA-EVIL", signer, cert).await
}

#[tokio::test]
async fn forged_and_wrong_key_rsa_signatures_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let identity = StateDir::open(&dir.path().join("evil"))
        .unwrap()
        .load_or_create_identity_with("RSA-EVIL", unix_now(), KeyKind::Rsa2048)
        .unwrap();

    let forged = register_with(&mp, &Tampering(identity.signer.clone()), &identity.cert_der).await;
    assert_eq!(
        forged,
        Err(RegisterError::GaveUp(AttemptFailure::Status(403)))
    );

    let stranger = RsaSigner::from_pkcs1_der(STRANGER_PK1).unwrap();
    let wrong_key = register_with(&mp, &stranger, &identity.cert_der).await;
    assert_eq!(
        wrong_key,
        Err(RegisterError::GaveUp(AttemptFailure::Status(403)))
    );

    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    assert!(
        db.clients().unwrap().is_empty(),
        "a forged request registered a client"
    );
    let rejections = db.rejections().unwrap();
    // Aggregated per address, reason and minute: the two refusals share a row.
    let refused: i64 = rejections.iter().map(|r| r.count).sum();
    assert_eq!(refused, 2, "{rejections:?}");
    assert!(
        format!("{rejections:?}")
            .to_lowercase()
            .contains("signature"),
        "{rejections:?}"
    );

    // The honest key registers right after.
    let honest = register_with(&mp, &identity.signer, &identity.cert_der)
        .await
        .unwrap();
    assert!(
        matches!(honest, RegistrationState::Registered(_)),
        "{honest:?}"
    );
    let clients = db.clients().unwrap();
    assert_eq!(
        clients[0].hash_algorithm.as_deref(),
        Some(profile::RSA_SHA256_OID)
    );
    mp.shutdown().await;
}

#[tokio::test]
async fn rsa_agent_sends_every_management_message_and_applies_policy() {
    use mpagent_sim::client::run::{self, Due};
    use mpagent_sim::mp::db::{NewPolicy, PolicyTarget};

    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    db.add_policy(&NewPolicy {
        policy_id: "{AAAAAAAA-2222-3333-4444-555555555555}",
        version: "1.00",
        target: PolicyTarget::All,
        category: None,
        flags: 0,
        body: "<Policy><Setting Name=\"Tray\" Value=\"2\"/></Policy>",
    })
    .unwrap();
    let opts = options(&mp, dir.path(), "RSA-GW-1");
    let everything = Due {
        heartbeat: true,
        inventory_items: 3,
        status: true,
        policy: true,
    };
    let report = run::run_cycle(&opts, everything, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.delivery_stopped, None, "{report:?}");
    assert_eq!((report.queued, report.delivered, report.refused), (3, 4, 0));
    assert_eq!(
        report.policies_applied,
        vec!["{AAAAAAAA-2222-3333-4444-555555555555}.1.00"]
    );

    // The site registered an RSA client and stored every message kind under its SMSID, each
    // accepted only after both RSA signatures (ClientIDSignature, PayloadSignature) verified.
    let smsid = report.smsid.clone().unwrap();
    let row = db.client(&smsid).unwrap().expect("registered");
    assert_eq!(row.hash_algorithm.as_deref(), Some(profile::RSA_SHA256_OID));
    let kinds: Vec<String> = db
        .messages(Some(&smsid))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(kinds, ["ddr", "hinv-full", "status", "state"]);
    // The body GET's ClientTokenSignature (RSA) verified, and the state message acknowledges it.
    assert_eq!(db.policy_fetches().unwrap().len(), 1);
    let state = db.messages(Some(&smsid)).unwrap().pop().unwrap();
    assert!(state
        .body
        .contains("{AAAAAAAA-2222-3333-4444-555555555555}.1.00"));
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    let identity = StateDir::open(&opts.state_dir)
        .unwrap()
        .load_or_create_identity("RSA-GW-1", unix_now())
        .unwrap();
    assert_eq!(identity.signer.kind(), KeyKind::Rsa2048);
    mp.shutdown().await;
}

/// Collects a policy body.
struct VecSink(Vec<u8>);

impl mpagent_core::sink::Sink for VecSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), mpagent_core::sink::Overflow> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

#[tokio::test]
async fn an_rsa_agent_for_a_sha1_site_registers_reports_and_fetches_policy() {
    use mpagent_core::agent::messages::{request_assignments, sign_message, PolicyBodyRequest};
    use mpagent_core::agent::registration::SigningIdentity;
    use mpagent_core::agent::signed::MessageSigner;
    use mpagent_core::config::{AgentConfig, SignatureHash};
    use mpagent_core::guid::Guid;
    use mpagent_core::io;
    use mpagent_core::sign::SiteHashSigner;
    use mpagent_core::wire::clientauth::ClientIdSignature;
    use mpagent_core::wire::report::{BasicDiscovery, Report, ReportIdentity};
    use mpagent_sim::client::transport::TcpConnector;
    use mpagent_sim::mp::db::{NewPolicy, PolicyTarget};
    use rand_core::OsRng;

    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    db.add_policy(&NewPolicy {
        policy_id: "{BBBBBBBB-2222-3333-4444-555555555555}",
        version: "1.00",
        target: PolicyTarget::All,
        category: None,
        flags: 0,
        body: "<Policy><Setting Name=\"Legacy\" Value=\"1\"/></Policy>",
    })
    .unwrap();
    let identity = StateDir::open(&dir.path().join("legacy"))
        .unwrap()
        .load_or_create_identity_with("RSA-2007", unix_now(), KeyKind::Rsa2048)
        .unwrap();
    let legacy = SiteHashSigner::new(identity.signer.clone(), SignatureHash::Sha1).unwrap();

    // Registration without HashAlgorithm, signed with SHA-1: the MP verifies SHA-1 (docs/protocol.md §4).
    let state =
        mpagent_tests::register_once(mp.local_addr(), "RSA-2007", &legacy, &identity.cert_der)
            .await
            .unwrap();
    let RegistrationState::Registered(smsid) = state else {
        panic!("{state:?}")
    };
    let row = db.client(&smsid.to_string()).unwrap().unwrap();
    assert_eq!(row.hash_algorithm, None);

    // A heartbeat DDR and a policy round trip, every signature SHA-1.
    let url = format!("http://{}", mp.local_addr());
    let config =
        AgentConfig::new("PS1", SiteMode::Mixed, &url, "RSA-2007", "rsa-2007.local").unwrap();
    let mut connector = TcpConnector {
        host: mp.local_addr().ip().to_string(),
        port: mp.local_addr().port(),
        connect_timeout: std::time::Duration::from_secs(5),
    };
    let cid = ClientIdSignature::compute(&legacy, smsid).unwrap();
    let me = MessageSigner::client(
        SigningIdentity {
            signer: &legacy,
            cert_der: &identity.cert_der,
        },
        &cid,
    );
    let discovery = BasicDiscovery {
        fqdn: config.fqdn,
        client_version: profile::REPORT_CLIENT_VERSION,
        platform_id: profile::DISCOVERY_PLATFORM_ID,
        domain: None,
        ip_addresses: &[],
        mac_addresses: &[],
    };
    let ddr = Report::discovery(
        ReportIdentity::new(smsid, config.netbios_name),
        unix_now().to_datetime(),
        &discovery,
    );
    let msg = sign_message(&config, &me, &ddr, Guid::random(&mut OsRng), unix_now()).unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    io::send_message(&mut connector, &msg, &mut buf)
        .await
        .unwrap();

    let request = request_assignments(&config, smsid, "");
    let msg = sign_message(&config, &me, &request, Guid::random(&mut OsRng), unix_now()).unwrap();
    let mut scratch = vec![0u8; 24 * 1024];
    let mut locations = Vec::new();
    let mut cookie = mpagent_core::wire::policy::ServerCookie::new();
    let n = io::request_policy(
        &mut connector,
        &msg,
        &mut buf,
        &mut scratch,
        &mut cookie,
        &mut |a| {
            let mut b = [0u8; 512];
            locations.push(a.location.unescape_into(&mut b).unwrap().to_string());
        },
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    // The emulator's reply carries a ServerCookie, kept for the next request to echo.
    assert!(!cookie.is_empty());
    // The body GET's ClientTokenSignature is SHA-1 too (the MP checks it with the registered
    // hash).
    let get = PolicyBodyRequest::new(&config, &legacy, smsid, &locations[0], unix_now()).unwrap();
    let mut body = VecSink(Vec::new());
    io::fetch_policy_body(&mut connector, &get, &mut buf, &mut body)
        .await
        .unwrap();
    // Served as UTF-16LE.
    let legacy_utf16: Vec<u8> = "Legacy".encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert!(body.0.windows(12).any(|w| w == legacy_utf16.as_slice()));

    // The same token signed with SHA-256 (the key without the site's hash) is refused.
    let wrong = PolicyBodyRequest::new(&config, &identity.signer, smsid, &locations[0], unix_now())
        .unwrap();
    let refused =
        io::fetch_policy_body(&mut connector, &wrong, &mut buf, &mut VecSink(Vec::new())).await;
    assert!(refused.is_err(), "{refused:?}");

    let kinds: Vec<String> = db
        .messages(Some(&smsid.to_string()))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(kinds, ["ddr"]);
    assert_eq!(db.policy_fetches().unwrap().len(), 1);
    let rejections = db.rejections().unwrap();
    assert_eq!(
        rejections.len(),
        1,
        "only the SHA-256 token: {rejections:?}"
    );
    mp.shutdown().await;
}

#[tokio::test]
async fn the_host_client_with_hash_sha1_registers_and_reports_without_hash_algorithm() {
    use mpagent_core::config::SignatureHash;
    use mpagent_sim::client::run::{self, Due};
    use mpagent_sim::mp::db::{NewPolicy, PolicyTarget};

    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    db.add_policy(&NewPolicy {
        policy_id: "{CCCCCCCC-2222-3333-4444-555555555555}",
        version: "1.00",
        target: PolicyTarget::All,
        category: None,
        flags: 0,
        body: "<Policy><Setting Name=\"Legacy\" Value=\"2\"/></Policy>",
    })
    .unwrap();
    // `client register --key rsa2048 --hash sha1`.
    let opts = ClientOptions {
        site_generation: Default::default(),
        signature_hash: Some(SignatureHash::Sha1),
        ..options(&mp, dir.path(), "RSA-2007-CLI")
    };
    let first = client::register(&opts, &mut |_| {}).await.unwrap();
    assert!(first.identity_created);
    let RegistrationState::Registered(smsid) = first.state else {
        panic!("{:?}", first.state)
    };
    let smsid = smsid.to_string();
    // No HashAlgorithm: the MP verified the registration with SHA-1 (docs/protocol.md §4) and holds the
    // client to SHA-1 from now on.
    let row = db.client(&smsid).unwrap().expect("registered");
    assert_eq!(row.hash_algorithm, None);

    // `client run --once --hash sha1` on the same state directory, without --key: the identity
    // keeps its RSA key. Every signature (ClientIDSignature, PayloadSignature, the body GET's
    // ClientTokenSignature) must be SHA-1 for the MP to accept it.
    let rerun = ClientOptions {
        key: KeyKind::P256,
        ..opts.clone()
    };
    let everything = Due {
        heartbeat: true,
        inventory_items: 3,
        status: true,
        policy: true,
    };
    let report = run::run_cycle(&rerun, everything, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.smsid.as_deref(), Some(smsid.as_str()));
    assert_eq!(report.delivery_stopped, None, "{report:?}");
    assert_eq!((report.queued, report.delivered, report.refused), (3, 4, 0));
    assert_eq!(
        report.policies_applied,
        vec!["{CCCCCCCC-2222-3333-4444-555555555555}.1.00"]
    );
    let kinds: Vec<String> = db
        .messages(Some(&smsid))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(kinds, ["ddr", "hinv-full", "status", "state"]);
    assert_eq!(db.policy_fetches().unwrap().len(), 1);
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    assert_eq!(db.clients().unwrap().len(), 1);
    assert_eq!(db.client(&smsid).unwrap().unwrap().hash_algorithm, None);
    mp.shutdown().await;
}

#[tokio::test]
async fn a_p256_client_with_hash_sha1_is_refused_before_any_connection() {
    use mpagent_core::config::{ConfigError, SignatureHash};
    use mpagent_sim::client::run::{self, Due};
    use mpagent_sim::client::state::KEY_FILE;
    use mpagent_sim::client::SignatureHashError;

    // Stands in for the MP: a connection attempt would sit in its backlog.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refused = |err: anyhow::Error, key: KeyKind| {
        assert!(err.to_string().contains("needs an RSA key"), "{err:#}");
        assert_eq!(
            err.downcast::<SignatureHashError>().unwrap(),
            SignatureHashError {
                error: ConfigError::Sha1NeedsRsa,
                key
            }
        );
    };

    // A new P-256 identity (the default key): refused, and no identity is made.
    let opts = ClientOptions {
        site_generation: Default::default(),
        signature_hash: Some(SignatureHash::Sha1),
        max_failures: 1,
        ..ClientOptions::mixed(
            &format!("http://{}", listener.local_addr().unwrap()),
            "PS1",
            dir.path().join("p256"),
            "P256-2007",
        )
    };
    refused(
        client::register(&opts, &mut |_| {}).await.unwrap_err(),
        KeyKind::P256,
    );
    let due = Due {
        heartbeat: true,
        inventory_items: 0,
        status: false,
        policy: false,
    };
    refused(
        run::run_cycle(&opts, due, &mut |_| {}).await.unwrap_err(),
        KeyKind::P256,
    );
    assert!(!opts.state_dir.join(KEY_FILE).exists());

    // An existing P-256 identity keeps its key whatever --key says: refused all the same.
    StateDir::open(&dir.path().join("kept"))
        .unwrap()
        .load_or_create_identity("P256-KEPT", unix_now())
        .unwrap();
    let kept = ClientOptions {
        key: KeyKind::Rsa2048,
        state_dir: dir.path().join("kept"),
        ..opts.clone()
    };
    refused(
        client::register(&kept, &mut |_| {}).await.unwrap_err(),
        KeyKind::P256,
    );

    // Nothing reached the "MP".
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}
