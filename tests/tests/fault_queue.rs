//! The host client's store-and-forward queue (`client::run::run_cycle`, the flash-file queue)
//! through the loopback fault proxy of `mpagent_tests::fault`: whatever the network does to a
//! delivery (reset or truncate the reply after the MP stored the message, drop the connection
//! before it, corrupt the status, drip the reply slowly), every queued message reaches the MP's
//! database exactly once (the MP de-duplicates retries by message ID), none is refused, and the
//! queue ends empty. Registration goes straight to the MP (its faults are `fault_registration.rs`'s).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use mpagent_core::agent::registration::RegistrationState;
use mpagent_sim::client::run::{self, Due, Plan, RunEvent, REFUSED_DIR};
use mpagent_sim::client::{self, ClientOptions};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use mpagent_tests::fault::{Fault, FaultPlan, FaultProxy, Spot};

/// Every test ends within this, whatever the fault.
const TEST_LIMIT: Duration = Duration::from_secs(120);
/// Cycles before a test declares the queue stuck (each failed delivery costs one cycle).
const MAX_CYCLES: usize = 40;
/// Byte offset, in the HTTP reply, of the hundreds digit of the status code (`HTTP/1.1 200`).
const STATUS_DIGIT: usize = 9;

/// A heartbeat, a hardware inventory (several KiB) and a status message per queueing cycle.
const QUEUE: Due = Due {
    heartbeat: true,
    inventory_items: 3,
    status: true,
    policy: false,
};
const NOTHING: Due = Due {
    heartbeat: false,
    inventory_items: 0,
    status: false,
    policy: false,
};

struct Outcome {
    queued: usize,
    /// Message IDs in the order the client saw them acknowledged.
    delivered: Vec<String>,
    refused: u32,
    /// Deliveries that failed (one connection each).
    stopped: usize,
    /// Registration requests (the confirmation each pass starts with, and its retries).
    registration_sends: usize,
    cycles: usize,
    still_queued: u32,
}

/// Register `name` directly with `mp`, then run cycles through a fault proxy with `plan`: the
/// first `queueing_cycles` queue [`QUEUE`], the rest only drain, until the queue is empty.
async fn run_through(
    dir: &Path,
    mp: &MpServer,
    name: &str,
    plan: FaultPlan,
    queueing_cycles: usize,
) -> (Outcome, Vec<mpagent_tests::fault::ConnRecord>, String) {
    let direct = ClientOptions::mixed(
        &format!("http://{}", mp.local_addr()),
        "PS1",
        dir.join(name),
        name,
    );
    let reg = client::register(&direct, &mut |_| {}).await.unwrap();
    let RegistrationState::Registered(smsid) = reg.state else {
        panic!("{:?}", reg.state)
    };
    let proxy = FaultProxy::start(mp.local_addr(), plan).await.unwrap();
    let opts = ClientOptions {
        mp_url: format!("http://{}", proxy.local_addr()),
        ..direct
    };
    let mut out = Outcome {
        queued: 0,
        delivered: Vec::new(),
        refused: 0,
        stopped: 0,
        registration_sends: 0,
        cycles: 0,
        still_queued: 0,
    };
    loop {
        let due = if out.cycles < queueing_cycles {
            QUEUE
        } else {
            NOTHING
        };
        // Backoffs are skipped, not slept: a pass retries until the queue is empty.
        let plan = Plan {
            skip_waits: true,
            max_wait: Duration::from_secs(3600),
            ..Plan::once(due)
        };
        let report = run::run_cycle_with(&opts, plan, &mut |e| match e {
            RunEvent::Queued { .. } => out.queued += 1,
            RunEvent::DeliveryStopped { .. } => out.stopped += 1,
            RunEvent::RegistrationSent => out.registration_sends += 1,
            RunEvent::Delivered { message_id, .. } => out.delivered.push(message_id.clone()),
            _ => {}
        })
        .await
        .unwrap();
        out.cycles += 1;
        out.refused += report.refused;
        out.still_queued = report.still_queued;
        if (out.cycles >= queueing_cycles && report.still_queued == 0) || out.cycles >= MAX_CYCLES {
            break;
        }
    }
    // Every connection the client made: one per delivery or registration request.
    let log = proxy
        .wait_for(
            out.delivered.len() + out.stopped + out.registration_sends,
            Duration::from_secs(5),
        )
        .await;
    (out, log, smsid.to_string())
}

