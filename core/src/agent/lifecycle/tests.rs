//! The lifecycle's rules on a virtual clock, against a simulated site and a real store in RAM
//! flash: days offline, a forgotten device, a refused message, a rejection, a full queue.
extern crate std;

use std::vec::Vec;

use super::*;
use crate::guid::Guid;
use crate::sink::{Emit, Overflow, Sink};
use crate::store::testing::RamFlash;
use crate::store::{Layout, MessageMeta, Store, StoreError};
use crate::wire::header::ReplyMode;
use crate::wire::reply::RegistrationStatus;

type Flash = RamFlash<16384, 1, 4, 512>;

/// A report body: its kind and serial, `len` bytes.
struct Body {
    tag: u8,
    serial: u32,
    len: usize,
}

impl Emit for Body {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        out.write(&[self.tag])?;
        out.write(&self.serial.to_le_bytes())?;
        for _ in 5..self.len {
            out.write(b".")?;
        }
        Ok(())
    }
}

struct First5(Vec<u8>);
impl Sink for First5 {
    fn write(&mut self, b: &[u8]) -> Result<(), Overflow> {
        let room = 5usize.saturating_sub(self.0.len());
        self.0.extend_from_slice(&b[..room.min(b.len())]);
        Ok(())
    }
}

fn id(n: u8) -> Smsid {
    Smsid(Guid([n; 16]))
}

fn reply(status: RegistrationStatus, smsid: Option<Smsid>) -> RegistrationResponse {
    RegistrationResponse {
        status,
        code: status.code(),
        smsid,
        approval_status: None,
        timestamp: None,
    }
}

/// The simulated site: whether it answers, which SMSID it knows, what it issues next.
struct Site {
    up: bool,
    knows: Option<Smsid>,
    issues: Smsid,
    /// Refuse messages even from the SMSID it knows.
    refuse_messages: bool,
    reject: bool,
    policy_empty: bool,
    /// What reached it: (SMSID signed as, tag, serial).
    delivered: Vec<(Smsid, u8, u32)>,
    registrations: u32,
}

impl Site {
    fn new(knows: Option<Smsid>) -> Self {
        Self {
            up: true,
            knows,
            issues: id(9),
            refuse_messages: false,
            reject: false,
            policy_empty: false,
            delivered: Vec::new(),
            registrations: 0,
        }
    }
}

struct Rig {
    agent: Agent,
    store: Store<Flash>,
    serial: u32,
    inventory_len: usize,
    filed: Vec<(u8, u32)>,
    persisted: Option<RegistrationState>,
}

impl Rig {
    fn new(stored: RegistrationState, schedule: Schedule, now: UnixTime) -> Self {
        let flash = Flash::default();
        let store = Store::format(flash, Layout::split::<Flash>(16384, 512)).unwrap();
        Self {
            agent: Agent::new(stored, schedule, 0, now),
            store,
            serial: 0,
            inventory_len: 600,
            filed: Vec::new(),
            persisted: None,
        }
    }

