//! The site database (SQLite, WAL): registered clients, certificates imported by the administrator
//! (ISV proxies), the rejection log, an event log, and a message store for the endpoints to come.

use super::util::{new_smsid, normalize_smsid, utc_timestamp};
use super::verify;
use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clients (
    smsid               TEXT PRIMARY KEY COLLATE NOCASE,
    cert_der            BLOB NOT NULL,
    cert_sha256         TEXT NOT NULL UNIQUE,
    agent_type          INTEGER NOT NULL,
    netbios_name        TEXT,
    fqdn                TEXT,
    hash_algorithm      TEXT,
    status              TEXT NOT NULL CHECK (status IN ('approved', 'pending', 'rejected')),
    registered_by_proxy TEXT COLLATE NOCASE REFERENCES imported_certs(smsid),
    first_seen          TEXT NOT NULL,
    last_seen           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clients_by_proxy ON clients(registered_by_proxy);
CREATE TABLE IF NOT EXISTS imported_certs (
    smsid       TEXT PRIMARY KEY COLLATE NOCASE,
    cert_der    BLOB NOT NULL,
    cert_sha256 TEXT NOT NULL UNIQUE,
    subject     TEXT NOT NULL,
    blocked     INTEGER NOT NULL DEFAULT 0,
    imported_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    peer     TEXT NOT NULL,
    endpoint TEXT,
    reason   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    smsid  TEXT COLLATE NOCASE,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT UNIQUE,
    smsid       TEXT COLLATE NOCASE,
    endpoint    TEXT NOT NULL,
    received_at TEXT NOT NULL,
    body        TEXT NOT NULL
);
";

/// Approval state of a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientStatus {
    Approved,
    Pending,
    Rejected,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Approved => "approved",
            ClientStatus::Pending => "pending",
            ClientStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<ClientStatus> {
        match s {
            "approved" => Ok(ClientStatus::Approved),
            "pending" => Ok(ClientStatus::Pending),
            "rejected" => Ok(ClientStatus::Rejected),
            other => Err(rusqlite::Error::InvalidColumnType(
                0,
                format!("status {other}"),
                rusqlite::types::Type::Text,
            )),
        }
    }
}

/// One registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    pub smsid: String,
    pub cert_der: Vec<u8>,
    pub cert_sha256: String,
    pub agent_type: u8,
    pub netbios_name: Option<String>,
    pub fqdn: Option<String>,
    pub hash_algorithm: Option<String>,
    pub status: ClientStatus,
    pub registered_by_proxy: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
}

/// A new client to record.
#[derive(Clone, Debug)]
pub struct NewClient<'a> {
    pub smsid: &'a str,
    pub cert_der: &'a [u8],
    pub agent_type: u8,
    pub netbios_name: Option<&'a str>,
    pub fqdn: Option<&'a str>,
    pub hash_algorithm: Option<&'a str>,
    pub status: ClientStatus,
    pub registered_by_proxy: Option<&'a str>,
}

/// A certificate imported by the administrator (an ISV proxy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedCertRow {
    pub smsid: String,
    pub cert_der: Vec<u8>,
    pub cert_sha256: String,
    pub subject: String,
    pub blocked: bool,
    pub imported_at: String,
}

/// One refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectionRow {
    pub id: i64,
    pub at: String,
    pub peer: String,
    pub endpoint: Option<String>,
    pub reason: String,
}

/// One event (registered, confirmed, approved, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub at: String,
    pub smsid: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// The site database. One connection; the server shares it behind a mutex.
pub struct SiteDb {
    conn: Connection,
}

const CLIENT_COLUMNS: &str = "smsid, cert_der, cert_sha256, agent_type, netbios_name, fqdn, \
     hash_algorithm, status, registered_by_proxy, first_seen, last_seen";

fn client_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(ClientRow {
        smsid: r.get(0)?,
        cert_der: r.get(1)?,
        cert_sha256: r.get(2)?,
        agent_type: r.get(3)?,
        netbios_name: r.get(4)?,
        fqdn: r.get(5)?,
        hash_algorithm: r.get(6)?,
        status: ClientStatus::parse(&r.get::<_, String>(7)?)?,
        registered_by_proxy: r.get(8)?,
        first_seen: r.get(9)?,
        last_seen: r.get(10)?,
    })
}

fn imported_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImportedCertRow> {
    Ok(ImportedCertRow {
        smsid: r.get(0)?,
        cert_der: r.get(1)?,
        cert_sha256: r.get(2)?,
        subject: r.get(3)?,
        blocked: r.get(4)?,
        imported_at: r.get(5)?,
    })
}

