//! One host floods the MP with slow connections (200 at once, each reopened as soon as it
//! closes, from 127.0.0.2) while an honest client (127.0.0.1) registers with the defaults of
//! `client register`: the per-address limit leaves the honest client slots, and the flood's
//! refusals stay a handful of aggregated rows. Loopback only, bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use mpagent_sim::client::{self, ClientOptions};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use tokio::io::AsyncWriteExt;

const FLOOD: usize = 200;

/// One slow flooder: connects from 127.0.0.2, sends a request head a byte at a time, and
/// reconnects whenever the MP closes the connection.
async fn flooder(mp: SocketAddr, stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            return;
        };
        if socket.bind("127.0.0.2:0".parse().unwrap()).is_err() {
            return;
        }
        let Ok(mut stream) = socket.connect(mp).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        for b in b"CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp\r\n"
            .iter()
            .cycle()
        {
            if *stop.borrow() || stream.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_client_registers_through_a_slow_flood_from_one_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = MpConfig {
        site_code: "PS1".into(),
        db_path: dir.path().join("site.db"),
        approval: Approval::Auto,
        limits: Limits::default(),
        mp_host: "mp.flood.test".into(),
        strict: false,
    };
    let server = MpServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mp = server.local_addr();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| tokio::spawn(flooder(mp, stop.clone())))
        .collect();
    // Let the flood take what it can before the honest client starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let opts = ClientOptions::mixed(&server.url(), "PS1", dir.path().join("honest"), "HONEST-1");
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        client::register(&opts, &mut |_| {}),
    )
    .await
    .expect("registration within 60 s")
    .expect("registered under the flood");
    let took = started.elapsed();
    assert!(
        matches!(
            outcome.state,
            mpagent_core::agent::registration::RegistrationState::Registered(_)
        ),
        "{:?}",
        outcome.state
    );

    // Keep flooding a little longer, so that refusals keep coming, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).unwrap();
    for f in flood {
        let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
    }
    server.shutdown().await;

    let rows = SiteDb::open(dir.path().join("site.db"))
        .unwrap()
        .rejections()
        .unwrap();
    let from_flood: Vec<_> = rows.iter().filter(|r| r.peer == "127.0.0.2").collect();
    let refused: i64 = from_flood.iter().map(|r| r.count).sum();
    assert!(
        refused > FLOOD as i64 / 2,
        "the flood was refused: {rows:?}"
    );
    // One row per reason per minute (at most two minutes in this test), however many refusals.
    assert!(from_flood.len() <= 6, "{} rows: {rows:?}", from_flood.len());
    assert!(
        rows.iter().all(|r| r.peer != "127.0.0.1"),
        "the honest client was never refused: {rows:?}"
    );
    eprintln!(
        "honest client registered in {took:?}; flood refused {refused} times in {} rows",
        from_flood.len()
    );
}
