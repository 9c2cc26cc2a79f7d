//! End to end over loopback against the MP emulator in strict (real-MP) mode: the host client's
//! registration and policy cycle, with policy locations addressed by hash and a body served
//! under the published hash by the emulator's tampering hook.

use std::path::Path;

use mpagent_sim::client::run::{self, Due};
use mpagent_sim::client::ClientOptions;
use mpagent_sim::mp::db::{NewPolicy, PolicyTarget, SiteDb};
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};

async fn start_strict_mp(dir: &Path) -> MpServer {
    let config = MpConfig {
        site_code: "PS1".into(),
        db_path: dir.join("site.db"),
        approval: Approval::Auto,
        limits: Limits::default(),
        mp_host: "mp.test.local".into(),
        strict: true,
    };
    MpServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("MP starts")
}

const POLICY_ONLY: Due = Due {
    heartbeat: false,
    inventory_items: 0,
    status: false,
    policy: true,
};

const ID: &str = "{33333333-2222-3333-4444-555555555555}";

/// The agent refuses a body the MP serves under another body's hash (`mp policy tamper`).
#[tokio::test]
async fn the_agent_refuses_a_tampered_body_from_a_strict_mp() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_strict_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    db.add_policy(&NewPolicy {
        policy_id: ID,
        version: "1.00",
        target: PolicyTarget::All,
        category: None,
        flags: 0,
        body: "<Policy><Setting Name=\"Duplex\" Value=\"on\"/></Policy>",
    })
    .unwrap();
    assert!(db
        .tamper_policy(
            ID,
            "1.00",
            Some("<Policy><Setting Name=\"Duplex\" Value=\"oo\"/></Policy>")
        )
        .unwrap());
    let opts = ClientOptions::mixed(
        &format!("http://{}", mp.local_addr()),
        "PS1",
        dir.path().join("dev"),
        "STRICT-1",
    );
    let mut refused = Vec::new();
    let tampered = run::run_cycle(&opts, POLICY_ONLY, &mut |e| {
        if let run::RunEvent::PolicyRefused { reason, .. } = e {
            refused.push(reason.clone());
        }
    })
    .await
    .unwrap();
    assert!(tampered.policies_applied.is_empty(), "{tampered}");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("SHA-256"), "{}", refused[0]);

    mp.shutdown().await;
}

/// A registered client's next cycle re-confirms; a real MP's Confirmation reply names no SMSID,
/// which means the SMSID asked about (docs/protocol.md §4), so the cycle goes on to policy and
/// applies the published body.
#[tokio::test]
async fn a_confirmation_answered_without_smsid_keeps_the_client_registered() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_strict_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    db.add_policy(&NewPolicy {
        policy_id: ID,
        version: "1.00",
        target: PolicyTarget::All,
        category: None,
        flags: 0,
        body: "<Policy><Setting Name=\"Duplex\" Value=\"on\"/></Policy>",
    })
    .unwrap();
    let opts = ClientOptions::mixed(
        &format!("http://{}", mp.local_addr()),
        "PS1",
        dir.path().join("dev"),
        "STRICT-2",
    );
    let first = run::run_cycle(&opts, POLICY_ONLY, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        first.policies_applied,
        vec![format!("{ID}.1.00")],
        "{first}"
    );
    let mut failures = Vec::new();
    let second = run::run_cycle(&opts, POLICY_ONLY, &mut |e| {
        if let run::RunEvent::Registration(m) = e {
            if m.contains("failed") {
                failures.push(m.clone());
            }
        }
    })
    .await
    .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(second.smsid, first.smsid, "{second}");
    let policy_requests = db
        .events()
        .unwrap()
        .iter()
        .filter(|e| e.kind == "policy-request")
        .count();
    assert_eq!(policy_requests, 2, "the second cycle asked for policy too");
    assert!(db.rejections().unwrap().is_empty());
    mp.shutdown().await;
}

