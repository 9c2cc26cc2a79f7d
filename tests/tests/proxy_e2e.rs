//! The ISV proxy end to end over loopback: first run → export → administrator import →
//! proxy registration (AgentType 4) → devices registered through it (AgentType 8) → their data at
//! the MP under their own SMSIDs, signed by the proxy; and the refusals.

use std::path::Path;

use mpagent_core::config::SignatureHash;
use mpagent_core::profile;
use mpagent_sim::client::state::{ClientSigner, KeyKind};
use mpagent_sim::mp::db::{ClientRow, SiteDb};
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use mpagent_sim::proxy::client::{synthetic_items, DeviceConnection};
use mpagent_sim::proxy::protocol::{code, Frame};
use mpagent_sim::proxy::registry::Registry;
use mpagent_sim::proxy::{self, ProxyHandle, ProxyOptions};

async fn start_mp(dir: &Path) -> MpServer {
    let config = MpConfig {
        site_code: "PS1".into(),
        db_path: dir.join("site.db"),
        approval: Approval::Auto,
        // An ISV proxy speaks for many devices from one address: the site lets that address
        // use every connection slot.
        limits: Limits {
            max_connections_per_address: Limits::default().max_connections,
            ..Limits::default()
        },
        mp_host: "mp.test.local".into(),
        // Strict, as a real MP: reports are read from their attachment, forgers are told nothing.
        strict: true,
    };
    MpServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("MP starts")
}

fn proxy_options(mp: &MpServer, state: &Path, name: &str) -> ProxyOptions {
    let mut o = ProxyOptions::new(
        &format!("http://{}", mp.local_addr()),
        "PS1",
        state.to_path_buf(),
    );
    o.name = name.into();
    o
}

