//! The agent's whole life after configuration, as one sans-IO state machine: registration and
//! the re-confirmation of a stored registration, the report schedules (heartbeat, hardware
//! inventory, the online status once per start), the outbound queue's rules and policy polls.
//! It is handed `now` and the outcome of each action and answers the next [`Action`];
//! [`crate::io::driver`] runs it over a transport, boards and hosts give it their reports.
//!
//! The rules it keeps:
//! - **Nothing stops the agent and nothing is dropped silently.** The queue drains before new
//!   reports go in; a new heartbeat supersedes an unsent older heartbeat and a new full
//!   inventory an unsent older one (both counted; when the queue is full the unsent one stands
//!   for the new one); anything else stays queued; a report for which there is truly no room
//!   is refused, counted and reported, never an exit.
//! - **A device the site forgot comes back.** A refused message (HTTP 4xx from our emulator, or
//!   an empty 200 to the policy request, which is how real MPs refuse: docs/protocol.md §5) is not
//!   filed as refused at once: the agent re-confirms its SMSID. If the site confirms it, the
//!   message itself was refused (the caller files it). If the site refuses the confirmation the
//!   [`Registrar`] drops the SMSID and registers afresh; the queue is then delivered under the
//!   SMSID the site now knows.
//! - **A rejection is asked again** after a configurable interval, or at once on
//!   [`Agent::retry_now`].

use crate::agent::registration::{
    backoff, Registrar, RegistrarAction, RegistrationEvent, RegistrationState,
};
use crate::config::SiteGeneration;
use crate::guid::Smsid;
use crate::profile;
use crate::store::{Endpoint, QueuedMessage};
use crate::time::UnixTime;
use crate::wire::registration::RequestType;
use crate::wire::reply::RegistrationResponse;

/// How often each report is made, in seconds (0: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Schedule {
    /// Heartbeat (discovery data record).
    pub heartbeat_secs: u64,
    /// Full hardware inventory.
    pub inventory_secs: u64,
    /// Policy request.
    pub policy_secs: u64,
    /// How long a believed rejection stands before the agent asks again.
    pub rejection_recheck_secs: u64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            heartbeat_secs: profile::HEARTBEAT_SECS,
            inventory_secs: profile::INVENTORY_SECS,
            policy_secs: profile::POLICY_SECS,
            rejection_recheck_secs: profile::REJECTION_RECHECK_SECS,
        }
    }
}

/// A report the agent asks its caller to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReportKind {
    /// Heartbeat discovery data record (`MP_DdrEndpoint`).
    Heartbeat,
    /// Full hardware inventory (`MP_HinvEndpoint`).
    Inventory,
    /// The status message saying the appliance came online (`StatusReceiver`), once per start.
    OnlineStatus,
}

impl ReportKind {
    /// The endpoint its message goes to.
    pub fn endpoint(self) -> Endpoint {
        match self {
            Self::Heartbeat => Endpoint::Ddr,
            Self::Inventory => Endpoint::Hinv,
            Self::OnlineStatus => Endpoint::Status,
        }
    }

    /// Its name, for people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Heartbeat => "heartbeat",
            Self::Inventory => "hardware inventory",
            Self::OnlineStatus => "online status",
        }
    }

    fn slot(self) -> Option<usize> {
        match self {
            Self::Heartbeat => Some(0),
            Self::Inventory => Some(1),
            Self::OnlineStatus => None,
        }
    }
}

impl core::fmt::Display for ReportKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Send a registration request of this type (with the SMSID for a confirmation), then
    /// [`Agent::on_registration_reply`] or [`Agent::on_registration_failure`].
    Register(RequestType, Option<Smsid>),
    /// Make this report naming `smsid` and queue it, withdrawing `supersedes` (an unsent older
    /// report of the same kind) once the new one is stored; then [`Agent::on_queued`].
    Queue {
        /// Which report.
        kind: ReportKind,
        /// The SMSID it names.
        smsid: Smsid,
        /// The unsent older report it replaces, if any.
        supersedes: Option<QueuedMessage>,
    },
    /// Send the queue's oldest message signed as `smsid`, then [`Agent::on_delivered`] or
    /// [`Agent::on_delivery_failed`].
    Deliver(Smsid),
    /// Request policy as `smsid`, then [`Agent::on_policy`].
    PollPolicy(Smsid),
    /// Nothing to do before this time.
    Sleep(UnixTime),
}

