//! End to end over loopback with an RSA-2048 agent (what real sites take, spec §6): the host
//! client with `--key rsa2048` against the MP emulator, the site database as the witness.

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
        key: KeyKind::Rsa2048,
        mode: SiteMode::Mixed,
        pki: None,
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
    assert_eq!(rejections.len(), 2, "{rejections:?}");
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
