//! End to end over loopback: the host client (the real core over tokio sockets) against the MP
//! emulator, with the site database as the witness.

use std::path::Path;

use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::config::SiteMode;
use mpagent_core::io::{AttemptFailure, Progress, RegisterError};
use mpagent_core::sign::{P256Signer, Signer};
use mpagent_sim::client::state::StateDir;
use mpagent_sim::client::transport::unix_now;
use mpagent_sim::client::{self, ClientOptions, KeyKind};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};

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
        mp_url: format!("http://{}", mp.local_addr()),
        site_code: "PS1".into(),
        state_dir: dir.join(name),
        name: name.into(),
        fqdn: None,
        wait_for_approval: false,
        max_failures: 2,
        key: KeyKind::P256,
        mode: SiteMode::Mixed,
        pki: None,
        site_generation: Default::default(),
        signature_hash: None,
    }
}

#[tokio::test]
async fn registers_and_second_run_reuses_identity_and_smsid() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let opts = options(&mp, dir.path(), "KIOSK-1");
    let first = client::register(&opts, &mut |_| {}).await.unwrap();
    let RegistrationState::Registered(smsid) = first.state else {
        panic!("{:?}", first.state)
    };
    assert!(first.identity_created);
    let second = client::register(&opts, &mut |_| {}).await.unwrap();
    assert_eq!(second.state, RegistrationState::Registered(smsid));
    assert!(!second.identity_created);

    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    let row = format!("{:?}", clients[0]);
    assert!(
        row.to_uppercase()
            .contains(&smsid.to_string().to_uppercase()),
        "{row}"
    );
    assert!(db.rejections().unwrap().is_empty());
    mp.shutdown().await;
}

#[tokio::test]
async fn a_fresh_registration_after_losing_state_gets_the_same_smsid_for_the_same_cert() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let opts = options(&mp, dir.path(), "GW-7");
    let first = client::register(&opts, &mut |_| {}).await.unwrap();
    std::fs::remove_file(
        opts.state_dir
            .join(mpagent_sim::client::state::REGISTRATION_FILE),
    )
    .unwrap();
    let again = client::register(&opts, &mut |_| {}).await.unwrap();
    assert_eq!(first.state, again.state);
    mp.shutdown().await;
}

#[tokio::test]
async fn pending_then_approved_then_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Pending).await;
    let opts = options(&mp, dir.path(), "PRN-2");
    let mut seen = Vec::new();
    let first = client::register(&opts, &mut |p| seen.push(*p))
        .await
        .unwrap();
    let RegistrationState::Pending(smsid) = first.state else {
        panic!("{:?}", first.state)
    };
    // Still pending: confirming again changes nothing until the administrator acts.
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    assert!(db.approve(&smsid.to_string()).unwrap());
    let second = client::register(&opts, &mut |p| seen.push(*p))
        .await
        .unwrap();
    assert_eq!(second.state, RegistrationState::Registered(smsid));
    let sent: Vec<_> = seen
        .iter()
        .filter_map(|p| match p {
            Progress::Sending { request_type, .. } => Some(*request_type),
            _ => None,
        })
        .collect();
    use mpagent_core::wire::registration::RequestType::*;
    // The site took the SMSID the client proposed (pending, final without a confirmation); the
    // second run confirms it and learns it is approved.
    assert_eq!(sent, vec![Registration, Confirmation]);
    mp.shutdown().await;
}

use mpagent_tests::Tampering;

async fn register_with(
    mp: &MpServer,
    signer: &dyn Signer,
    cert: &[u8],
) -> Result<RegistrationState, RegisterError> {
    mpagent_tests::register_once(mp.local_addr(), "EVIL-1", signer, cert).await
}

#[tokio::test]
async fn forged_and_wrong_key_signatures_are_refused_and_the_mp_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let identity = StateDir::open(&dir.path().join("evil"))
        .unwrap()
        .load_or_create_identity("EVIL-1", unix_now())
        .unwrap();

    let forged = register_with(&mp, &Tampering(identity.signer.clone()), &identity.cert_der).await;
    assert_eq!(
        forged,
        Err(RegisterError::GaveUp(AttemptFailure::Status(403)))
    );

    let stranger = P256Signer::generate(&mut rand_core::OsRng);
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
    mp.shutdown().await;
}

#[tokio::test]
async fn unreachable_mp_gives_up_with_a_transport_error() {
    // Bind then drop a listener to get a loopback port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let opts = ClientOptions {
        mp_url: format!("http://127.0.0.1:{port}"),
        site_code: "PS1".into(),
        state_dir: dir.path().join("c"),
        name: "LONELY".into(),
        fqdn: None,
        wait_for_approval: false,
        max_failures: 1,
        key: KeyKind::P256,
        mode: SiteMode::Mixed,
        pki: None,
        site_generation: Default::default(),
        signature_hash: None,
    };
    let err = client::register(&opts, &mut |_| {}).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("the MP refused the connection"),
        "{err:#}"
    );
    // Nothing was persisted as registered.
    assert_eq!(
        StateDir::open(&opts.state_dir)
            .unwrap()
            .registration()
            .unwrap(),
        RegistrationState::Unregistered
    );
}

#[tokio::test]
async fn rejected_by_the_site_is_terminal_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Pending).await;
    let opts = options(&mp, dir.path(), "ROGUE-3");
    let first = client::register(&opts, &mut |_| {}).await.unwrap();
    let RegistrationState::Pending(smsid) = first.state else {
        panic!("{:?}", first.state)
    };
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    assert!(db.reject(&smsid.to_string()).unwrap());
    let second = client::register(&opts, &mut |_| {}).await.unwrap();
    // Believed after two status-3 answers, persisted with its time.
    let RegistrationState::Rejected(at) = second.state else {
        panic!("{:?}", second.state)
    };
    // Persisted: a later run (before the recheck interval) does not knock on the MP's door again.
    assert_eq!(
        StateDir::open(&opts.state_dir)
            .unwrap()
            .registration()
            .unwrap(),
        RegistrationState::Rejected(at)
    );
    let mut sent = 0;
    let third = client::register(&opts, &mut |p| {
        if matches!(p, Progress::Sending { .. }) {
            sent += 1
        }
    })
    .await
    .unwrap();
    assert_eq!((third.state, sent), (RegistrationState::Rejected(at), 0));
    mp.shutdown().await;
}
