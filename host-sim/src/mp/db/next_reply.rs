//! The `next_replies` table: the registration reply an administrator ordered for a client's next
//! registration or Confirmation (`mp next-reply`), used once.

use super::SiteDb;
use crate::mp::util::utc_timestamp;
use rusqlite::{params, OptionalExtension};

/// A registration reply other than the client's state would give (docs/protocol.md §4, current
/// numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NextReply {
    /// Status 2: register afresh. The client's record is removed, so its SMSID is free again.
    Reset,
    /// Status 3: blocked or incorrect message; the record stays.
    Error,
    /// Status 4: make a new key and certificate, then register. The record is removed.
    CertificateReset,
}

impl NextReply {
    pub fn as_str(self) -> &'static str {
        match self {
            NextReply::Reset => "reset",
            NextReply::Error => "error",
            NextReply::CertificateReset => "certificate-reset",
        }
    }

    fn parse(s: &str) -> Option<NextReply> {
        [
            NextReply::Reset,
            NextReply::Error,
            NextReply::CertificateReset,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl SiteDb {
    /// Orders `reply` for the next registration reply to `smsid`; false if no client has it.
    pub fn set_next_reply(&self, smsid: &str, reply: NextReply) -> anyhow::Result<bool> {
        let Some(client) = self.client(smsid.trim())? else {
            return Ok(false);
        };
        self.conn.execute(
            "INSERT OR REPLACE INTO next_replies (smsid, reply, set_at) VALUES (?1, ?2, ?3)",
            params![client.smsid, reply.as_str(), utc_timestamp()],
        )?;
        self.event(Some(&client.smsid), "next-reply", reply.as_str())?;
        Ok(true)
    }

    /// The reply ordered for `smsid`, removed as it is taken; for Reset and CertificateReset the
    /// client's record goes too (it registers afresh). Runs on the writer's connection.
    pub fn take_next_reply(&self, smsid: &str) -> anyhow::Result<Option<NextReply>> {
        let reply: Option<String> = self
            .conn
            .prepare_cached("SELECT reply FROM next_replies WHERE smsid = ?1")?
            .query_row([smsid], |r| r.get(0))
            .optional()?;
        let Some(reply) = reply.as_deref().and_then(NextReply::parse) else {
            return Ok(None);
        };
        self.conn
            .execute("DELETE FROM next_replies WHERE smsid = ?1", [smsid])?;
        if reply != NextReply::Error {
            self.conn
                .execute("DELETE FROM clients WHERE smsid = ?1", [smsid])?;
        }
        self.event(
            Some(smsid),
            "next-reply-sent",
            &format!("{} (ordered by the administrator)", reply.as_str()),
        )?;
        Ok(Some(reply))
    }
}
