//! The `rejections` table: every refused request with the reason a person reads.

use super::{own, SiteDb};
use crate::mp::util::utc_timestamp;
use rusqlite::params;

/// One refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectionRow {
    pub id: i64,
    pub at: String,
    pub peer: String,
    pub endpoint: Option<String>,
    pub reason: String,
}

impl SiteDb {
    /// Logs a refused request.
    pub fn log_rejection(
        &self,
        peer: &str,
        endpoint: Option<&str>,
        reason: &str,
    ) -> anyhow::Result<()> {
        if let Some(w) = &self.writer {
            let (peer, endpoint, reason) = (peer.to_owned(), own(endpoint), reason.to_owned());
            return w.run(move |db| db.log_rejection(&peer, endpoint.as_deref(), &reason));
        }
        self.conn.execute(
            "INSERT INTO rejections (at, peer, endpoint, reason) VALUES (?1, ?2, ?3, ?4)",
            params![utc_timestamp(), peer, endpoint, reason],
        )?;
        Ok(())
    }

    /// All refused requests, oldest first.
    pub fn rejections(&self) -> anyhow::Result<Vec<RejectionRow>> {
        let mut st = self
            .conn
            .prepare("SELECT id, at, peer, endpoint, reason FROM rejections ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(RejectionRow {
                id: r.get(0)?,
                at: r.get(1)?,
                peer: r.get(2)?,
                endpoint: r.get(3)?,
                reason: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