/// How queueing a report went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Queued {
    /// Stored as this record; `superseded`: the older report it replaced was withdrawn.
    Stored {
        /// The new record.
        record: QueuedMessage,
        /// Whether an unsent older report of the kind was withdrawn.
        superseded: bool,
    },
    /// No room in the queue even after draining: the report was not made.
    NoRoom,
    /// The device had nothing of this kind to report: nothing was made, nothing is counted.
    Nothing,
}

/// How an exchange after registration failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// Worth trying again later: the MP was unreachable, timed out or answered 5xx.
    Retryable,
    /// The site refused it (HTTP 4xx, or a refusing empty 200).
    Refused,
}

/// What the caller does with a message the site refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Refusal {
    /// Keep it queued: the agent first re-confirms its registration.
    Reconfirming,
    /// The site confirmed this SMSID and still refuses the message: file it away (it would block
    /// every later message) with the reason, and pop it.
    RefusedForGood,
    /// Keep it queued and try again at this time.
    Later(UnixTime),
}

/// What the policy request answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PolicyOutcome {
    /// A reply was handled (its bodies fetched or refused as they deserved).
    Done,
    /// HTTP 200 with an empty body: nothing yet, or a quiet refusal (docs/protocol.md §5).
    Empty,
    /// The exchange failed.
    Failed(Failure),
}

/// Totals since the agent started, for people and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counts {
    /// Reports queued.
    pub queued: u32,
    /// Messages the MP acknowledged.
    pub delivered: u32,
    /// Reports of a kind that a newer one replaced while unsent (or that, the queue being full,
    /// the unsent one of the kind stood for).
    pub superseded: u32,
    /// Reports not made because the queue had no room.
    pub no_room: u32,
    /// Messages the site refused under a confirmed registration (filed by the caller).
    pub refused: u32,
    /// Times the site was asked to confirm the registration after a refusal.
    pub reconfirmations: u32,
    /// New keys and certificates made because the site asked for them (CertificateReset).
    pub new_identities: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum RefusalCheck {
    /// No refusal outstanding.
    None,
    /// A refusal sent the agent to re-confirm its SMSID.
    Reconfirming,
    /// The site confirmed the SMSID after the refusal: another refusal is the message's own.
    Confirmed,
}

/// The agent. One per device (an ISV proxy runs one per client).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Agent {
    registrar: Registrar,
    /// The SMSID the site last confirmed: reports keep naming it while the agent re-confirms or
    /// registers afresh (they are resent under the new one if the site issues another).
    held: Option<Smsid>,
    schedule: Schedule,
    next_heartbeat: UnixTime,
    next_inventory: UnixTime,
    next_policy: UnixTime,
    online_status_due: bool,
    queued: u32,
    deliver_after: UnixTime,
    exchange_failures: u32,
    /// The unsent heartbeat and full inventory, which a newer one supersedes.
    unsent: [Option<QueuedMessage>; 2],
    refusal: RefusalCheck,
    counts: Counts,
    /// Whether the site answered a registration request since start.
    site_answered: bool,
    /// The SMSID proposed in registrations.
    proposed: Option<Smsid>,
    /// The site's generation (how it numbers registration `Status`).
    generation: SiteGeneration,
    /// The last `ApprovalStatus` the site sent (apart from `Status`: docs/protocol.md §4).
    approval_status: Option<i32>,
}

impl Agent {
    /// Start from the persisted registration state, with `queued` messages in the store, at
    /// `now`: every report and the policy request are due at once. A stored `Registered` SMSID
    /// is confirmed with the site before anything is sent (reports due meanwhile are queued).
    pub fn new(stored: RegistrationState, schedule: Schedule, queued: u32, now: UnixTime) -> Self {
        let (start, held) = match stored {
            RegistrationState::Registered(id) => (RegistrationState::Pending(id), Some(id)),
            other => (other, None),
        };
        Self {
            registrar: Registrar::new(start)
                .with_rejection_recheck(schedule.rejection_recheck_secs),
            held,
            schedule,
            next_heartbeat: now,
            next_inventory: now,
            next_policy: now,
            online_status_due: true,
            queued,
            deliver_after: now,
            exchange_failures: 0,
            unsent: [None, None],
            refusal: RefusalCheck::None,
            counts: Counts::default(),
            site_answered: false,
            proposed: None,
            generation: SiteGeneration::default(),
            approval_status: None,
        }
    }

    /// The last `ApprovalStatus` a registration reply carried (current sites send it; `-1`
    /// means not approved: such a client gets no secret or auth-required policy).
    pub fn approval_status(&self) -> Option<i32> {
        self.approval_status
    }

