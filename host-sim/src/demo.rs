//! `mpagent-sim demo`: the main job with no setup. Starts the MP emulator in-process on a free
//! loopback port with a temporary site database, then walks a simulated appliance through its
//! life: first run (identity), registration, pending approval, the administrator's approval,
//! confirmation, and a second run that reuses the identity.

use anyhow::{bail, Result};
use mpagent_core::agent::registration::{RegistrationEvent, RegistrationState};
use mpagent_core::config::SiteMode;
use mpagent_core::io::Progress;

use crate::client::run::{self, Due, RunEvent};
use crate::client::{self, ClientOptions, KeyKind};
use crate::mp::db::{NewPolicy, PolicyTarget};
use crate::mp::{db::SiteDb, Approval, Limits, MpConfig, MpServer};

/// Print one driver step readably.
pub fn print_progress(p: &Progress) {
    match p {
        Progress::Sending {
            request_type,
            message_id,
            content_length,
        } => println!(
            "   -> CCM_POST /ccm_system/request  {} message {}  ({content_length} bytes, signed)",
            match request_type {
                mpagent_core::wire::registration::RequestType::Registration => "Registration",
                mpagent_core::wire::registration::RequestType::Confirmation => "Confirmation",
            },
            String::from_utf8_lossy(&message_id.to_braced())
        ),
        Progress::Failed(f) => println!("   !! attempt failed: {f}"),
        Progress::Event(RegistrationEvent::Registered(id)) => {
            println!("   <- ClientRegistrationResponse Status=0: registered as {id}")
        }
        Progress::Event(RegistrationEvent::PendingApproval(id, _)) => {
            println!(
                "   <- ClientRegistrationResponse Status=1: SMSID {id} confirmed, pending approval"
            )
        }
        Progress::Event(RegistrationEvent::Issued(id)) => {
            println!("   <- ClientRegistrationResponse: SMSID {id} named; confirming it")
        }
        Progress::Event(RegistrationEvent::Discarded(id, t)) => {
            println!(
                "   !! SMSID {id} not confirmed by the site: dropped, registering again at {}",
                crate::human::date(*t)
            )
        }
        Progress::Event(RegistrationEvent::Abandoned(id, t)) => {
            println!(
                "   !! pending SMSID {id} refused by the site: registering afresh at {}",
                crate::human::date(*t)
            )
        }
        Progress::Event(RegistrationEvent::RejectedOnce(t)) => {
            println!(
                "   <- ClientRegistrationResponse Status=3: asking once more at {}",
                crate::human::date(*t)
            )
        }
        Progress::Event(RegistrationEvent::Rejected(_)) => {
            println!("   <- ClientRegistrationResponse Status=3 again: rejected")
        }
        Progress::Event(
            e @ (RegistrationEvent::Reset(_) | RegistrationEvent::CertificateReset(_)),
        ) => {
            println!("   !! {}", crate::human::registration(e))
        }
        Progress::Event(RegistrationEvent::RetryAt(t)) => {
            println!("   .. will retry at {}", crate::human::date(*t))
        }
        Progress::Waiting(t) => println!("   .. waiting until {}", crate::human::date(*t)),
    }
}

/// Print one `client run` step readably.
pub fn print_run_event(e: &RunEvent) {
    match e {
        RunEvent::RegistrationSent => {}
        RunEvent::Registration(line) => println!("   {line}"),
        RunEvent::Queued {
            endpoint,
            superseded,
        } => println!(
            "   queued   {endpoint:<17} (in the flash queue{})",
            if *superseded {
                ", replacing the unsent older one"
            } else {
                ""
            }
        ),
        RunEvent::NoRoom { kind } => println!("   !! queue full: the {kind} was not made"),
        RunEvent::Delivered {
            endpoint,
            message_id,
        } => println!("   -> sent  {endpoint:<17} {message_id}  signed, acknowledged, popped"),
        RunEvent::DeliveryStopped { reason, .. } => {
            println!("   .. delivery stopped: {reason}; the queue waits")
        }
        RunEvent::Refused { message_id, reason } => {
            println!("   !! {message_id} refused for good: {reason} (kept under refused/)")
        }
        RunEvent::PolicyApplied { id, bytes } => {
            println!("   <- policy {id} fetched with a signed ClientToken ({bytes} bytes), hash checked, applied")
        }
        RunEvent::PolicyRefused { id, reason } => {
            println!("   !! policy {id} not applied: {reason}")
        }
    }
}

fn mp_config(db_path: &std::path::Path, site_code: &str) -> MpConfig {
    MpConfig {
        site_code: site_code.into(),
        db_path: db_path.to_path_buf(),
        approval: Approval::Pending,
        limits: Limits::default(),
        mp_host: "mp.demo.local".into(),
        strict: false,
    }
}