/// None lost, none refused, none stored twice, and the queue (reopened from its file) empty.
fn assert_exactly_once(dir: &Path, name: &str, out: &Outcome, smsid: &str) {
    assert_eq!(
        out.still_queued, 0,
        "queue not drained in {} cycles",
        out.cycles
    );
    assert_eq!(out.refused, 0);
    assert!(!dir.join(name).join(REFUSED_DIR).exists());
    let db = SiteDb::open(dir.join("site.db")).unwrap();
    let stored = db.messages(Some(smsid)).unwrap();
    let stored_ids: Vec<String> = stored.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(stored.len(), out.queued, "stored {stored_ids:?}");
    assert_eq!(
        stored_ids.iter().collect::<HashSet<_>>().len(),
        stored.len(),
        "a message stored twice: {stored_ids:?}"
    );
    // Every acknowledgement is of a stored message, each once, in queue order.
    assert_eq!(out.delivered, stored_ids);
    let reasons = db.rejections().unwrap();
    assert!(reasons.is_empty(), "{reasons:?}");
    let opts = ClientOptions::mixed("http://127.0.0.1:9", "PS1", dir.join(name), name);
    assert_eq!(run::queued_messages(&opts).unwrap(), 0);
}

async fn start_mp(dir: &Path) -> MpServer {
    MpServer::start(
        MpConfig {
            site_code: "PS1".into(),
            db_path: dir.join("site.db"),
            approval: Approval::Auto,
            limits: Limits::default(),
            mp_host: "mp.test.local".into(),
            strict: true,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("MP starts")
}

#[tokio::test]
async fn every_queued_message_arrives_once_through_resets_truncations_drops_and_drips() {
    tokio::time::timeout(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let mp = start_mp(dir.path()).await;
        let faults = vec![
            // The MP stores the message; the reply is lost or mangled on the way back.
            Fault::Reset { after: 0 },
            Fault::Truncate { after: 40 },
            Fault::Reset { after: 20 },
            Fault::Corrupt {
                at: Spot::Offset(STATUS_DIGIT),
                xor: b'2' ^ b'5',
            },
            Fault::Truncate { after: 0 },
            // The MP never sees the message.
            Fault::Drop,
            // Slow but complete: delivered on the first try.
            Fault::Drip {
                bytes: 4,
                every: Duration::from_millis(2),
            },
            Fault::Pass,
            Fault::Reset { after: 0 },
            Fault::Drop,
        ];
        let n_faults = faults.len();
        let (out, log, smsid) = run_through(
            dir.path(),
            &mp,
            "QUEUE-1",
            FaultPlan::sequence(faults, Fault::Pass),
            3,
        )
        .await;
        eprintln!(
            "{} messages queued, delivered in {} cycles over {} connections",
            out.queued,
            out.cycles,
            log.len()
        );
        assert_eq!(out.queued, 9);
        assert!(log.len() > n_faults, "every fault was exercised: {log:?}");
        // Replies were lost after the MP stored the message: retries reached it again.
        let lost_after_store = log
            .iter()
            .filter(|r| {
                r.reached_mp
                    && r.reply_bytes > 0
                    && matches!(
                        r.fault,
                        Fault::Reset { .. } | Fault::Truncate { .. } | Fault::Corrupt { .. }
                    )
            })
            .count();
        assert_eq!(lost_after_store, 6, "{log:?}");
        assert_exactly_once(dir.path(), "QUEUE-1", &out, &smsid);
        mp.shutdown().await;
    })
    .await
    .expect("the queue did not drain in time (a hang)")
}

#[tokio::test]
async fn every_reply_lost_once_after_the_mp_stored_it_is_not_stored_twice() {
    // Each message's first delivery reaches the MP and the connection is reset before any reply
    // byte; the retry (same message ID) is acknowledged without a second record.
    tokio::time::timeout(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let mp = start_mp(dir.path()).await;
        let faults: Vec<Fault> = (0..12)
            .map(|i| {
                if i % 2 == 0 {
                    Fault::Reset { after: 0 }
                } else {
                    Fault::Pass
                }
            })
            .collect();
        let (out, log, smsid) = run_through(
            dir.path(),
            &mp,
            "QUEUE-2",
            FaultPlan::sequence(faults, Fault::Pass),
            2,
        )
        .await;
        assert_eq!(out.queued, 6);
        assert_eq!(
            log.len(),
            out.delivered.len() + out.stopped + out.registration_sends,
            "{log:?}"
        );
        // Half the connections were reset after the MP took the request.
        assert!(out.stopped >= 3, "{}", out.stopped);
        assert!(log.iter().all(|r| r.reached_mp && r.reply_bytes > 0));
        assert_exactly_once(dir.path(), "QUEUE-2", &out, &smsid);
        mp.shutdown().await;
    })
    .await
    .expect("the queue did not drain in time (a hang)")
}