    /// Carry out one action; `None` when the agent sleeps (returns the wake time).
    fn step(&mut self, now: UnixTime, site: &mut Site) -> Option<UnixTime> {
        match self.agent.poll(now) {
            Action::Sleep(t) => return Some(t),
            Action::Register(kind, asked) => {
                let event = if !site.up {
                    self.agent.on_registration_failure(now, false)
                } else if site.reject {
                    self.agent
                        .on_registration_reply(now, &reply(RegistrationStatus::Rejected, None))
                } else {
                    match (kind, asked) {
                        (RequestType::Confirmation, Some(a)) if site.knows == Some(a) => {
                            self.agent.on_registration_reply(
                                now,
                                &reply(RegistrationStatus::Registered, None),
                            )
                        }
                        (RequestType::Confirmation, _) => {
                            self.agent.on_registration_failure(now, true)
                        }
                        _ => {
                            site.registrations += 1;
                            site.knows = Some(site.issues);
                            self.agent.on_registration_reply(
                                now,
                                &reply(RegistrationStatus::Registered, Some(site.issues)),
                            )
                        }
                    }
                };
                if let Some(s) = event.persist() {
                    self.persisted = Some(s);
                }
            }
            Action::Queue {
                kind,
                smsid: _,
                supersedes,
            } => {
                self.serial += 1;
                let (tag, len) = match kind {
                    ReportKind::Heartbeat => (b'H', 200),
                    ReportKind::Inventory => (b'I', self.inventory_len),
                    ReportKind::OnlineStatus => (b'S', 100),
                };
                let meta = MessageMeta {
                    message_id: Guid([self.serial as u8; 16]),
                    endpoint: kind.endpoint(),
                    reply_mode: ReplyMode::Async,
                    sent_time: now,
                    source_id: self.agent.smsid(),
                };
                let body = Body {
                    tag,
                    serial: self.serial,
                    len,
                };
                let outcome = match self.store.enqueue_tracked(&meta, &body, &mut [0u8; 64]) {
                    Ok(record) => Queued::Stored {
                        record,
                        superseded: match supersedes {
                            Some(old) => self.store.withdraw(&old).unwrap(),
                            None => false,
                        },
                    },
                    Err(StoreError::QueueFull) => Queued::NoRoom,
                    Err(e) => panic!("store: {e:?}"),
                };
                self.agent.on_queued(now, kind, outcome, self.store.len());
            }
            Action::Deliver(smsid) => {
                let msg = self.store.peek().unwrap().unwrap();
                // Only the first 5 bytes matter: tag and serial.
                let mut sink = First5(Vec::new());
                self.store.body(&msg).emit(&mut sink).unwrap();
                let head = sink.0;
                let serial = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
                if !site.up {
                    self.agent.on_delivery_failed(now, Failure::Retryable);
                } else if site.knows != Some(smsid) || site.refuse_messages {
                    match self.agent.on_delivery_failed(now, Failure::Refused) {
                        Refusal::RefusedForGood => {
                            self.filed.push((head[0], serial));
                            self.store.pop(&msg).unwrap();
                            self.agent.on_filed(&msg, self.store.len());
                        }
                        Refusal::Reconfirming | Refusal::Later(_) => {}
                    }
                } else {
                    site.delivered.push((smsid, head[0], serial));
                    self.store.pop(&msg).unwrap();
                    self.agent.on_delivered(now, &msg, self.store.len());
                }
            }
            Action::PollPolicy(smsid) => {
                let outcome = if !site.up {
                    PolicyOutcome::Failed(Failure::Retryable)
                } else if site.knows != Some(smsid) || site.policy_empty {
                    // A real MP answers a signature it cannot check with an empty 200.
                    PolicyOutcome::Empty
                } else {
                    PolicyOutcome::Done
                };
                self.agent.on_policy(now, outcome);
            }
        }
        None
    }

    /// Run from `from` until `until` on a virtual clock; returns the steps taken.
    fn run(&mut self, from: UnixTime, until: UnixTime, site: &mut Site) -> (UnixTime, u32) {
        let mut now = from;
        let mut steps = 0u32;
        while now < until {
            steps += 1;
            assert!(steps < 1_000_000, "the agent spins at {now:?}");
            if let Some(wake) = self.step(now, site) {
                assert!(wake > now, "sleep until {wake:?} at {now:?} would spin");
                now = wake.min(until);
            }
        }
        (now, steps)
    }
}

const T0: UnixTime = UnixTime(1_795_428_000);
const DAY: u64 = 24 * 3600;

#[test]
fn seven_days_offline_at_the_default_intervals_then_delivered_in_order() {
    let mut site = Site::new(Some(id(1)));
    site.up = false;
    let mut rig = Rig::new(
        RegistrationState::Registered(id(1)),
        Schedule::default(),
        T0,
    );
    let (now, _) = rig.run(T0, T0.plus(7 * DAY), &mut site);
    // Alive, and holding only the newest heartbeat and inventory and the online status.
    assert_eq!(rig.store.len(), 3);
    let c = rig.agent.counts();
    assert_eq!(c.no_room, 0);
    assert!(c.queued >= 3 && c.queued <= 1 + 7 * 24 + 7, "{c:?}");
    assert_eq!(c.superseded, 7 * 24 - 1 + 7 - 1);
    assert_eq!(c.delivered, 0);
    // The MP comes back: the stored registration is confirmed and the queue delivered in the
    // order it was made.
    site.up = true;
    rig.run(now, now.plus(600), &mut site);
    let got: Vec<u8> = site.delivered.iter().map(|d| d.1).collect();
    assert!(
        got.contains(&b'S') && got.contains(&b'H') && got.contains(&b'I'),
        "{got:?}"
    );
    let serials: Vec<u32> = site.delivered.iter().map(|d| d.2).collect();
    let mut sorted = serials.clone();
    sorted.sort();
    assert_eq!(serials, sorted, "out of order");
    assert!(site.delivered.iter().all(|d| d.0 == id(1)));
    assert_eq!(rig.persisted, Some(RegistrationState::Registered(id(1))));
    assert_eq!(site.registrations, 0);
    assert!(rig.store.is_empty());
}