/// Against the strict MP (single-body reports dropped, pending first, Confirmations answered
/// without SMSID): a client that waits for approval is pending, then registered by a
/// Confirmation whose reply names no SMSID, and its heartbeat and inventory are stored from
/// their attachments.
#[tokio::test]
async fn pending_then_confirmed_without_smsid_then_reports_stored_from_their_attachments() {
    let dir = tempfile::tempdir().unwrap();
    let mp = MpServer::start(
        MpConfig {
            approval: Approval::Pending,
            ..strict_config(dir.path())
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let opts = ClientOptions::mixed(
        &format!("http://{}", mp.local_addr()),
        "PS1",
        dir.path().join("dev"),
        "STRICT-3",
    );
    let everything = Due {
        heartbeat: true,
        inventory_items: 3,
        status: false,
        policy: true,
    };
    let pending = run::run_cycle(&opts, everything, &mut |_| {})
        .await
        .unwrap();
    assert!(pending.pending, "{pending}");
    assert_eq!(pending.approval_status, Some(-1), "{pending}");
    assert!(pending.to_string().contains("not approved"), "{pending}");
    let id = pending.smsid.clone().unwrap();
    assert!(db.approve(&id).unwrap());
    let done = run::run_cycle(&opts, everything, &mut |_| {})
        .await
        .unwrap();
    assert!(done.done(), "{done}");
    assert_eq!(done.smsid.as_deref(), Some(id.as_str()));
    let kinds: Vec<String> = db
        .messages(Some(&id))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert!(kinds.contains(&"ddr".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"hinv-full".to_string()), "{kinds:?}");
    let stored = db.messages(Some(&id)).unwrap();
    let hinv = stored.iter().find(|m| m.kind == "hinv-full").unwrap();
    assert!(
        hinv.body.contains("TRAY-00002"),
        "the full report was kept: {}",
        hinv.body
    );
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    mp.shutdown().await;
}

fn strict_config(dir: &Path) -> MpConfig {
    MpConfig {
        site_code: "PS1".into(),
        db_path: dir.join("site.db"),
        approval: Approval::Auto,
        limits: Limits::default(),
        mp_host: "mp.test.local".into(),
        strict: true,
    }
}

/// The site answers CertificateReset (`mp next-reply … certificate-reset`): the client makes a
/// new key and certificate, registers them under the SMSID it had, stores them in place of the
/// old ones, and goes on reporting; the next run confirms the new identity as usual.
#[tokio::test]
async fn certificate_reset_registers_a_new_certificate_and_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_strict_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let state = dir.path().join("dev");
    let opts = ClientOptions::mixed(
        &format!("http://{}", mp.local_addr()),
        "PS1",
        state.clone(),
        "STRICT-RESET",
    );
    let heartbeat = Due {
        heartbeat: true,
        inventory_items: 0,
        status: false,
        policy: false,
    };
    let first = run::run_cycle(&opts, heartbeat, &mut |_| {}).await.unwrap();
    assert!(first.done(), "{first}");
    let id = first.smsid.clone().unwrap();
    let old_cert = std::fs::read(state.join("cert.der")).unwrap();
    assert_eq!(db.client(&id).unwrap().unwrap().cert_der, old_cert);

    assert!(db
        .set_next_reply(&id, mpagent_sim::mp::db::NextReply::CertificateReset)
        .unwrap());
    let mut lines = Vec::new();
    let renewed = run::run_cycle(&opts, heartbeat, &mut |e| {
        if let run::RunEvent::Registration(line) = e {
            lines.push(line.clone());
        }
    })
    .await
    .unwrap();
    assert!(renewed.done(), "{renewed}");
    assert_eq!(renewed.smsid.as_deref(), Some(id.as_str()), "{lines:?}");
    let new_cert = std::fs::read(state.join("cert.der")).unwrap();
    assert_ne!(new_cert, old_cert, "a new certificate was stored");
    assert_eq!(db.client(&id).unwrap().unwrap().cert_der, new_cert);
    assert!(!state.join("identity.next").exists());
    // The stored key is the new certificate's (the state directory checks the pair on load).
    let loaded = mpagent_sim::client::state::StateDir::open(&state)
        .unwrap()
        .load_or_create_identity("STRICT-RESET", mpagent_core::time::UnixTime(1_800_000_000))
        .unwrap();
    assert!(!loaded.created);
    assert_eq!(loaded.cert_der, new_cert);
    let ddrs = db
        .messages(Some(&id))
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "ddr")
        .count();
    assert_eq!(ddrs, 2, "a heartbeat before and after the new certificate");

    let after = run::run_cycle(&opts, heartbeat, &mut |_| {}).await.unwrap();
    assert!(after.done(), "{after}");
    assert_eq!(after.smsid.as_deref(), Some(id.as_str()));
    assert_eq!(std::fs::read(state.join("cert.der")).unwrap(), new_cert);
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    mp.shutdown().await;
}
