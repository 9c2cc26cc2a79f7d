//! End to end over loopback: `client run` cycles (the core's signed messages through the flash
//! queue) against the MP emulator, with the site database as the witness.

use std::collections::HashSet;
use std::path::Path;

use mpagent_core::agent::registration::RegistrationState;
use mpagent_sim::client::run::{self, Due};
use mpagent_sim::client::state::StateDir;
use mpagent_sim::client::{self, ClientOptions};
use mpagent_sim::mp::db::{NewPolicy, PolicyTarget, SiteDb};
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};

fn mp_config(dir: &Path) -> MpConfig {
    MpConfig {
        site_code: "PS1".into(),
        db_path: dir.join("site.db"),
        approval: Approval::Auto,
        limits: Limits::default(),
        mp_host: "mp.test.local".into(),
        strict: true,
    }
}

async fn start_mp(dir: &Path) -> MpServer {
    MpServer::start(mp_config(dir), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("MP starts")
}

fn options(mp: &MpServer, dir: &Path, name: &str) -> ClientOptions {
    ClientOptions::mixed(
        &format!("http://{}", mp.local_addr()),
        "PS1",
        dir.join(name),
        name,
    )
}

const EVERYTHING: Due = Due {
    heartbeat: true,
    inventory_items: 3,
    status: true,
    policy: true,
};

#[tokio::test]
async fn every_message_kind_arrives_signed_and_policy_is_applied_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    db.add_policy(&NewPolicy {
        policy_id: "{11111111-2222-3333-4444-555555555555}",
        version: "2.00",
        target: PolicyTarget::All,
        category: None,
        flags: 0,
        body: "<Policy><Setting Name=\"Duplex\" Value=\"on\"/></Policy>",
    })
    .unwrap();
    let opts = options(&mp, dir.path(), "KIOSK-9");
    let report = run::run_cycle(&opts, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.delivery_stopped, None, "{report:?}");
    assert_eq!(
        (report.queued, report.still_queued, report.refused),
        (3, 0, 0)
    );
    assert_eq!(
        report.delivered, 4,
        "DDR, inventory, status and the policy's state message"
    );
    assert_eq!(
        report.policies_applied,
        vec!["{11111111-2222-3333-4444-555555555555}.2.00"]
    );

    let smsid = report.smsid.clone().unwrap();
    let messages = db.messages(Some(&smsid)).unwrap();
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["ddr", "hinv-full", "status", "state"]);
    assert!(messages[3]
        .body
        .contains("{11111111-2222-3333-4444-555555555555}.2.00"));
    assert_eq!(db.policy_fetches().unwrap().len(), 1);
    let applied = std::fs::read(
        opts.state_dir
            .join(run::POLICY_DIR)
            .join("_11111111-2222-3333-4444-555555555555_.2.00.xml"),
    )
    .unwrap();
    assert!(!applied.is_empty());
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());

    // A second cycle does not fetch the applied policy again.
    let again = run::run_cycle(&opts, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    assert!(again.policies_applied.is_empty());
    assert_eq!(db.policy_fetches().unwrap().len(), 1);
    mp.shutdown().await;
}

#[tokio::test]
async fn a_64k_inventory_streams_through_the_queue_and_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let opts = options(&mp, dir.path(), "GW-64K");
    let due = Due {
        heartbeat: false,
        inventory_items: 130,
        status: false,
        policy: false,
    };
    let report = run::run_cycle(&opts, due, &mut |_| {}).await.unwrap();
    assert_eq!(report.delivered, 1, "{report:?}");
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let m = db.messages(report.smsid.as_deref()).unwrap();
    assert_eq!(m.len(), 1);
    // Stored as text (UTF-8 here); on the wire it was UTF-16LE, twice the size.
    assert!(
        m[0].body.len() * 2 >= 64 * 1024,
        "{} bytes",
        m[0].body.len()
    );
    assert_eq!(m[0].body.matches("<Instance ").count(), 131);
    mp.shutdown().await;
}