    /// Registration state (persist it after every event that [`RegistrationEvent::persist`]s).
    pub fn registration(&self) -> RegistrationState {
        self.registrar.state()
    }

    /// The registrar, for observers.
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// The SMSID reports name now: the registered one, or the last one the site confirmed.
    pub fn smsid(&self) -> Option<Smsid> {
        match self.registrar.state() {
            RegistrationState::Registered(id) => Some(id),
            _ => self.held,
        }
    }

    /// Propose `smsid` in registrations ([`crate::agent::registration::proposed_smsid`]).
    pub fn propose_smsid(&mut self, smsid: Smsid) {
        self.proposed = Some(smsid);
        self.registrar = self.registrar.with_proposed_smsid(smsid);
    }

    /// Talk to a site of `generation` (read its registration `Status` as it numbers it). The
    /// driver applies its configuration's [`crate::config::AgentConfig::site_generation`].
    pub fn set_site_generation(&mut self, generation: SiteGeneration) {
        self.generation = generation;
        self.registrar = self.registrar.with_site_generation(generation);
    }

    /// The site's generation.
    pub fn site_generation(&self) -> SiteGeneration {
        self.generation
    }

    /// Do not queue the online status message at start (a caller that restarts often).
    pub fn skip_online_status(&mut self) {
        self.online_status_due = false;
    }

    /// The store holds `queued` messages (after the caller added or removed one itself).
    pub fn set_queued(&mut self, queued: u32) {
        self.queued = queued;
    }

    /// Whether the site said the device waits for approval (it answered Pending, nothing in
    /// doubt): the one state in which only an administrator moves things on. A stored SMSID the
    /// site has not answered about yet is not pending.
    pub fn waiting_for_approval(&self) -> bool {
        self.site_answered && self.registrar.waiting_for_approval()
    }

    /// Totals since start.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The schedule.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Try again at once whatever waits: a believed rejection is forgotten (an administrator
    /// approved the device since), backoffs are cut short.
    pub fn retry_now(&mut self, now: UnixTime) {
        self.registrar.retry_now();
        self.deliver_after = now;
        self.exchange_failures = 0;
    }

    /// The next action at `now`.
    pub fn poll(&self, now: UnixTime) -> Action {
        let smsid = match self.registrar.poll(now) {
            RegistrarAction::Done(id) => id,
            other => {
                // Not (or no longer) confirmed: a device the site knew keeps queueing its
                // reports under that SMSID while it re-confirms or registers afresh.
                if let Some(held) = self.held {
                    if let Some(a) = self.due_report(now, held) {
                        return a;
                    }
                }
                return match other {
                    RegistrarAction::Send(kind, id) => Action::Register(kind, id),
                    RegistrarAction::WaitUntil(t) | RegistrarAction::Rejected(t) => {
                        Action::Sleep(match self.held {
                            Some(_) => t.min(self.next_report_at()),
                            None => t,
                        })
                    }
                    RegistrarAction::Done(_) => Action::Sleep(now),
                };
            }
        };
        let online = now >= self.deliver_after;
        if self.queued > 0 && online {
            return Action::Deliver(smsid);
        }
        if let Some(a) = self.due_report(now, smsid) {
            return a;
        }
        if self.schedule.policy_secs > 0 && now >= self.next_policy && online {
            return Action::PollPolicy(smsid);
        }
        let mut wake = self.next_report_at();
        if self.schedule.policy_secs > 0 {
            wake = wake.min(self.next_policy.max(self.deliver_after));
        }
        if self.queued > 0 {
            wake = wake.min(self.deliver_after);
        }
        Action::Sleep(wake.max(now))
    }

    fn due_report(&self, now: UnixTime, smsid: Smsid) -> Option<Action> {
        let kind = if self.schedule.heartbeat_secs > 0 && now >= self.next_heartbeat {
            ReportKind::Heartbeat
        } else if self.schedule.inventory_secs > 0 && now >= self.next_inventory {
            ReportKind::Inventory
        } else if self.online_status_due {
            ReportKind::OnlineStatus
        } else {
            return None;
        };
        let supersedes = kind
            .slot()
            .and_then(|i| self.unsent.get(i).copied().flatten());
        Some(Action::Queue {
            kind,
            smsid,
            supersedes,
        })
    }

    fn next_report_at(&self) -> UnixTime {
        let mut t = UnixTime(u64::MAX);
        if self.schedule.heartbeat_secs > 0 {
            t = t.min(self.next_heartbeat);
        }
        if self.schedule.inventory_secs > 0 {
            t = t.min(self.next_inventory);
        }
        t
    }