#[test]
fn a_forgotten_device_registers_afresh_and_delivers_its_queue_under_the_new_smsid() {
    // The site's database was rebuilt: it knows no device.
    let mut site = Site::new(None);
    let mut rig = Rig::new(RegistrationState::Pending(id(1)), Schedule::default(), T0);
    // Started as confirmed-registered earlier: make it so without the site.
    rig.agent.held = Some(id(1));
    let (now, _) = rig.run(T0, T0.plus(3600), &mut site);
    assert_eq!(site.registrations, 1);
    assert_eq!(rig.agent.smsid(), Some(id(9)));
    assert_eq!(rig.persisted, Some(RegistrationState::Registered(id(9))));
    assert!(rig.filed.is_empty(), "filed as refused: {:?}", rig.filed);
    assert!(rig.store.is_empty());
    assert!(site.delivered.iter().all(|d| d.0 == id(9)));
    assert!(site.delivered.len() >= 3, "{:?}", site.delivered);
    // Later, a registered device's message refused although the site knows it: re-confirm once,
    // then file it (not forever queued, not re-registered).
    site.refuse_messages = true;
    let before = site.registrations;
    rig.run(now, now.plus(3 * 3600), &mut site);
    assert_eq!(site.registrations, before);
    assert!(!rig.filed.is_empty());
    assert_eq!(rig.agent.counts().refused as usize, rig.filed.len());
    assert!(rig.agent.counts().reconfirmations >= 2);
}

#[test]
fn an_empty_policy_reply_is_checked_with_one_confirmation() {
    let mut site = Site::new(Some(id(1)));
    site.policy_empty = true;
    let mut rig = Rig::new(
        RegistrationState::Registered(id(1)),
        Schedule::default(),
        T0,
    );
    rig.run(T0, T0.plus(3 * 3600 + 10), &mut site);
    // One re-confirmation per policy period, and the site still knows the device.
    let c = rig.agent.counts();
    assert_eq!(c.reconfirmations, 4, "{c:?}");
    assert_eq!(site.registrations, 0);
    assert_eq!(
        rig.agent.registration(),
        RegistrationState::Registered(id(1))
    );
}

#[test]
fn a_rejection_waits_for_its_recheck_and_a_forced_retry_registers_at_once() {
    let mut site = Site::new(None);
    site.reject = true;
    let schedule = Schedule {
        rejection_recheck_secs: 4 * 3600,
        ..Schedule::default()
    };
    let mut rig = Rig::new(RegistrationState::Unregistered, schedule, T0);
    let (now, _) = rig.run(T0, T0.plus(60), &mut site);
    let RegistrationState::Rejected(at) = rig.agent.registration() else {
        panic!("{:?}", rig.agent.registration());
    };
    assert_eq!(rig.persisted, Some(RegistrationState::Rejected(at)));
    assert_eq!(rig.agent.poll(now), Action::Sleep(at.plus(4 * 3600)));
    // Nothing is queued for a device the site never knew.
    assert!(rig.store.is_empty());
    // The administrator approves; a forced retry registers now, not hours later.
    site.reject = false;
    rig.agent.retry_now(now);
    assert_eq!(
        rig.agent.poll(now),
        Action::Register(RequestType::Registration, None)
    );
    rig.run(now, now.plus(5), &mut site);
    assert_eq!(
        rig.agent.registration(),
        RegistrationState::Registered(id(9))
    );
}