impl SiteDb {
    /// Opens (creating if needed) the database at `path`, in WAL mode.
    pub fn open(path: impl AsRef<Path>) -> anyhow::Result<SiteDb> {
        let path = path.as_ref();
        let conn = Connection::open(path)
            .with_context(|| format!("opening site database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "database refused WAL mode ({mode})"
        );
        conn.execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;")?;
        conn.execute_batch(SCHEMA)
            .context("creating the site database schema")?;
        Ok(SiteDb { conn })
    }

    /// All clients, oldest first.
    pub fn clients(&self) -> anyhow::Result<Vec<ClientRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY first_seen, rowid"
        ))?;
        let rows = st.query_map([], client_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The client with this SMSID (compared case-insensitively).
    pub fn client(&self, smsid: &str) -> anyhow::Result<Option<ClientRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE smsid = ?1"),
                [smsid],
                client_from_row,
            )
            .optional()?)
    }

    /// The client registered with this certificate (SHA-256 thumbprint, hex upper).
    pub fn client_by_thumbprint(&self, thumbprint: &str) -> anyhow::Result<Option<ClientRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE cert_sha256 = ?1"),
                [thumbprint],
                client_from_row,
            )
            .optional()?)
    }

    /// Records a new client.
    pub fn insert_client(&self, c: &NewClient<'_>) -> anyhow::Result<()> {
        let now = utc_timestamp();
        self.conn.execute(
            &format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"
            ),
            params![
                c.smsid,
                c.cert_der,
                verify::thumbprint(c.cert_der),
                c.agent_type,
                c.netbios_name,
                c.fqdn,
                c.hash_algorithm,
                c.status.as_str(),
                c.registered_by_proxy,
                now
            ],
        )?;
        self.event(
            Some(c.smsid),
            "registered",
            &format!("agent type {}, {}", c.agent_type, c.status.as_str()),
        )?;
        Ok(())
    }

    /// Updates last-seen time and names of a client that registered again.
    pub fn touch_client(
        &self,
        smsid: &str,
        netbios: Option<&str>,
        fqdn: Option<&str>,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE clients SET last_seen = ?2, netbios_name = COALESCE(?3, netbios_name), \
             fqdn = COALESCE(?4, fqdn) WHERE smsid = ?1",
            params![smsid, utc_timestamp(), netbios, fqdn],
        )?;
        Ok(())
    }

    fn set_status(&self, smsid: &str, status: ClientStatus) -> anyhow::Result<bool> {
        let n = self.conn.execute(
            "UPDATE clients SET status = ?2 WHERE smsid = ?1",
            params![smsid.trim(), status.as_str()],
        )?;
        if n > 0 {
            self.event(Some(smsid.trim()), status.as_str(), "by administrator")?;
        }
        Ok(n > 0)
    }

    /// Approves a client; false if no client has this SMSID.
    pub fn approve(&self, smsid: &str) -> anyhow::Result<bool> {
        self.set_status(smsid, ClientStatus::Approved)
    }

    /// Blocks a client (its registrations and confirmations then get Status 3); false if unknown.
    pub fn reject(&self, smsid: &str) -> anyhow::Result<bool> {
        self.set_status(smsid, ClientStatus::Rejected)
    }

    /// Logs a refused request.
    pub fn log_rejection(
        &self,
        peer: &str,
        endpoint: Option<&str>,
        reason: &str,
    ) -> anyhow::Result<()> {
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

    /// Logs an event.
    pub fn event(&self, smsid: Option<&str>, kind: &str, detail: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO events (at, smsid, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![utc_timestamp(), smsid, kind, detail],
        )?;
        Ok(())
    }

    /// All events, oldest first.
    pub fn events(&self) -> anyhow::Result<Vec<EventRow>> {
        let mut st = self
            .conn
            .prepare("SELECT id, at, smsid, kind, detail FROM events ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(EventRow {
                id: r.get(0)?,
                at: r.get(1)?,
                smsid: r.get(2)?,
                kind: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Imports a certificate (DER) as the administrator does for an ISV proxy; returns the SMSID
    /// the site assigned to it. Importing the same certificate again returns the same SMSID.
    pub fn import_cert(&self, der: &[u8]) -> anyhow::Result<String> {
        let cert = verify::parse_cert(der).context("not a usable certificate")?;
        if let Some(existing) = self.imported_by_thumbprint(&cert.thumbprint)? {
            return Ok(existing.smsid);
        }
        anyhow::ensure!(
            self.client_by_thumbprint(&cert.thumbprint)?.is_none(),
            "this certificate is already registered as an ordinary client"
        );
        let smsid = new_smsid();
        self.conn.execute(
            "INSERT INTO imported_certs (smsid, cert_der, cert_sha256, subject, imported_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![smsid, der, cert.thumbprint, cert.subject, utc_timestamp()],
        )?;
        self.event(Some(&smsid), "imported", &cert.subject)?;
        Ok(smsid)
    }

    /// The imported certificate with this SMSID.
    pub fn imported_cert(&self, smsid: &str) -> anyhow::Result<Option<ImportedCertRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT smsid, cert_der, cert_sha256, subject, blocked, imported_at \
                 FROM imported_certs WHERE smsid = ?1",
                [smsid],
                imported_from_row,
            )
            .optional()?)
    }

    /// The imported certificate with this thumbprint.
    pub fn imported_by_thumbprint(
        &self,
        thumbprint: &str,
    ) -> anyhow::Result<Option<ImportedCertRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT smsid, cert_der, cert_sha256, subject, blocked, imported_at \
                 FROM imported_certs WHERE cert_sha256 = ?1",
                [thumbprint],
                imported_from_row,
            )
            .optional()?)
    }

    /// All imported certificates.
    pub fn imported_certs(&self) -> anyhow::Result<Vec<ImportedCertRow>> {
        let mut st = self.conn.prepare(
            "SELECT smsid, cert_der, cert_sha256, subject, blocked, imported_at \
             FROM imported_certs ORDER BY imported_at, rowid",
        )?;
        let rows = st.query_map([], imported_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// True if this SMSID is taken by a client or an imported certificate.
    pub fn smsid_in_use(&self, smsid: &str) -> anyhow::Result<bool> {
        Ok(self.client(smsid)?.is_some() || self.imported_cert(smsid)?.is_some())
    }

    /// Stores a received message (for the endpoints to come); false if its message ID was seen before.
    pub fn store_message(
        &self,
        message_id: &str,
        smsid: Option<&str>,
        endpoint: &str,
        body: &str,
    ) -> anyhow::Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO messages (message_id, smsid, endpoint, received_at, body) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![message_id, smsid, endpoint, utc_timestamp(), body],
        )?;
        Ok(n == 1)
    }
}