/// Export the proxy's certificate (first run), import it as the administrator, start the proxy.
async fn imported_proxy(mp: &MpServer, db: &SiteDb, dir: &Path, name: &str) -> ProxyHandle {
    let state = dir.join(name);
    let cer = dir.join(format!("{name}.cer"));
    let exported = proxy::export_cert(&state, &cer, name).unwrap();
    assert!(exported.created);
    let smsid = db.import_cert(&std::fs::read(&cer).unwrap()).unwrap();
    let handle = proxy::start(
        proxy_options(mp, &state, name),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the imported proxy registers and serves");
    assert!(
        handle.smsid().to_string().eq_ignore_ascii_case(&smsid),
        "the proxy holds the SMSID assigned at import"
    );
    handle
}

async fn device(proxy: &ProxyHandle, id: &str, name: &str) -> (DeviceConnection, String) {
    mpagent_tests::proxy_device(proxy.local_addr(), id, name).await
}

fn stop(h: ProxyHandle) {
    h.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_registers_three_devices_and_their_data_arrives_under_their_smsids() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let proxy = imported_proxy(&mp, &db, dir.path(), "PROXY-A").await;
    let proxy_smsid = proxy.smsid().to_string();
    let row = db.client(&proxy_smsid).unwrap().expect("proxy registered");
    assert_eq!(row.agent_type, 4);

    let mut smsids = Vec::new();
    for i in 1..=3 {
        let (mut conn, smsid) = device(&proxy, &format!("dev-{i}"), &format!("THING-{i}")).await;
        for frame in [
            Frame::Heartbeat,
            Frame::Inventory {
                items: synthetic_items(4),
            },
            Frame::Status {
                message_type: "device-online".into(),
                properties: vec![("Firmware".into(), "1.0".into())],
            },
            Frame::State {
                topic: "fw-update".into(),
                state: 2,
            },
        ] {
            let want = frame.kind();
            match conn.request(&frame).await.unwrap() {
                Frame::Ack { of, .. } => assert_eq!(of, want),
                other => panic!("dev-{i} {want:#x}: {other:?}"),
            }
        }
        match conn.request(&Frame::PolicyRequest).await.unwrap() {
            Frame::PolicyList { .. } => {}
            other => panic!("policy: {other:?}"),
        }
        smsids.push(smsid);
    }
    let distinct: std::collections::HashSet<_> = smsids.iter().collect();
    assert_eq!(distinct.len(), 3);

    for (i, smsid) in smsids.iter().enumerate() {
        let client = db.client(smsid).unwrap().expect("registered");
        assert_eq!(client.agent_type, 8);
        assert_eq!(
            client.registered_by_proxy.as_deref(),
            Some(proxy_smsid.as_str())
        );
        assert_eq!(
            client.netbios_name.as_deref(),
            Some(format!("THING-{}", i + 1).as_str())
        );
        // The device's certificate is the one the proxy made and keeps for it.
        let kept = Registry::open(&dir.path().join("PROXY-A"))
            .unwrap()
            .device(&format!("dev-{}", i + 1))
            .unwrap()
            .expect("the proxy keeps the device");
        assert_eq!(client.cert_der, kept.cert_der);
        assert_eq!(kept.name, format!("THING-{}", i + 1));

        let messages = db.messages(Some(smsid)).unwrap();
        let kinds: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["ddr", "hinv-full", "status", "state"], "{smsid}");
        for m in &messages {
            assert_eq!(m.via_proxy.as_deref(), Some(proxy_smsid.as_str()));
        }
        assert!(messages[1].body.contains("MPX_InventoryItem"));
        assert!(messages[1].body.contains("sensor-3"));
    }

    // The mapping is durable: a restarted proxy keeps its SMSID and knows its devices without
    // registering them again.
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    let proxy = proxy::start(
        proxy_options(&mp, &dir.path().join("PROXY-A"), "PROXY-A"),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(proxy.smsid().to_string(), proxy_smsid);
    let mapping = proxy::client_mapping(&dir.path().join("PROXY-A")).unwrap();
    assert_eq!(mapping.len(), 3);
    let mut conn = DeviceConnection::connect(proxy.local_addr()).await.unwrap();
    match conn
        .request(&Frame::Hello {
            device_id: "dev-2".into(),
            name: "THING-2".into(),
        })
        .await
        .unwrap()
    {
        Frame::Ack { detail, .. } => assert_eq!(detail, format!("registered {}", smsids[1])),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        conn.request(&Frame::Heartbeat).await.unwrap(),
        Frame::Ack { .. }
    ));
    assert_eq!(db.messages(Some(&smsids[1])).unwrap().len(), 5);
    // REGISTER again confirms the same SMSID.
    match conn.request(&Frame::Register).await.unwrap() {
        Frame::RegisterResult { status: 0, smsid } => assert_eq!(smsid, smsids[1]),
        other => panic!("{other:?}"),
    }
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unimported_proxy_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let state = dir.path().join("proxy");
    proxy::export_cert(&state, &dir.path().join("proxy.cer"), "PROXY-X").unwrap();
    let err = proxy::start(
        proxy_options(&mp, &state, "PROXY-X"),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .err()
    .expect("an unimported proxy must not start");
    let text = format!("{err:#}");
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(text.contains("import-cert"), "{text}");
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    assert!(db
        .rejections()
        .unwrap()
        .iter()
        .any(|r| r.reason.contains("not imported")));
    assert!(db.clients().unwrap().is_empty());
    mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_an_error_and_the_proxy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let proxy = imported_proxy(&mp, &db, dir.path(), "PROXY-M").await;

    let bad: [(&[u8], u16); 4] = [
        (b"GET / HTTP/1.1\r\n\r\n", code::MALFORMED),
        (
            &[b'M', b'P', b'X', 9, 1, 0, 0, 0, 0],
            code::UNSUPPORTED_VERSION,
        ),
        (&[b'M', b'P', b'X', 1, 4, 0x7F, 0, 0, 0], code::TOO_LARGE),
        // An inventory claiming 3 pairs with none present.
        (&[b'M', b'P', b'X', 1, 4, 0, 0, 0, 2, 0, 3], code::MALFORMED),
    ];
    for (bytes, want) in bad {
        let mut conn = DeviceConnection::connect(proxy.local_addr()).await.unwrap();
        match conn.request_raw(bytes).await.unwrap() {
            Frame::Error { code, text } => assert_eq!(code, want, "{text}"),
            other => panic!("{other:?}"),
        }
        assert!(conn.is_closed().await, "closed after a malformed frame");
    }
    // Valid frames out of order are refused but the connection stays.
    let mut conn = DeviceConnection::connect(proxy.local_addr()).await.unwrap();
    match conn.request(&Frame::Heartbeat).await.unwrap() {
        Frame::Error { code, .. } => assert_eq!(code, code::SEQUENCE),
        other => panic!("{other:?}"),
    }
    match conn
        .request(&Frame::Hello {
            device_id: "../etc".into(),
            name: "X".into(),
        })
        .await
        .unwrap()
    {
        Frame::Error { code, .. } => assert_eq!(code, code::INVALID),
        other => panic!("{other:?}"),
    }
    conn.request(&Frame::Hello {
        device_id: "dev-9".into(),
        name: "THING-9".into(),
    })
    .await
    .unwrap();
    match conn.request(&Frame::Heartbeat).await.unwrap() {
        Frame::Error { code, .. } => assert_eq!(code, code::NOT_REGISTERED),
        other => panic!("{other:?}"),
    }
    // The next device is served normally.
    let (mut next, smsid) = device(&proxy, "dev-ok", "THING-OK").await;
    assert!(matches!(
        next.request(&Frame::Heartbeat).await.unwrap(),
        Frame::Ack { .. }
    ));
    assert_eq!(db.messages(Some(&smsid)).unwrap().len(), 1);
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_cannot_speak_for_the_first_proxys_device() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let first = imported_proxy(&mp, &db, dir.path(), "PROXY-1").await;
    let (mut conn, smsid) = device(&first, "dev-1", "THING-1").await;
    assert!(matches!(
        conn.request(&Frame::Heartbeat).await.unwrap(),
        Frame::Ack { .. }
    ));

    // The second proxy is imported and registered too, and is handed the first proxy's device
    // mapping (as if its state had been copied): the MP refuses it.
    let second = imported_proxy(&mp, &db, dir.path(), "PROXY-2").await;
    let copied = Registry::open(&dir.path().join("PROXY-1"))
        .unwrap()
        .device("dev-1")
        .unwrap()
        .expect("the first proxy keeps dev-1");
    Registry::open(&dir.path().join("PROXY-2"))
        .unwrap()
        .put(copied)
        .await
        .unwrap();
    let mut conn2 = DeviceConnection::connect(second.local_addr())
        .await
        .unwrap();
    conn2
        .request(&Frame::Hello {
            device_id: "dev-1".into(),
            name: "THING-1".into(),
        })
        .await
        .unwrap();
    // The second proxy's Agent for the device confirms the copied registration before it sends
    // anything: the MP refuses the confirmation (it wants the registering proxy) and then the
    // registration afresh (the certificate is the first proxy's device's), so the heartbeat
    // stays queued at the second proxy and the device is told so.
    match conn2.request(&Frame::Heartbeat).await.unwrap() {
        Frame::Ack { detail, .. } => assert!(detail.starts_with("queued {"), "{detail}"),
        other => panic!("{other:?}"),
    }
    let rejections = db.rejections().unwrap();
    assert!(
        rejections
            .iter()
            .any(|r| r.reason.contains("must be signed by")),
        "{rejections:?}"
    );
    assert!(
        rejections
            .iter()
            .any(|r| r.reason.contains("already registered")),
        "{rejections:?}"
    );
    // Nor may it (re-)confirm the device's registration: the MP wants the registering proxy.
    match conn2.request(&Frame::Register).await.unwrap() {
        Frame::Error { code, text } => {
            assert_eq!(code, code::MP_REFUSED);
            assert!(text.contains("403"), "{text}");
        }
        other => panic!("the MP must not hand the device to another proxy: {other:?}"),
    }
    assert!(db
        .rejections()
        .unwrap()
        .iter()
        .any(|r| r.reason.contains("must be signed by")));
    // Only the first proxy's heartbeat arrived for the device; the first proxy still works.
    let msgs = db.messages(Some(&smsid)).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0].via_proxy.as_deref(),
        Some(first.smsid().to_string().as_str())
    );
    assert!(matches!(
        conn.request(&Frame::Heartbeat).await.unwrap(),
        Frame::Ack { .. }
    ));
    tokio::task::spawn_blocking(move || {
        stop(first);
        stop(second);
    })
    .await
    .unwrap();
    mp.shutdown().await;
}

