//! The `rejections` table: refused requests with the reason a person reads, aggregated (one row
//! per address, endpoint and reason per minute, with a count) and capped at
//! [`MAX_REJECTION_ROWS`], so that a flood of refusals cannot grow the database without bound.

use super::{own, SiteDb};
use crate::mp::util::utc_timestamp;
use rusqlite::params;

/// Rows kept; the oldest go first beyond it.
pub const MAX_REJECTION_ROWS: i64 = 10_000;

/// Refused requests of one address, endpoint and reason within one minute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectionRow {
    pub id: i64,
    /// The first refusal (UTC).
    pub at: String,
    /// The peer's IP address (ports differ per connection, so they are not kept).
    pub peer: String,
    pub endpoint: Option<String>,
    pub reason: String,
    /// Refusals the row stands for.
    pub count: i64,
    /// The last of them (UTC).
    pub last_at: String,
}

/// Adds the aggregation columns to a table made before they existed (idempotent).
pub(super) fn migrate(conn: &rusqlite::Connection) -> anyhow::Result<()> {
    let has_count = conn
        .prepare("SELECT 1 FROM pragma_table_info('rejections') WHERE name = 'count'")?
        .exists([])?;
    if !has_count {
        conn.execute_batch(
            "ALTER TABLE rejections ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
             ALTER TABLE rejections ADD COLUMN last_at TEXT;",
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS rejections_key ON rejections (peer, reason, at);",
    )?;
    Ok(())
}

/// The address of `peer` without its port (`IP:port`, `[IPv6]:port`), as the row keeps it.
fn peer_address(peer: &str) -> String {
    peer.parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| peer.to_string())
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
        let now = utc_timestamp();
        let peer = peer_address(peer);
        // Same minute: the `YYYY-MM-DDTHH:MM` prefix of the timestamps.
        let merged = self.conn.execute(
            "UPDATE rejections SET count = count + 1, last_at = ?1
             WHERE peer = ?2 AND reason = ?3 AND endpoint IS ?4
               AND at >= substr(?1, 1, 16) AND at < substr(?1, 1, 16) || ':99'",
            params![now, peer, reason, endpoint],
        )?;
        if merged == 0 {
            self.conn.execute(
                "INSERT INTO rejections (at, peer, endpoint, reason, count, last_at)
                 VALUES (?1, ?2, ?3, ?4, 1, ?1)",
                params![now, peer, endpoint, reason],
            )?;
            self.conn.execute(
                "DELETE FROM rejections WHERE id <= (SELECT max(id) FROM rejections) - ?1",
                params![MAX_REJECTION_ROWS],
            )?;
        }
        Ok(())
    }

    /// All refused requests, oldest first.
    pub fn rejections(&self) -> anyhow::Result<Vec<RejectionRow>> {
        let mut st = self.conn.prepare(
            "SELECT id, at, peer, endpoint, reason, count, coalesce(last_at, at)
                 FROM rejections ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(RejectionRow {
                id: r.get(0)?,
                at: r.get(1)?,
                peer: r.get(2)?,
                endpoint: r.get(3)?,
                reason: r.get(4)?,
                count: r.get(5)?,
                last_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_one_address_and_reason_share_a_row_and_the_table_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let db = SiteDb::open(dir.path().join("site.db")).unwrap();
        for port in 0..500u16 {
            db.log_rejection(&format!("127.0.0.2:{}", 1000 + port), None, "busy")
                .unwrap();
        }
        db.log_rejection("127.0.0.1:9", Some("/ccm_system/request"), "bad signature")
            .unwrap();
        let rows = db.rejections().unwrap();
        // One minute boundary may fall inside the loop: at most two rows for the flood.
        let flood: Vec<_> = rows.iter().filter(|r| r.peer == "127.0.0.2").collect();
        assert!((1..=2).contains(&flood.len()), "{rows:?}");
        assert_eq!(flood.iter().map(|r| r.count).sum::<i64>(), 500);
        assert!(rows.iter().any(|r| r.peer == "127.0.0.1" && r.count == 1));

        for i in 0..(MAX_REJECTION_ROWS + 50) {
            db.log_rejection(&format!("10.0.{}.{}:1", i / 250, i % 250), None, "busy")
                .unwrap();
        }
        let rows = db.rejections().unwrap();
        assert_eq!(rows.len() as i64, MAX_REJECTION_ROWS);
        assert!(
            rows.iter().all(|r| r.peer.starts_with("10.")),
            "oldest dropped first"
        );
    }
}
