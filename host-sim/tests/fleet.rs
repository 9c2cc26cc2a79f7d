//! A tiny fleet against an in-process MP: every appliance registers and delivers its heartbeats,
//! and the summary agrees with the site database. No timing assertions.

use mpagent_sim::fleet::{self, FleetOptions};
use mpagent_sim::mp::db::SiteDb;

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
        let n = messages
            .iter()
            .filter(|m| m.smsid.eq_ignore_ascii_case(&c.smsid))
            .count();
        assert_eq!(n, 2, "two heartbeats from {}", c.smsid);
    }
    assert!(db.rejections().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_run_verifies_and_registers_every_request() {
    let b = fleet::run_bound(8, 4, 2).await.unwrap();
    assert_eq!(b.requests, 8);
    assert_eq!(b.mp_ok, 8);
    assert_eq!(b.mp_failed, 0);
    assert!(b.ratio > 0.0);
}