/// Accepts `GUID:…` in any case and returns the stored spelling's normal form, or the input.
pub fn smsid_key(s: &str) -> String {
    normalize_smsid(s.trim()).unwrap_or_else(|| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, SiteDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = SiteDb::open(dir.path().join("site.db")).unwrap();
        (dir, db)
    }

    #[test]
    fn wal_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        {
            let db = SiteDb::open(&p).unwrap();
            db.log_rejection("1.2.3.4:5", None, "because").unwrap();
        }
        let db = SiteDb::open(&p).unwrap();
        let mode: String = db
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let r = db.rejections().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reason, "because");
    }

    #[test]
    fn clients_approve_reject() {
        let (_d, db) = db();
        let smsid = new_smsid();
        db.insert_client(&NewClient {
            smsid: &smsid,
            cert_der: b"not really a cert",
            agent_type: 0,
            netbios_name: Some("DEV1"),
            fqdn: None,
            hash_algorithm: None,
            status: ClientStatus::Pending,
            registered_by_proxy: None,
        })
        .unwrap();
        let lower = smsid.to_ascii_lowercase();
        assert_eq!(
            db.client(&lower).unwrap().unwrap().status,
            ClientStatus::Pending
        );
        assert!(db.approve(&lower).unwrap());
        assert_eq!(db.clients().unwrap()[0].status, ClientStatus::Approved);
        assert!(db.reject(&smsid).unwrap());
        assert_eq!(db.clients().unwrap()[0].status, ClientStatus::Rejected);
        assert!(!db
            .approve("GUID:00000000-0000-0000-0000-000000000000")
            .unwrap());
        let t = verify::thumbprint(b"not really a cert");
        assert_eq!(db.client_by_thumbprint(&t).unwrap().unwrap().smsid, smsid);
        assert!(db.smsid_in_use(&smsid).unwrap());
        // The same certificate cannot be recorded twice.
        assert!(db
            .insert_client(&NewClient {
                smsid: &new_smsid(),
                cert_der: b"not really a cert",
                agent_type: 0,
                netbios_name: None,
                fqdn: None,
                hash_algorithm: None,
                status: ClientStatus::Approved,
                registered_by_proxy: None,
            })
            .is_err());
        assert!(db.events().unwrap().iter().any(|e| e.kind == "approved"));
    }

    #[test]
    fn import_refuses_garbage() {
        let (_d, db) = db();
        assert!(db.import_cert(b"garbage").is_err());
        assert!(db.imported_certs().unwrap().is_empty());
    }

    #[test]
    fn message_ids_are_unique() {
        let (_d, db) = db();
        assert!(db
            .store_message("{A}", None, "MP_DdrEndpoint", "<x/>")
            .unwrap());
        assert!(!db
            .store_message("{A}", None, "MP_DdrEndpoint", "<x/>")
            .unwrap());
    }
}
