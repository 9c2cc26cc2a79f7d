//! The `messages` table: accepted management messages (DDR, inventory, status, state), unique
//! per SMSID and message ID.

use super::{own, smsid_key, SiteDb};
use crate::mp::util::utc_timestamp;
use rusqlite::{params, OptionalExtension};

/// One accepted management message (DDR, inventory, status, state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    /// The header's `ID`, `{GUID}` upper case.
    pub message_id: String,
    /// The sender (`SourceID`), normalised `GUID:` + upper-case GUID.
    pub smsid: String,
    /// `TargetEndpoint`, e.g. `MP_DdrEndpoint`.
    pub endpoint: String,
    /// `ddr`, `hinv-full`, `hinv-delta`, `status`, `state`.
    pub kind: String,
    /// The ISV proxy that signed it for the client, if any.
    pub via_proxy: Option<String>,
    /// The header's `SentTime`.
    pub sent_time: Option<String>,
    /// When the emulator accepted it (`YYYY-MM-DDThh:mm:ssZ`).
    pub received_at: String,
    /// The body XML as received (decoded from UTF-16LE).
    pub body: String,
}

/// A message to store.
#[derive(Clone, Debug)]
pub struct NewMessage<'a> {
    pub message_id: &'a str,
    pub smsid: &'a str,
    pub endpoint: &'a str,
    pub kind: &'a str,
    pub via_proxy: Option<&'a str>,
    pub sent_time: Option<&'a str>,
    pub body: &'a str,
}

const MESSAGE_COLUMNS: &str =
    "message_id, smsid, endpoint, kind, via_proxy, sent_time, received_at, body";

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        message_id: r.get(0)?,
        smsid: r.get(1)?,
        endpoint: r.get(2)?,
        kind: r.get(3)?,
        via_proxy: r.get(4)?,
        sent_time: r.get(5)?,
        received_at: r.get(6)?,
        body: r.get(7)?,
    })
}

/// A [`NewMessage`] that can be sent to the writer thread.
struct OwnedNewMessage {
    message_id: String,
    smsid: String,
    endpoint: String,
    kind: String,
    via_proxy: Option<String>,
    sent_time: Option<String>,
    body: String,
}

impl From<&NewMessage<'_>> for OwnedNewMessage {
    fn from(m: &NewMessage<'_>) -> Self {
        OwnedNewMessage {
            message_id: m.message_id.to_owned(),
            smsid: m.smsid.to_owned(),
            endpoint: m.endpoint.to_owned(),
            kind: m.kind.to_owned(),
            via_proxy: own(m.via_proxy),
            sent_time: own(m.sent_time),
            body: m.body.to_owned(),
        }
    }
}

impl OwnedNewMessage {
    fn borrow(&self) -> NewMessage<'_> {
        NewMessage {
            message_id: &self.message_id,
            smsid: &self.smsid,
            endpoint: &self.endpoint,
            kind: &self.kind,
            via_proxy: self.via_proxy.as_deref(),
            sent_time: self.sent_time.as_deref(),
            body: &self.body,
        }
    }
}

impl SiteDb {
    /// True if `smsid` already delivered a message with this ID (compared case-insensitively).
    pub fn message_seen(&self, smsid: &str, message_id: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM messages WHERE smsid = ?1 AND message_id = ?2")?
            .query_row(params![smsid, message_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Stores an accepted message; false (and nothing stored) if this SMSID already delivered a
    /// message with this ID.
    pub fn store_message(&self, m: &NewMessage<'_>) -> anyhow::Result<bool> {
        if let Some(w) = &self.writer {
            let m = OwnedNewMessage::from(m);
            return w.run(move |db| db.store_message(&m.borrow()));
        }
        let n = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO messages (message_id, smsid, endpoint, kind, via_proxy, \
                 sent_time, received_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                m.message_id,
                m.smsid,
                m.endpoint,
                m.kind,
                m.via_proxy,
                m.sent_time,
                utc_timestamp(),
                m.body
            ])?;
        Ok(n == 1)
    }

    /// Accepted messages, oldest first; only those of `smsid` (any case) if given.
    pub fn messages(&self, smsid: Option<&str>) -> anyhow::Result<Vec<MessageRow>> {
        let smsid = smsid.map(smsid_key);
        let mut st = self.conn.prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE ?1 IS NULL OR smsid = ?1 ORDER BY id"
        ))?;
        let rows = st.query_map([smsid], message_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