#[test]
fn a_queue_without_room_refuses_the_new_report_counted_and_keeps_going() {
    let mut site = Site::new(Some(id(1)));
    site.up = false;
    let mut rig = Rig::new(
        RegistrationState::Registered(id(1)),
        Schedule::default(),
        T0,
    );
    // State messages that nothing supersedes fill the queue.
    let mut n = 0u32;
    loop {
        n += 1;
        let meta = MessageMeta {
            message_id: Guid([0xEE; 16]),
            endpoint: Endpoint::Relay,
            reply_mode: ReplyMode::Async,
            sent_time: T0,
            source_id: Some(id(1)),
        };
        let body = Body {
            tag: b'R',
            serial: n,
            len: 100,
        };
        match rig.store.enqueue(&meta, &body, &mut [0u8; 64]) {
            Ok(()) => {}
            Err(StoreError::QueueFull) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    rig.agent.queued = rig.store.len();
    let (now, _) = rig.run(T0, T0.plus(2 * DAY + 10), &mut site);
    let c = rig.agent.counts();
    // Status, 49 heartbeats and 3 inventories had no room: each counted, none fatal.
    assert_eq!(c.no_room, 1 + 49 + 3, "{c:?}");
    assert_eq!(c.queued, 0);
    site.up = true;
    let (now, _) = rig.run(now, now.plus(3600), &mut site);
    assert!(rig.store.is_empty(), "{} left", rig.store.len());
    assert_eq!(site.delivered.len() as u32, n - 1 + 1);
    // With room again, reports are queued and delivered.
    rig.run(now, now.plus(3600), &mut site);
    assert!(site.delivered.iter().any(|d| d.1 == b'H'));
}

/// CertificateReset: the site's answer backs the registrar off; a new identity registers at
/// once, proposing the SMSID held (the site's record carries on), and the approval status the
/// site sent is kept apart from `Status`.
#[test]
fn a_new_identity_after_certificate_reset_registers_at_once_under_the_smsid_held() {
    // Nothing scheduled: only the registration moves.
    let quiet = Schedule {
        heartbeat_secs: 0,
        inventory_secs: 0,
        policy_secs: 0,
        ..Schedule::default()
    };
    let mut agent = Agent::new(RegistrationState::Registered(id(4)), quiet, 0, T0);
    agent.skip_online_status();
    assert_eq!(
        agent.poll(T0),
        Action::Register(RequestType::Confirmation, Some(id(4)))
    );
    let mut reset = reply(RegistrationStatus::CertificateReset, None);
    reset.approval_status = Some(-1);
    let event = agent.on_registration_reply(T0, &reset);
    assert!(
        matches!(event, RegistrationEvent::CertificateReset(_)),
        "{event:?}"
    );
    assert_eq!(agent.approval_status(), Some(-1));
    assert!(matches!(agent.poll(T0), Action::Sleep(t) if t > T0));

    agent.begin_new_identity(id(7));
    assert_eq!(agent.counts().new_identities, 1);
    assert_eq!(
        agent.poll(T0),
        Action::Register(RequestType::Registration, Some(id(4)))
    );
    let event =
        agent.on_registration_reply(T0, &reply(RegistrationStatus::Registered, Some(id(4))));
    assert_eq!(event, RegistrationEvent::Registered(id(4)));
    assert_eq!(agent.smsid(), Some(id(4)));
    // Without an SMSID held, the new certificate's own is proposed.
    let mut fresh = Agent::new(RegistrationState::Unregistered, quiet, 0, T0);
    fresh.skip_online_status();
    fresh.begin_new_identity(id(7));
    assert_eq!(
        fresh.poll(T0),
        Action::Register(RequestType::Registration, Some(id(7)))
    );
}

#[test]
fn the_site_generation_decides_what_a_status_2_to_a_confirmation_means() {
    let code_2 = RegistrationResponse {
        code: 2,
        ..reply(RegistrationStatus::RetryLater, None)
    };
    let start = UnixTime(1_000);
    for (generation, resets) in [
        (SiteGeneration::Sms2007, false),
        (SiteGeneration::Current, true),
    ] {
        // No reports due: the confirmation is the first action.
        let quiet = Schedule {
            heartbeat_secs: 0,
            inventory_secs: 0,
            policy_secs: 0,
            ..Schedule::default()
        };
        let mut agent = Agent::new(RegistrationState::Registered(id(1)), quiet, 0, start);
        agent.skip_online_status();
        agent.set_site_generation(generation);
        assert_eq!(agent.site_generation(), generation);
        assert_eq!(
            agent.poll(start),
            Action::Register(RequestType::Confirmation, Some(id(1)))
        );
        let event = agent.on_registration_reply(start, &code_2);
        if resets {
            assert!(matches!(event, RegistrationEvent::Reset(_)), "{event:?}");
            assert_eq!(agent.registration(), RegistrationState::Unregistered);
        } else {
            assert!(matches!(event, RegistrationEvent::RetryAt(_)), "{event:?}");
            assert_eq!(agent.registration(), RegistrationState::Pending(id(1)));
        }
    }
}
