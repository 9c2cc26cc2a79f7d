//! A tiny fleet against an in-process MP, directly and through the ISV proxy: every appliance
//! registers and delivers its heartbeats, and the summary agrees with the site database. No
//! timing assertions.

use mpagent_sim::client::KeyKind;
use mpagent_sim::fleet::{self, FleetOptions, ProxyTarget};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_fleet_registers_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let server = fleet::start_local_mp(dir.path(), 8).await.unwrap();
    let opts = FleetOptions {
        mp: Some(server.url()),
        site_code: fleet::DEFAULT_SITE_CODE.into(),
        clients: 20,
        concurrency: 6,
        duration: None,
        messages_per_client: 2,
        threads: 2,
        progress: false,
        proxy: None,
        key: KeyKind::P256,
        site_generation: Default::default(),
    };
    let summary = fleet::run_against(&server.url(), &opts).await.unwrap();
    server.shutdown().await;

    assert_eq!(summary.errors_total, 0, "{:?}", summary.errors);
    assert_eq!(summary.clients_started, 20);
    assert_eq!(summary.registered, 20);
    assert_eq!(summary.messages_sent, 40);
    assert_eq!(summary.registration.count, 20);
    assert_eq!(summary.message.count, 40);
    assert_eq!(summary.identity.count, 20);
    assert!(summary.peak_rss_kib > 0);

    let db = SiteDb::open(dir.path().join("fleet-site.db")).unwrap();
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 20);
    let mut names: Vec<_> = clients
        .iter()
        .map(|c| c.netbios_name.clone().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20, "one client per appliance");
    let messages = db.messages(None).unwrap();
    assert_eq!(messages.len(), 40);
    for c in &clients {
        let mut mine: Vec<_> = messages
            .iter()
            .filter(|m| m.smsid.eq_ignore_ascii_case(&c.smsid))
            .collect();
        assert_eq!(mine.len(), 2, "two heartbeats from {}", c.smsid);
        assert!(mine.iter().all(|m| m.kind == "ddr"), "{}", c.smsid);
        // Each appliance's clock jumps to its next heartbeat deadline (a second on) instead of
        // waiting: the second heartbeat is stamped later than the first.
        mine.sort_by(|a, b| a.sent_time.cmp(&b.sent_time));
        assert!(
            mine[0].sent_time < mine[1].sent_time,
            "{}: {:?} then {:?}",
            c.smsid,
            mine[0].sent_time,
            mine[1].sent_time
        );
    }
    assert!(db.rejections().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_run_verifies_and_registers_every_request() {
    for connections in [
        fleet::Connections::PerRequest,
        fleet::Connections::KeepAlive,
    ] {
        let b = fleet::run_bound(8, 4, 2, connections, None).await.unwrap();
        assert_eq!(b.requests, 8);
        assert_eq!(b.mp_ok, 8, "{connections:?}");
        assert_eq!(b.mp_failed, 0, "{connections:?}");
        assert!(b.ratio > 0.0);
        // The client's CPU is a part of the whole (b), measured on its own thread.
        assert!(b.client_cpu_ms_per_registration >= 0.0);
        assert!(b.client_cpu_ms_per_registration <= b.mp_cpu_ms_per_registration);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_measurements_answer_every_request_and_say_what_they_left_out() {
    for floor in [fleet::Floor::NoStore, fleet::Floor::Transport] {
        let b = fleet::run_bound(8, 4, 2, fleet::Connections::KeepAlive, Some(floor))
            .await
            .unwrap();
        assert_eq!((b.mp_ok, b.mp_failed), (8, 0), "{floor:?}");
        assert_eq!(b.floor, Some(floor));
        assert!(b.to_string().contains("not an MP"), "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_fleet_through_the_proxy_is_registered_and_signed_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = fleet::start_local_mp(dir.path(), 8).await.unwrap();
    let proxy = fleet::start_local_proxy(dir.path(), &server).await.unwrap();
    let proxy_smsid = proxy.smsid().to_string();
    let opts = FleetOptions {
        mp: None,
        site_code: fleet::DEFAULT_SITE_CODE.into(),
        clients: 12,
        concurrency: 4,
        duration: None,
        messages_per_client: 2,
        threads: 2,
        progress: false,
        proxy: Some(ProxyTarget::At(proxy.local_addr())),
        key: KeyKind::P256,
        site_generation: Default::default(),
    };
    let summary = fleet::run_via_proxy(proxy.local_addr(), &server.url(), &opts)
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
    server.shutdown().await;

    assert_eq!(summary.errors_total, 0, "{:?}", summary.errors);
    assert_eq!(summary.registered, 12);
    assert_eq!(summary.messages_sent, 24);
    assert_eq!(summary.registration.count, 12);
    assert_eq!(summary.message.count, 24);
    assert_eq!(summary.identity.count, 0, "the proxy makes the keys");
    assert!(summary.proxy.is_some());

    let db = SiteDb::open(dir.path().join(fleet::SITE_DB_FILE)).unwrap();
    let clients = db.clients().unwrap();
    let proxy_row = clients
        .iter()
        .find(|c| c.smsid.eq_ignore_ascii_case(&proxy_smsid))
        .expect("the proxy registered itself");
    assert_eq!(proxy_row.agent_type, 4);
    let devices: Vec<_> = clients.iter().filter(|c| c.agent_type == 8).collect();
    assert_eq!(devices.len(), 12);
    assert_eq!(
        clients.len(),
        13,
        "the proxy and its 12 devices, nothing else"
    );
    let mut names: Vec<_> = devices
        .iter()
        .map(|c| c.netbios_name.clone().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 12, "one client per appliance");
    let messages = db.messages(None).unwrap();
    assert_eq!(messages.len(), 24);
    for c in &devices {
        assert!(
            c.registered_by_proxy
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(&proxy_smsid)),
            "{} registered by the proxy",
            c.smsid
        );
        let mine: Vec<_> = messages
            .iter()
            .filter(|m| m.smsid.eq_ignore_ascii_case(&c.smsid))
            .collect();
        assert_eq!(mine.len(), 2, "two heartbeats from {}", c.smsid);
        assert!(mine.iter().all(|m| m
            .via_proxy
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(&proxy_smsid))));
    }
    assert!(db.rejections().unwrap().is_empty());
}

/// The no-store floor answers a registration as registered and records nothing; the same request
/// to the real MP is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_no_store_floor_records_nothing_and_the_real_mp_does() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for floor in [Some(fleet::Floor::NoStore), None] {
        let dir = tempfile::tempdir().unwrap();
        let config = MpConfig {
            site_code: fleet::DEFAULT_SITE_CODE.into(),
            db_path: dir.path().join("site.db"),
            approval: Approval::Auto,
            limits: Limits::default(),
            mp_host: "mp.test".into(),
            strict: false,
        };
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let server = match floor {
            Some(f) => fleet::start_floor_mp(config, any, f).await.unwrap(),
            None => MpServer::start(config, any).await.unwrap(),
        };
        let request =
            fleet::prebuild_registration(&server.url(), fleet::DEFAULT_SITE_CODE, 0).unwrap();
        let mut stream = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        stream.write_all(&request.http).await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        assert!(reply.starts_with(b"HTTP/1.1 200"), "{floor:?}");
        server.shutdown().await;
        let clients = SiteDb::open(dir.path().join("site.db"))
            .unwrap()
            .clients()
            .unwrap();
        assert_eq!(clients.len(), usize::from(floor.is_none()), "{floor:?}");
    }
}

/// DER of the rsaEncryption OID (1.2.840.113549.1.1.1), as it appears in an RSA certificate's
/// SubjectPublicKeyInfo.
const RSA_ENCRYPTION_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn has_rsa_key(cert_der: &[u8]) -> bool {
    cert_der
        .windows(RSA_ENCRYPTION_OID.len())
        .any(|w| w == RSA_ENCRYPTION_OID)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_fleet_registers_rsa_appliances_directly_and_through_the_proxy() {
    // Directly: keys made ahead, every appliance registered with an RSA certificate.
    let dir = tempfile::tempdir().unwrap();
    let server = fleet::start_local_mp(dir.path(), 8).await.unwrap();
    let mut opts = FleetOptions {
        mp: Some(server.url()),
        site_code: fleet::DEFAULT_SITE_CODE.into(),
        clients: 6,
        concurrency: 3,
        duration: None,
        messages_per_client: 1,
        threads: 1,
        progress: false,
        proxy: None,
        key: KeyKind::Rsa2048,
        site_generation: Default::default(),
    };
    let summary = fleet::run_against(&server.url(), &opts).await.unwrap();
    server.shutdown().await;
    assert_eq!(summary.errors_total, 0, "{:?}", summary.errors);
    assert_eq!((summary.registered, summary.messages_sent), (6, 6));
    assert_eq!((summary.key, summary.keys_made_ahead), ("RSA-2048", 6));
    let clients = SiteDb::open(dir.path().join(fleet::SITE_DB_FILE))
        .unwrap()
        .clients()
        .unwrap();
    assert_eq!(clients.len(), 6);
    assert!(clients.iter().all(|c| has_rsa_key(&c.cert_der)));

    // Through an RSA proxy: its own certificate and its devices' are RSA.
    let dir = tempfile::tempdir().unwrap();
    let server = fleet::start_local_mp(dir.path(), 8).await.unwrap();
    let proxy = fleet::start_local_proxy_with(dir.path(), &server, KeyKind::Rsa2048)
        .await
        .unwrap();
    opts.mp = None;
    opts.proxy = Some(ProxyTarget::At(proxy.local_addr()));
    let summary = fleet::run_via_proxy(proxy.local_addr(), &server.url(), &opts)
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
    server.shutdown().await;
    assert_eq!(summary.errors_total, 0, "{:?}", summary.errors);
    assert_eq!((summary.registered, summary.messages_sent), (6, 6));
    let clients = SiteDb::open(dir.path().join(fleet::SITE_DB_FILE))
        .unwrap()
        .clients()
        .unwrap();
    assert_eq!(clients.len(), 7, "the proxy and its 6 devices");
    assert!(clients.iter().all(|c| has_rsa_key(&c.cert_der)));
}

fn direct(url: &str, clients: usize) -> FleetOptions {
    FleetOptions {
        mp: Some(url.into()),
        site_code: fleet::DEFAULT_SITE_CODE.into(),
        clients,
        concurrency: 2,
        duration: None,
        messages_per_client: 2,
        threads: 1,
        progress: false,
        proxy: None,
        key: KeyKind::P256,
        site_generation: Default::default(),
    }
}

/// An MP that is not there: every appliance's registration fails once and is counted under one
/// kind, the core's sentence for the refused connection, not a Rust `Debug` value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_registrations_are_counted_by_their_sentence() {
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let summary = fleet::run_against(&url, &direct(&url, 3)).await.unwrap();
    assert_eq!((summary.registered, summary.messages_sent), (0, 0));
    assert_eq!(summary.errors_total, 3);
    let kinds: Vec<_> = summary.errors.keys().cloned().collect();
    assert_eq!(
        kinds,
        ["register: the MP refused the connection"],
        "{kinds:?}"
    );
    assert_eq!(summary.registration.count, 0);
    assert_eq!(summary.identity.count, 3);
}

/// An MP that holds new clients for approval: each appliance stops at the first pending answer
/// (no waiting through the agent's backoff) and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mp_that_does_not_auto_approve_leaves_every_appliance_pending() {
    let dir = tempfile::tempdir().unwrap();
    let config = MpConfig {
        site_code: fleet::DEFAULT_SITE_CODE.into(),
        db_path: dir.path().join("site.db"),
        approval: Approval::Pending,
        limits: Limits::default(),
        mp_host: "mp.test".into(),
        strict: false,
    };
    let server = MpServer::start(config, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let summary = fleet::run_against(&server.url(), &direct(&server.url(), 2))
        .await
        .unwrap();
    server.shutdown().await;
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!((summary.registered, summary.messages_sent), (0, 0));
    assert_eq!(
        summary.errors.into_iter().collect::<Vec<_>>(),
        [(
            "register: pending (is the MP auto-approving?)".to_string(),
            2
        )]
    );
}