    /// The unsent report of `kind` a newer one would supersede (heartbeat and full inventory
    /// only), for a caller that queues reports of its own ([`crate::io::driver::Driver::queue_report`]).
    pub fn unsent(&self, kind: ReportKind) -> Option<QueuedMessage> {
        kind.slot()
            .and_then(|i| self.unsent.get(i).copied().flatten())
    }

    /// A message the caller made outside the schedule (one that nothing supersedes) was
    /// queued; `queued` is the store's message count now.
    pub fn on_queued_message(&mut self, queued: u32) {
        self.counts.queued = self.counts.queued.saturating_add(1);
        self.queued = queued;
    }

    /// A message the caller made outside the schedule found no room in the queue (counted).
    pub fn on_no_room(&mut self, what: &str) {
        // Only the log names it (none is compiled in without a log feature).
        let _ = what;
        self.counts.no_room = self.counts.no_room.saturating_add(1);
        warn!("queue full: a message for {} was not queued", what);
    }

    /// When the next policy request is due: a caller that asks for policy on its own terms (an
    /// ISV proxy asks when its device does) sets it to now, or far ahead to keep it quiet.
    pub fn set_next_policy(&mut self, at: UnixTime) {
        self.next_policy = at;
    }

    /// A report asked for by [`Action::Queue`] was queued (or had no room); `queued` is the
    /// store's message count now. The report's schedule moves on either way.
    pub fn on_queued(&mut self, now: UnixTime, kind: ReportKind, outcome: Queued, queued: u32) {
        match kind {
            ReportKind::Heartbeat => self.next_heartbeat = now.plus(self.schedule.heartbeat_secs),
            ReportKind::Inventory => self.next_inventory = now.plus(self.schedule.inventory_secs),
            ReportKind::OnlineStatus => self.online_status_due = false,
        }
        match outcome {
            Queued::Stored { record, superseded } => {
                self.counts.queued = self.counts.queued.saturating_add(1);
                if superseded {
                    self.counts.superseded = self.counts.superseded.saturating_add(1);
                }
                if let Some(slot) = kind.slot().and_then(|i| self.unsent.get_mut(i)) {
                    *slot = Some(record);
                }
            }
            // Withdrawn reports free their flash only once the head passes them, so a long
            // outage fills the queue: the unsent report of the kind then stands for the new one.
            Queued::NoRoom
                if kind
                    .slot()
                    .and_then(|i| self.unsent.get(i))
                    .is_some_and(Option::is_some) =>
            {
                self.counts.superseded = self.counts.superseded.saturating_add(1);
                debug!(
                    "queue full: the unsent {} stands for the new one",
                    kind.name()
                );
            }
            Queued::NoRoom => {
                self.counts.no_room = self.counts.no_room.saturating_add(1);
                warn!("queue full: a {} was not made", kind.name());
            }
            Queued::Nothing => {}
        }
        self.queued = queued;
    }

    /// The queue's oldest message (`record`) was delivered; `queued` is the count now.
    pub fn on_delivered(&mut self, now: UnixTime, record: &QueuedMessage, queued: u32) {
        for slot in self.unsent.iter_mut() {
            if slot.is_some_and(|s| s.is_same_record(record)) {
                *slot = None;
            }
        }
        self.counts.delivered = self.counts.delivered.saturating_add(1);
        self.exchange_failures = 0;
        self.deliver_after = now;
        self.refusal = RefusalCheck::None;
        self.queued = queued;
    }

    /// Delivering the oldest message failed. For a refusal the answer says what to do with it.
    pub fn on_delivery_failed(&mut self, now: UnixTime, failure: Failure) -> Refusal {
        match failure {
            Failure::Retryable => Refusal::Later(self.back_off(now)),
            Failure::Refused => self.on_refused(now),
        }
    }

    /// A message refused for good was filed away and popped; `queued` is the count now.
    pub fn on_filed(&mut self, record: &QueuedMessage, queued: u32) {
        for slot in self.unsent.iter_mut() {
            if slot.is_some_and(|s| s.is_same_record(record)) {
                *slot = None;
            }
        }
        self.counts.refused = self.counts.refused.saturating_add(1);
        self.refusal = RefusalCheck::None;
        self.queued = queued;
    }

