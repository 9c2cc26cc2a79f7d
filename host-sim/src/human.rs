//! What the host tools print for people: dates as dates, GUIDs as GUIDs, the core's errors and
//! driver events as sentences (their `Display`), never Rust `Debug` values.

use mpagent_core::agent::registration::RegistrationEvent;
use mpagent_core::io::driver::{DriverError, Event};
use mpagent_core::io::SendError;
use mpagent_core::store::embedded_storage::nor_flash::NorFlashError;
use mpagent_core::store::StoreError;
use mpagent_core::time::UnixTime;

/// `2026-12-07 12:30:00 UTC`.
pub fn date(t: UnixTime) -> String {
    let d = t.to_datetime();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        d.year, d.month, d.day, d.hour, d.minute, d.second
    )
}

/// A delivery failure as a sentence.
pub fn send_error(e: &SendError) -> String {
    e.to_string()
}

/// A store failure as a sentence.
pub fn store_error<E: NorFlashError>(e: &StoreError<E>) -> String {
    e.to_string()
}

/// A driver failure as a sentence.
pub fn driver_error<E: NorFlashError>(e: &DriverError<E>) -> String {
    e.to_string()
}

/// A registration event as a sentence.
pub fn registration(e: &RegistrationEvent) -> String {
    match *e {
        RegistrationEvent::Issued(id) => format!("the site named SMSID {id}; confirming it"),
        RegistrationEvent::Registered(id) => format!("registered as {id}"),
        RegistrationEvent::PendingApproval(id, t) => {
            format!("{id} is pending approval; asking again at {}", date(t))
        }
        RegistrationEvent::RetryAt(t) => format!("registration will be tried again at {}", date(t)),
        RegistrationEvent::Discarded(id, t) => format!(
            "the site did not confirm {id}: dropped; registering again at {}",
            date(t)
        ),
        RegistrationEvent::Abandoned(id, t) => format!(
            "the site no longer knows {id}: registering afresh at {}",
            date(t)
        ),
        RegistrationEvent::RejectedOnce(t) => {
            format!(
                "the site rejected the registration; asking once more at {}",
                date(t)
            )
        }
        RegistrationEvent::Rejected(t) => {
            format!("the site rejected the registration at {}", date(t))
        }
        RegistrationEvent::Reset(t) => {
            format!(
                "the site asked this client to reset: registering afresh at {}",
                date(t)
            )
        }
        RegistrationEvent::CertificateReset(t) => format!(
            "the site says this certificate conflicts with another client's: a new identity is \
             needed (delete the state directory's key.pk8 and cert.der, then run again); asking \
             again at {}",
            date(t)
        ),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A registration reply's `ApprovalStatus` for a person. Only `-1` has a meaning on record (not
/// approved); other values are shown as sent (docs/protocol.md §4).
pub fn approval_status(value: i32) -> String {
    match value {
        -1 => "the site has not approved this client (ApprovalStatus -1: no secret or \
               auth-required policy until an administrator approves it)"
            .into(),
        v => format!("ApprovalStatus {v}"),
    }
}

/// A driver event as a sentence.
pub fn driver_event(e: &Event<'_>) -> String {
    match *e {
        Event::RegistrationSending {
            request_type,
            message_id,
        } => format!("sending a {request_type} request, message {message_id}"),
        Event::RegistrationFailed(f) => format!("registration attempt failed: {f}"),
        Event::Registration(r) => registration(&r),
        Event::Queued {
            kind,
            message_id,
            superseded,
            queued,
        } => format!(
            "queued the {kind} {message_id}{} ({queued} waiting)",
            if superseded {
                ", replacing the unsent older one"
            } else {
                ""
            }
        ),
        Event::NoRoom(kind) => format!("the queue is full: the {kind} was not made"),
        Event::Delivered {
            endpoint,
            message_id,
        } => format!("delivered {message_id} to {}", endpoint.name()),
        Event::DeliveryFailed { error, .. } => format!("delivery stopped: {error}"),
        Event::Refused {
            endpoint,
            message_id,
            error,
        } => format!(
            "the site refused {message_id} for {} under a confirmed registration: {error}",
            endpoint.name()
        ),
        Event::PolicyAssignments(n) => format!("policy: {n} assignment(s)"),
        Event::PolicyEmpty => "policy: the MP had nothing (empty reply)".into(),
        Event::PolicyFailed(e) => e.to_string(),
        Event::PolicyApplied { id, version, bytes } => {
            format!("policy {id} version {version} applied ({bytes} bytes, hash checked)")
        }
        Event::PolicyHashMismatch { id, expected, got } => format!(
            "policy {id} refused: its body's SHA-256 is {} but the assignment names {}",
            hex(&got),
            hex(&expected)
        ),
        Event::PolicyFetchFailed { id, error } => format!("policy {id}: {error}"),
        Event::NewIdentityMade => {
            "the site asked for a new certificate: made a new key and certificate, registering them \
             (the stored identity stays until they are registered)"
                .into()
        }
        Event::NewIdentityUnavailable => {
            "the site asked for a new certificate, and this client's certificate is provisioned: \
             issue a new one (pki issue) and restart the client"
                .into()
        }
        Event::NewIdentityStored => "the new key and certificate are registered and stored".into(),
        _ => "agent event".into(),
    }
}