/// Run the demo.
pub async fn run() -> Result<()> {
    let work = tempfile::tempdir()?;
    let db_path = work.path().join("site.db");
    let site_code = "PS1";
    println!("== mpagent demo ==");
    println!("1. Starting the MP emulator (site {site_code}, new clients need approval)");
    let server = MpServer::start(mp_config(&db_path, site_code), "127.0.0.1:0".parse()?).await?;
    let mp_url = format!("http://{}", server.local_addr());
    println!(
        "   MP emulator listening on {mp_url}, site database {}",
        db_path.display()
    );

    let opts = ClientOptions {
        mp_url: mp_url.clone(),
        site_code: site_code.into(),
        state_dir: work.path().join("appliance"),
        name: "PRINTER-0042".into(),
        fqdn: Some("printer-0042.demo.local".into()),
        wait_for_approval: false,
        max_failures: 3,
        // The emulator's own profile, and a first run without RSA key generation; `client
        // register` makes RSA-2048 keys by default, as real sites need.
        key: KeyKind::P256,
        mode: SiteMode::Mixed,
        pki: None,
        site_generation: Default::default(),
        signature_hash: None,
    };

    println!("\n2. Appliance PRINTER-0042, first run: create identity, register");
    let first = client::register(&opts, &mut print_progress).await?;
    let cert = std::fs::read(&first.cert_path)?;
    println!(
        "   identity: P-256 key + self-signed certificate ({} bytes DER, {}), created now: {}",
        cert.len(),
        first.cert_path.display(),
        first.identity_created
    );
    let smsid = match first.state {
        RegistrationState::Pending(id) => id,
        other => bail!("expected a pending registration, got: {other}"),
    };

    println!("\n3. Administrator approves {smsid} in the site database");
    let db = SiteDb::open(&db_path)?;
    if !db.approve(&smsid.to_string())? {
        bail!("the MP does not know {smsid}");
    }

    println!("\n4. Appliance, second run: same identity, confirm the registration");
    let second = client::register(&opts, &mut print_progress).await?;
    match second.state {
        RegistrationState::Registered(id) if id == smsid && !second.identity_created => {
            println!("   registered with the same SMSID {id}; identity reused")
        }
        other => bail!("expected registered as {smsid} with the same identity, got: {other}"),
    }

    println!("\n5. The site database now holds:");
    for c in db.clients()? {
        println!(
            "   {}  {:<14} agent type {}  {}  cert sha256 {}…  {}",
            c.smsid,
            c.netbios_name.as_deref().unwrap_or("-"),
            c.agent_type,
            c.status.as_str(),
            &c.cert_sha256[..16],
            c.hash_algorithm.as_deref().unwrap_or("-"),
        );
    }

    println!("\n6. Administrator assigns a policy to every client");
    db.add_policy(&NewPolicy {
        policy_id: "{4C1E5A3B-0D9F-4E8A-9C51-6A2B7D3E8F10}",
        version: "1.00",
        target: PolicyTarget::All,
        category: Some("Custom"),
        flags: 0,
        body: "<Policy><PrinterSettings Duplex=\"true\" TonerSaver=\"on\"/></Policy>",
    })?;

    println!(
        "\n7. Appliance runs one cycle: heartbeat, inventory, status, policy, acknowledgement"
    );
    let due = Due {
        heartbeat: true,
        inventory_items: 40,
        status: true,
        policy: true,
    };
    let report = run::run_cycle(&opts, due, &mut print_run_event).await?;
    println!(
        "   delivered {}, still queued {}, policies applied: {}",
        report.delivered,
        report.still_queued,
        if report.policies_applied.is_empty() {
            "none".to_string()
        } else {
            report.policies_applied.join(", ")
        }
    );

    println!("\n8. The MP goes down; the appliance keeps reporting into its flash queue");
    let addr = server.local_addr();
    server.shutdown().await;
    let due = Due {
        heartbeat: true,
        inventory_items: 5,
        status: false,
        policy: false,
    };
    let offline = run::run_cycle(&opts, due, &mut print_run_event).await?;
    println!(
        "   queued {}, still queued {}",
        offline.queued, offline.still_queued
    );
    if offline.still_queued == 0 {
        bail!("expected messages to wait in the queue while the MP is down");
    }

    println!("\n9. The MP is back (same address, same database); the queue drains in order");
    let server = MpServer::start(mp_config(&db_path, site_code), addr).await?;
    let due = Due {
        heartbeat: false,
        inventory_items: 0,
        status: false,
        policy: false,
    };
    let back = run::run_cycle(&opts, due, &mut print_run_event).await?;
    println!(
        "   delivered {}, still queued {}",
        back.delivered, back.still_queued
    );

    println!("\n10. What the MP stored for {smsid}:");
    let messages = db.messages(Some(&smsid.to_string()))?;
    for m in &messages {
        println!(
            "   {}  {:<17} {:<10} {}  {:>6} bytes",
            m.received_at,
            m.endpoint,
            m.kind,
            m.message_id,
            m.body.len()
        );
    }
    let ids: std::collections::HashSet<_> = messages.iter().map(|m| &m.message_id).collect();
    if ids.len() != messages.len() {
        bail!("the MP stored a message twice");
    }
    let rejections = db.rejections()?;
    println!("   rejected requests: {}", rejections.len());
    server.shutdown().await;
    println!("\nDone: the appliance is a registered, approved client of site {site_code}.");
    Ok(())
}