#[tokio::test]
async fn messages_wait_in_the_queue_through_an_outage_and_arrive_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let addr = mp.local_addr();
    let opts = options(&mp, dir.path(), "PRN-OUT");
    let first = run::run_cycle(&opts, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(first.still_queued, 0);
    mp.shutdown().await;

    // Three offline cycles: everything is queued, nothing is lost.
    let mut queued_ids = Vec::new();
    for _ in 0..3 {
        // Backoffs are skipped, not slept (the MP is down: the pass gives up after them).
        let plan = run::Plan {
            skip_waits: true,
            ..run::Plan::once(EVERYTHING)
        };
        let r = run::run_cycle_with(&opts, plan, &mut |e| {
            if let run::RunEvent::Queued { .. } = e {
                queued_ids.push(())
            }
        })
        .await
        .unwrap();
        assert!(r.delivery_stopped.is_some(), "{r:?}");
        assert_eq!(r.delivered, 0);
    }
    let waiting = 3 * 3;
    assert_eq!(queued_ids.len(), waiting);

    let mp = MpServer::start(mp_config(dir.path()), addr).await.unwrap();
    let back = run::run_cycle(
        &opts,
        Due {
            heartbeat: false,
            inventory_items: 0,
            status: false,
            policy: false,
        },
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!((back.delivered, back.still_queued), (waiting as u32, 0));

    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let messages = db.messages(first.smsid.as_deref()).unwrap();
    assert_eq!(messages.len(), 3 + waiting, "3 online + 9 after the outage");
    let ids: HashSet<_> = messages.iter().map(|m| &m.message_id).collect();
    assert_eq!(ids.len(), messages.len(), "no duplicates");
    // In order: the kinds repeat ddr, hinv-full, status for every offline cycle.
    let kinds: Vec<&str> = messages[3..].iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["ddr", "hinv-full", "status"].repeat(3));
    mp.shutdown().await;
}