/// An RSA-2048 proxy (exported, imported) registering one device and relaying its data, signed
/// with `hash`: returns the proxy's and the device's site records after checking the messages.
async fn rsa_proxy_relays(hash: SignatureHash) -> (ClientRow, ClientRow) {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let state = dir.path().join("PROXY-R");
    let cer = dir.path().join("PROXY-R.cer");
    let exported = proxy::export_cert_with(&state, &cer, "PROXY-R", KeyKind::Rsa2048).unwrap();
    let proxy_smsid = db.import_cert(&exported.cert_der).unwrap();
    let mut opts = proxy_options(&mp, &state, "PROXY-R");
    opts.signature_hash = Some(hash);
    let proxy = proxy::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the RSA proxy registers");
    assert!(proxy.smsid().to_string().eq_ignore_ascii_case(&proxy_smsid));

    let (mut conn, smsid) = device(&proxy, "rsa-dev", "RSA-THING").await;
    for frame in [
        Frame::Heartbeat,
        Frame::Status {
            message_type: "device-online".into(),
            properties: vec![],
        },
        Frame::State {
            topic: "fw-update".into(),
            state: 1,
        },
    ] {
        let want = frame.kind();
        match conn.request(&frame).await.unwrap() {
            Frame::Ack { of, .. } => assert_eq!(of, want),
            other => panic!("{want:#x}: {other:?}"),
        }
    }
    assert!(matches!(
        conn.request(&Frame::PolicyRequest).await.unwrap(),
        Frame::PolicyList { .. }
    ));
    // The MP verified every one with the proxy's RSA certificate (PublicKey, ProxySMSID).
    let messages = db.messages(Some(&smsid)).unwrap();
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["ddr", "status", "state"]);
    assert!(messages
        .iter()
        .all(|m| m.via_proxy.as_deref() == Some(proxy.smsid().to_string().as_str())));
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    // The device's certificate, made by the proxy, has an RSA key like the proxy's.
    let kept = Registry::open(&state)
        .unwrap()
        .device("rsa-dev")
        .unwrap()
        .expect("the proxy keeps the device");
    let kept_key = ClientSigner::from_pkcs8_der(&kept.key_pk8).unwrap();
    assert_eq!(kept_key.kind(), KeyKind::Rsa2048);

    let proxy_row = db.client(&proxy_smsid).unwrap().expect("proxy registered");
    let device_row = db.client(&smsid).unwrap().expect("device registered");
    assert_eq!((proxy_row.agent_type, device_row.agent_type), (4, 8));
    assert_eq!(proxy_row.cert_der, exported.cert_der);
    assert_eq!(device_row.cert_der, kept.cert_der);
    assert_eq!(
        device_row.registered_by_proxy.as_deref(),
        Some(proxy.smsid().to_string().as_str())
    );
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    mp.shutdown().await;
    (proxy_row, device_row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_proxy_registers_a_device_and_relays_its_data_signed_with_its_rsa_key() {
    let (proxy_row, device_row) = rsa_proxy_relays(SignatureHash::Sha256).await;
    // Both registrations were RSA SHA-256 (the proxy signs the device's too).
    assert_eq!(
        proxy_row.hash_algorithm.as_deref(),
        Some(profile::RSA_SHA256_OID)
    );
    assert_eq!(
        device_row.hash_algorithm.as_deref(),
        Some(profile::RSA_SHA256_OID)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_proxy_for_a_sha1_site_sends_no_hash_algorithm_and_is_accepted() {
    let (proxy_row, device_row) = rsa_proxy_relays(SignatureHash::Sha1).await;
    // No HashAlgorithm in either registration: the MP verified SHA-1 (docs/protocol.md §4).
    assert_eq!(proxy_row.hash_algorithm, None);
    assert_eq!(device_row.hash_algorithm, None);
}

#[tokio::test]
async fn a_p256_proxy_cannot_be_configured_for_sha1() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ProxyOptions::new("http://127.0.0.1:9", "PS1", dir.path().join("p"));
    opts.signature_hash = Some(SignatureHash::Sha1);
    let err = proxy::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .expect("refused at start-up");
    assert!(format!("{err:#}").contains("need an RSA key"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_registering_at_once_get_distinct_smsids_that_survive_a_restart() {
    const DEVICES: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let proxy = imported_proxy(&mp, &db, dir.path(), "PROXY-C").await;
    let proxy_smsid = proxy.smsid().to_string();
    let addr = proxy.local_addr();

    // All at once, plus one device registering on two connections at the same time.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..DEVICES {
        set.spawn(async move {
            let id = format!("c-{i}");
            let (_conn, smsid) = mpagent_tests::proxy_device(addr, &id, &format!("C-{i}")).await;
            (id, smsid)
        });
    }
    for _ in 0..2 {
        set.spawn(async move {
            let (_conn, smsid) = mpagent_tests::proxy_device(addr, "twin", "TWIN").await;
            ("twin".to_string(), smsid)
        });
    }
    let mut got = Vec::new();
    while let Some(r) = set.join_next().await {
        got.push(r.unwrap());
    }
    let twins: Vec<String> = got
        .iter()
        .filter(|(id, _)| id == "twin")
        .map(|(_, s)| s.clone())
        .collect();
    assert_eq!(twins.len(), 2);
    assert_eq!(twins[0], twins[1], "one device, one SMSID");
    got.retain(|(id, _)| id != "twin");
    got.push(("twin".into(), twins[0].clone()));
    let distinct: std::collections::HashSet<&String> = got.iter().map(|(_, s)| s).collect();
    assert_eq!(distinct.len(), DEVICES + 1, "every device its own SMSID");
    for (id, smsid) in &got {
        let row = db.client(smsid).unwrap().expect("registered at the MP");
        assert_eq!(row.agent_type, 8, "{id}");
        assert_eq!(
            row.registered_by_proxy.as_deref(),
            Some(proxy_smsid.as_str())
        );
    }

    // After a restart the proxy still knows every device under the same SMSID.
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    let proxy = proxy::start(
        proxy_options(&mp, &dir.path().join("PROXY-C"), "PROXY-C"),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let mapping = proxy::client_mapping(&dir.path().join("PROXY-C")).unwrap();
    assert_eq!(mapping.len(), DEVICES + 1);
    for (id, smsid) in &got {
        let mut conn = DeviceConnection::connect(proxy.local_addr()).await.unwrap();
        match conn
            .request(&Frame::Hello {
                device_id: id.clone(),
                name: "ANY".into(),
            })
            .await
            .unwrap()
        {
            Frame::Ack { detail, .. } => assert_eq!(detail, format!("registered {smsid}")),
            other => panic!("{id}: {other:?}"),
        }
    }
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    mp.shutdown().await;
}

fn mp_config_at(db_dir: &Path, strict: bool) -> MpConfig {
    MpConfig {
        site_code: "PS1".into(),
        db_path: db_dir.join("site.db"),
        approval: Approval::Auto,
        limits: Limits {
            max_connections_per_address: Limits::default().max_connections,
            ..Limits::default()
        },
        mp_host: "mp.test.local".into(),
        strict,
    }
}

/// The site database as it is now, copied to `to` (the MP stopped, so it is whole on disk).
fn copy_site_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let src = from.join(format!("site.db{suffix}"));
        if src.exists() {
            std::fs::copy(&src, to.join(format!("site.db{suffix}"))).unwrap();
        }
    }
}

fn ack_detail(answer: Frame) -> String {
    match answer {
        Frame::Ack { detail, .. } => detail,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_the_site_forgot_registers_again_through_the_proxy_and_its_heartbeat_arrives() {
    let dir = tempfile::tempdir().unwrap();
    // Our emulator's own mode: it refuses (403) a message from an SMSID it does not know, which
    // is what sends the Agent to re-confirm. (A strict, real MP answers 200 and drops it; the
    // Agent learns from the empty policy reply instead.)
    let mp = MpServer::start(
        mp_config_at(dir.path(), false),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let addr = mp.local_addr();
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let proxy = imported_proxy(&mp, &db, dir.path(), "PROXY-F").await;
    // The site as it was before it knew the device: it knows the proxy only.
    mp.shutdown().await;
    let rebuilt = dir.path().join("rebuilt");
    copy_site_db(dir.path(), &rebuilt);
    let mp = MpServer::start(mp_config_at(dir.path(), false), addr)
        .await
        .unwrap();
    let (mut conn, old_id) = device(&proxy, "dev-f", "THING-F").await;
    assert!(ack_detail(conn.request(&Frame::Heartbeat).await.unwrap()).starts_with('{'));
    mp.shutdown().await;

    // A new site database behind the same address: the device's SMSID means nothing there.
    let mp = MpServer::start(mp_config_at(&rebuilt, false), addr)
        .await
        .unwrap();
    let detail = ack_detail(conn.request(&Frame::Heartbeat).await.unwrap());
    assert!(detail.starts_with('{'), "delivered, not queued: {detail}");
    let site = SiteDb::open(rebuilt.join("site.db")).unwrap();
    // Registered afresh (the device proposes the SMSID made from its certificate, which the new
    // site takes), through the proxy, and the heartbeat arrived under it.
    let row = site
        .client(&old_id)
        .unwrap()
        .expect("registered with the new site");
    assert_eq!(row.agent_type, 8);
    assert_eq!(
        row.registered_by_proxy.as_deref(),
        Some(proxy.smsid().to_string().as_str())
    );
    let kinds: Vec<String> = site
        .messages(Some(&old_id))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(kinds, ["ddr"]);
    let kept = Registry::open(&dir.path().join("PROXY-F"))
        .unwrap()
        .state("dev-f")
        .unwrap();
    assert_eq!(
        kept.map(|s| s.to_string()),
        Some(format!("registered as {old_id}"))
    );
    // Nothing refused for good: the refusals were the forgotten SMSID's, answered by registering.
    assert!(
        site.rejections()
            .unwrap()
            .iter()
            .all(|r| !r.reason.contains("must be signed by")),
        "{:?}",
        site.rejections()
    );
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_reset_gives_the_proxied_device_a_new_certificate_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let proxy = imported_proxy(&mp, &db, dir.path(), "PROXY-R").await;
    let state = dir.path().join("PROXY-R");
    let (mut conn, id) = device(&proxy, "dev-r", "THING-R").await;
    assert!(ack_detail(conn.request(&Frame::Heartbeat).await.unwrap()).starts_with('{'));
    let old_cert = Registry::open(&state)
        .unwrap()
        .device("dev-r")
        .unwrap()
        .unwrap()
        .cert_der;
    assert_eq!(db.client(&id).unwrap().unwrap().cert_der, old_cert);

    // `mp next-reply --db F SMSID certificate-reset`: the device's next registration request is
    // answered CertificateReset.
    assert!(db
        .set_next_reply(&id, mpagent_sim::mp::db::NextReply::CertificateReset)
        .unwrap());
    match conn.request(&Frame::Register).await.unwrap() {
        Frame::RegisterResult { status: 0, smsid } => assert_eq!(smsid, id),
        other => panic!("{other:?}"),
    }
    let renewed = Registry::open(&state)
        .unwrap()
        .device("dev-r")
        .unwrap()
        .unwrap();
    assert_ne!(renewed.cert_der, old_cert, "a new certificate");
    assert_eq!(
        db.client(&id).unwrap().unwrap().cert_der,
        renewed.cert_der,
        "the site registered the new certificate"
    );
    assert!(ack_detail(conn.request(&Frame::Heartbeat).await.unwrap()).starts_with('{'));

    // Kept across a restart: the restarted proxy confirms the device with the new certificate.
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    let proxy = proxy::start(
        proxy_options(&mp, &state, "PROXY-R"),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (mut conn, again) = device(&proxy, "dev-r", "THING-R").await;
    assert_eq!(again, id);
    assert!(ack_detail(conn.request(&Frame::Heartbeat).await.unwrap()).starts_with('{'));
    let kept = Registry::open(&state)
        .unwrap()
        .device("dev-r")
        .unwrap()
        .unwrap();
    assert_eq!(kept.cert_der, renewed.cert_der);
    assert_eq!(kept.key_pk8, renewed.key_pk8);
    let ddrs = db
        .messages(Some(&id))
        .unwrap()
        .iter()
        .filter(|m| m.kind == "ddr")
        .count();
    assert_eq!(ddrs, 3);
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_while_the_mp_is_down_are_queued_kept_across_a_restart_and_delivered_in_order()
{
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let addr = mp.local_addr();
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let proxy = imported_proxy(&mp, &db, dir.path(), "PROXY-Q").await;
    let state = dir.path().join("PROXY-Q");
    let (mut conn, id) = device(&proxy, "dev-q", "THING-Q").await;
    let restart = proxy_options(&mp, &state, "PROXY-Q");
    mp.shutdown().await;

    let frames = [
        Frame::Heartbeat,
        Frame::Inventory {
            items: synthetic_items(3),
        },
        Frame::Status {
            message_type: "device-online".into(),
            properties: vec![("Firmware".into(), "2.0".into())],
        },
        Frame::State {
            topic: "fw-update".into(),
            state: 1,
        },
    ];
    let mut queued = Vec::new();
    for frame in &frames {
        let detail = ack_detail(conn.request(frame).await.unwrap());
        let message_id = detail
            .strip_prefix("queued ")
            .unwrap_or_else(|| panic!("MP down: {detail}"))
            .to_string();
        queued.push(message_id);
    }
    // The proxy restarts while the MP is still down: the queue is in its registry.
    drop(conn);
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    assert!(Registry::open(&state)
        .unwrap()
        .queue_image("dev-q")
        .unwrap()
        .is_some());
    let proxy = proxy::start(restart, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    // The MP is back: the device's next frame delivers what was queued, in order, then itself.
    let mp = MpServer::start(mp_config_at(dir.path(), true), addr)
        .await
        .unwrap();
    let mut conn = DeviceConnection::connect(proxy.local_addr()).await.unwrap();
    ack_detail(
        conn.request(&Frame::Hello {
            device_id: "dev-q".into(),
            name: "THING-Q".into(),
        })
        .await
        .unwrap(),
    );
    let last = ack_detail(
        conn.request(&Frame::State {
            topic: "fw-update".into(),
            state: 2,
        })
        .await
        .unwrap(),
    );
    assert!(last.starts_with('{'), "delivered: {last}");
    let messages = db.messages(Some(&id)).unwrap();
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["ddr", "hinv-full", "status", "state", "state"]);
    let ids: Vec<String> = messages
        .iter()
        .take(4)
        .map(|m| m.message_id.to_ascii_uppercase())
        .collect();
    let want: Vec<String> = queued.iter().map(|q| q.to_ascii_uppercase()).collect();
    assert_eq!(
        ids, want,
        "the queued messages, under their own IDs, in order"
    );
    assert_eq!(
        messages[4].message_id.to_ascii_uppercase(),
        last.to_ascii_uppercase()
    );
    assert!(Registry::open(&state)
        .unwrap()
        .queue_image("dev-q")
        .unwrap()
        .is_none());
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_strict_mp_a_forgotten_device_learns_it_from_the_empty_policy_reply() {
    let dir = tempfile::tempdir().unwrap();
    let mp = MpServer::start(
        mp_config_at(dir.path(), true),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let addr = mp.local_addr();
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let proxy = imported_proxy(&mp, &db, dir.path(), "PROXY-S").await;
    mp.shutdown().await;
    let rebuilt = dir.path().join("rebuilt");
    copy_site_db(dir.path(), &rebuilt);
    let mp = MpServer::start(mp_config_at(dir.path(), true), addr)
        .await
        .unwrap();
    let (mut conn, old_id) = device(&proxy, "dev-s", "THING-S").await;
    mp.shutdown().await;
    let mp = MpServer::start(mp_config_at(&rebuilt, true), addr)
        .await
        .unwrap();
    let site = SiteDb::open(rebuilt.join("site.db")).unwrap();
    // A real MP answers the unknown SMSID's policy request with an empty 200: the Agent
    // re-confirms, is refused, and registers afresh under the SMSID it proposes.
    match conn.request(&Frame::PolicyRequest).await.unwrap() {
        Frame::PolicyList { policies } => assert!(policies.is_empty()),
        other => panic!("{other:?}"),
    }
    let row = site
        .client(&old_id)
        .unwrap()
        .expect("registered with the new site");
    assert_eq!(row.agent_type, 8);
    assert!(ack_detail(conn.request(&Frame::Heartbeat).await.unwrap()).starts_with('{'));
    let kinds: Vec<String> = site
        .messages(Some(&old_id))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(kinds, ["ddr"]);
    tokio::task::spawn_blocking(move || stop(proxy))
        .await
        .unwrap();
    mp.shutdown().await;
}