    /// The policy request answered (or failed).
    pub fn on_policy(&mut self, now: UnixTime, outcome: PolicyOutcome) {
        match outcome {
            PolicyOutcome::Done => {
                self.next_policy = now.plus(self.schedule.policy_secs);
                self.exchange_failures = 0;
                self.refusal = RefusalCheck::None;
            }
            PolicyOutcome::Empty => {
                self.next_policy = now.plus(self.schedule.policy_secs);
                self.exchange_failures = 0;
                if profile::EMPTY_POLICY_REPLY_RECONFIRMS && self.refusal == RefusalCheck::None {
                    self.reconfirm();
                } else {
                    self.refusal = RefusalCheck::None;
                }
            }
            PolicyOutcome::Failed(Failure::Retryable) => {
                self.back_off(now);
            }
            PolicyOutcome::Failed(Failure::Refused) => {
                if self.on_refused(now) == Refusal::RefusedForGood {
                    warn!("policy request refused under a confirmed registration");
                    self.next_policy = now.plus(self.schedule.policy_secs);
                    self.refusal = RefusalCheck::None;
                }
            }
        }
    }

    fn on_refused(&mut self, now: UnixTime) -> Refusal {
        match self.refusal {
            RefusalCheck::Confirmed => Refusal::RefusedForGood,
            RefusalCheck::Reconfirming => Refusal::Later(self.back_off(now)),
            RefusalCheck::None => {
                self.reconfirm();
                Refusal::Reconfirming
            }
        }
    }

    /// The device made a new key and certificate because the site answered CertificateReset:
    /// register them afresh at once. The SMSID held so far is proposed again (the site's record
    /// of the device carries on under it), else `fallback` (the new certificate's own). The
    /// stored registration is the caller's to keep until the new identity is registered.
    pub fn begin_new_identity(&mut self, fallback: Smsid) {
        let proposed = self.held.unwrap_or(fallback);
        self.proposed = Some(proposed);
        self.registrar = Registrar::new(RegistrationState::Unregistered)
            .with_rejection_recheck(self.schedule.rejection_recheck_secs)
            .with_site_generation(self.generation)
            .with_proposed_smsid(proposed);
        self.refusal = RefusalCheck::None;
        self.counts.new_identities = self.counts.new_identities.saturating_add(1);
        info!(
            "a new key and certificate: registering them as {}",
            proposed
        );
    }

    /// Ask the site to confirm the SMSID in use (through the registrar's confirmation path).
    fn reconfirm(&mut self) {
        let Some(id) = self.smsid() else {
            return;
        };
        self.held = Some(id);
        let mut registrar = Registrar::new(RegistrationState::Pending(id))
            .with_rejection_recheck(self.schedule.rejection_recheck_secs)
            .with_site_generation(self.generation);
        if let Some(p) = self.proposed {
            registrar = registrar.with_proposed_smsid(p);
        }
        self.registrar = registrar;
        self.refusal = RefusalCheck::Reconfirming;
        self.counts.reconfirmations = self.counts.reconfirmations.saturating_add(1);
        info!("the site refused {}: confirming the registration", id);
    }

    fn back_off(&mut self, now: UnixTime) -> UnixTime {
        self.exchange_failures = self.exchange_failures.saturating_add(1);
        self.deliver_after = now.plus(backoff(self.exchange_failures));
        self.deliver_after
    }

    /// The registration request [`Action::Register`] asked for was answered.
    pub fn on_registration_reply(
        &mut self,
        now: UnixTime,
        reply: &RegistrationResponse,
    ) -> RegistrationEvent {
        let event = self.registrar.on_response(now, reply);
        self.site_answered = true;
        if reply.approval_status.is_some() {
            self.approval_status = reply.approval_status;
        }
        self.after_registration_event(now, event);
        event
    }

    /// The registration request failed: `refused` when the site said no (HTTP 4xx or an empty
    /// 200), else a failure on the way.
    pub fn on_registration_failure(&mut self, now: UnixTime, refused: bool) -> RegistrationEvent {
        let event = if refused {
            self.registrar.on_refusal(now)
        } else {
            self.registrar.on_failure(now)
        };
        self.after_registration_event(now, event);
        event
    }

    fn after_registration_event(&mut self, now: UnixTime, event: RegistrationEvent) {
        if let RegistrationEvent::Registered(id) = event {
            self.refusal = match (self.refusal, self.held) {
                (RefusalCheck::Reconfirming, Some(held)) if held == id => RefusalCheck::Confirmed,
                _ => RefusalCheck::None,
            };
            if self.held.is_some_and(|h| h != id) {
                info!(
                    "registered afresh as {}: queued reports follow under it",
                    id
                );
            }
            self.held = Some(id);
            self.deliver_after = now;
            self.exchange_failures = 0;
        }
    }
}

#[cfg(test)]
mod tests;