#[tokio::test]
async fn a_client_claiming_anothers_smsid_is_refused_and_reports_under_the_smsid_the_site_gives_it()
{
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let victim = options(&mp, dir.path(), "VICTIM");
    let v = run::run_cycle(&victim, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    let victim_id = v.smsid.clone().unwrap();

    // The attacker registers its own identity, then rewrites its state to claim the victim's SMSID.
    let attacker = options(&mp, dir.path(), "ATTACKER");
    let RegistrationState::Registered(_) = client::register(&attacker, &mut |_| {})
        .await
        .unwrap()
        .state
    else {
        panic!("attacker did not register")
    };
    let stolen = mpagent_core::guid::Smsid::parse(victim_id.as_bytes()).unwrap();
    StateDir::open(&attacker.state_dir)
        .unwrap()
        .save_registration(RegistrationState::Registered(stolen))
        .unwrap();
    let a = run::run_cycle(
        &attacker,
        Due {
            heartbeat: true,
            inventory_items: 0,
            status: false,
            policy: false,
        },
        &mut |_| {},
    )
    .await;
    // Either registration notices the mismatch or the MP refuses the message; never stored.
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let victim_messages = db.messages(Some(&victim_id)).unwrap();
    assert_eq!(
        victim_messages.len(),
        3,
        "only the victim's own messages (DDR, inventory, status)"
    );
    // The site refuses to confirm the stolen SMSID for this certificate: the client registers
    // afresh and its heartbeat goes out under the SMSID the site gives it; nothing is lost.
    let r = a.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(r.refused, 0, "{r}");
    assert_eq!(r.delivered, 1, "{r}");
    let own = r.smsid.clone().unwrap();
    assert_ne!(own, victim_id);
    assert_eq!(db.messages(Some(&own)).unwrap().len(), 1);
    assert!(!attacker.state_dir.join(run::REFUSED_DIR).exists());
    assert!(!db.rejections().unwrap().is_empty());
    mp.shutdown().await;
}

#[tokio::test]
async fn a_device_the_site_forgot_registers_again_and_delivers_what_it_queued() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let addr = mp.local_addr();
    let opts = options(&mp, dir.path(), "FORGOTTEN-1");
    let first = run::run_cycle(&opts, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    assert!(first.done(), "{first}");
    let old_id = first.smsid.clone().unwrap();
    mp.shutdown().await;

    // The site database is rebuilt: a new, empty one behind the same address.
    let rebuilt = dir.path().join("rebuilt");
    std::fs::create_dir_all(&rebuilt).unwrap();
    let mp = MpServer::start(mp_config(&rebuilt), addr)
        .await
        .expect("MP restarts");
    let again = run::run_cycle(&opts, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    assert!(again.done(), "{again}");
    // The device proposes the SMSID it had (made from its certificate); the new site takes it.
    let new_id = again.smsid.clone().unwrap();
    assert_eq!(new_id, old_id);
    assert_eq!(again.refused, 0);
    assert!(!opts.state_dir.join(run::REFUSED_DIR).exists());
    let db = SiteDb::open(rebuilt.join("site.db")).unwrap();
    assert_eq!(
        db.clients().unwrap().len(),
        1,
        "registered with the new site"
    );
    let kinds: HashSet<String> = db
        .messages(Some(&new_id))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert!(
        kinds.contains("ddr") && kinds.contains("hinv-full"),
        "{kinds:?}"
    );
    assert_eq!(
        StateDir::open(&opts.state_dir)
            .unwrap()
            .registration()
            .unwrap(),
        RegistrationState::Registered(mpagent_core::guid::Smsid::parse(new_id.as_bytes()).unwrap())
    );
    mp.shutdown().await;
}

#[tokio::test]
async fn a_rejected_device_approved_later_registers_at_once_with_retry_now() {
    let dir = tempfile::tempdir().unwrap();
    let mp = MpServer::start(
        MpConfig {
            approval: Approval::Pending,
            ..mp_config(dir.path())
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let opts = options(&mp, dir.path(), "REJECTED-1");
    let pending = run::run_cycle(&opts, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    assert!(pending.pending, "{pending}");
    let id = pending.smsid.clone().unwrap();
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    assert!(db.reject(&id).unwrap());
    let rejected = run::run_cycle(&opts, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    let until = rejected.rejected_until.expect("rejected");
    assert!(rejected.to_string().contains("--retry-now"), "{rejected}");
    assert!(until.0 > mpagent_sim::client::transport::unix_now().0 + 3600);
    // Without --retry-now the device keeps to its recheck time.
    assert!(db.approve(&id).unwrap());
    let still = run::run_cycle(&opts, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    assert!(still.rejected_until.is_some(), "{still}");
    let plan = run::Plan {
        retry_now: true,
        ..run::Plan::once(EVERYTHING)
    };
    let now = run::run_cycle_with(&opts, plan, &mut |_| {}).await.unwrap();
    assert!(now.done(), "{now}");
    assert_eq!(now.smsid.as_deref(), Some(id.as_str()));
    mp.shutdown().await;
}

#[tokio::test]
async fn a_policy_body_tampered_on_the_way_is_refused_and_the_honest_one_applied() {
    use mpagent_tests::fault::{utf16le, Fault, FaultPlan, FaultProxy, Spot};
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    db.add_policy(&NewPolicy {
        policy_id: "{22222222-2222-3333-4444-555555555555}",
        version: "1.00",
        target: PolicyTarget::All,
        category: None,
        flags: 0,
        body: "<Policy><Setting Name=\"Duplex\" Value=\"on\"/></Policy>",
    })
    .unwrap();
    // On the path between device and MP: one byte of the body flipped ("on" → "oo").
    let proxy = FaultProxy::start(
        mp.local_addr(),
        FaultPlan::always(Fault::Corrupt {
            at: Spot::After {
                pattern: utf16le("Value=\"on"),
                skip: 16,
            },
            xor: b'n' ^ b'o',
        }),
    )
    .await
    .unwrap();
    let direct = options(&mp, dir.path(), "TAMPER-1");
    let via = ClientOptions {
        mp_url: format!("http://{}", proxy.local_addr()),
        ..direct.clone()
    };
    let mut refused = Vec::new();
    let tampered = run::run_cycle(&via, EVERYTHING, &mut |e| {
        if let run::RunEvent::PolicyRefused { reason, .. } = e {
            refused.push(reason.clone());
        }
    })
    .await
    .unwrap();
    assert!(tampered.policies_applied.is_empty(), "{tampered}");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("SHA-256"), "{}", refused[0]);
    let policy_file = direct
        .state_dir
        .join(run::POLICY_DIR)
        .join("_22222222-2222-3333-4444-555555555555_.1.00.xml");
    assert!(!policy_file.exists(), "a tampered body was kept");
    let smsid = tampered.smsid.clone().unwrap();
    let kinds: Vec<String> = db
        .messages(Some(&smsid))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert!(
        !kinds.contains(&"state".to_string()),
        "acknowledged: {kinds:?}"
    );
    // Straight to the MP: the honest body matches its hash and is applied and acknowledged.
    let honest = run::run_cycle(&direct, EVERYTHING, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        honest.policies_applied,
        vec!["{22222222-2222-3333-4444-555555555555}.1.00"],
        "{honest}"
    );
    assert!(policy_file.exists());
    mp.shutdown().await;
}

/// A registration state that cannot be saved ends the run with the reason, not only with the
/// fact that something could not be kept: here the state file's name is taken by a directory
/// once the request is on its way, so the rename onto it fails.
#[tokio::test]
async fn a_registration_state_that_cannot_be_saved_ends_the_run_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path()).await;
    let opts = options(&mp, dir.path(), "KIOSK-NOSAVE");
    let state_file = opts.state_dir.join(client::state::REGISTRATION_FILE);
    let mut on = |e: &run::RunEvent| {
        if matches!(e, run::RunEvent::RegistrationSent) && !state_file.exists() {
            std::fs::create_dir(&state_file).unwrap();
        }
    };
    let err = run::run_cycle(&opts, EVERYTHING, &mut on)
        .await
        .expect_err("the state cannot be saved");
    let text = format!("{err:#}");
    assert!(
        text.starts_with("the registration state or a refused message could not be saved: "),
        "{text}"
    );
    assert!(
        text.contains("saving the registration state: replacing ")
            && text.contains(&state_file.display().to_string()),
        "{text}"
    );
    assert!(text.contains("Is a directory"), "{text}");
}
