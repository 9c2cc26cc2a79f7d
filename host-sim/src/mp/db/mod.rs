//! The site database (SQLite, WAL): the schema, connections (one writer thread, a pool of
//! readers, the checkpoint thread) and the event log. Each table family has its own module:
//! [`clients`] (registered clients and certificates imported by the administrator), [`messages`]
//! (accepted management messages), [`rejections`] (refused requests), [`policy`] (policies,
//! assignments and body downloads), [`next_reply`] (registration replies an administrator
//! ordered).

mod clients;
mod messages;
mod next_reply;
mod policy;
mod rejections;

pub use clients::{ClientRow, ClientStatus, ImportedCertRow, Inserted, NewClient};
pub use messages::{MessageRow, NewMessage};
pub use next_reply::NextReply;
pub use policy::{
    NewPolicy, PolicyFetchRow, PolicyRow, PolicyTarget, DEFAULT_POLICY_CATEGORY, POLICY_TYPE,
};
pub use rejections::RejectionRow;

use super::util::{normalize_smsid, utc_timestamp};
use crate::group_commit::{GroupWriter, WriterConnection};
use anyhow::Context;
use rusqlite::{params, Connection};
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
    message_id  TEXT NOT NULL COLLATE NOCASE,
    smsid       TEXT NOT NULL COLLATE NOCASE,
    endpoint    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    via_proxy   TEXT COLLATE NOCASE,
    sent_time   TEXT,
    received_at TEXT NOT NULL,
    body        TEXT NOT NULL,
    UNIQUE (smsid, message_id)
);
CREATE TABLE IF NOT EXISTS policies (
    policy_id   TEXT NOT NULL COLLATE NOCASE,
    version     TEXT NOT NULL COLLATE NOCASE,
    policy_type TEXT NOT NULL,
    category    TEXT NOT NULL,
    flags       INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (policy_id, version)
);
CREATE TABLE IF NOT EXISTS policy_assignments (
    assignment_id TEXT PRIMARY KEY COLLATE NOCASE,
    policy_id     TEXT NOT NULL COLLATE NOCASE,
    version       TEXT NOT NULL COLLATE NOCASE,
    target_smsid  TEXT COLLATE NOCASE,
    created_at    TEXT NOT NULL,
    FOREIGN KEY (policy_id, version) REFERENCES policies(policy_id, version)
);
CREATE TABLE IF NOT EXISTS next_replies (
    smsid  TEXT PRIMARY KEY COLLATE NOCASE,
    reply  TEXT NOT NULL CHECK (reply IN ('reset', 'error', 'certificate-reset')),
    set_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_tampering (
    policy_id TEXT NOT NULL,
    version   TEXT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (policy_id, version),
    FOREIGN KEY (policy_id, version) REFERENCES policies(policy_id, version)
);
CREATE TABLE IF NOT EXISTS policy_fetches (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    smsid     TEXT NOT NULL COLLATE NOCASE,
    policy_id TEXT NOT NULL,
    version   TEXT NOT NULL
);
";

/// One event (registered, confirmed, approved, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub at: String,
    pub smsid: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// The site database. One connection; the server keeps a [`SiteDbPool`] of them.
pub struct SiteDb {
    conn: Connection,
    /// A server's connections hand the writes of the request path (registration, events,
    /// messages, rejections) to the pool's one writer thread (group commit, see
    /// [`crate::group_commit`]); `None` (e.g. the CLI): this connection writes itself.
    writer: Option<Writer>,
}

/// The site database's one writer thread (its handle ends the thread when the last is dropped).
pub type SiteWriter = GroupWriter<SiteDb>;
type Writer = SiteWriter;

impl WriterConnection for SiteDb {
    fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Connections to one site database for concurrent request handlers: each handler takes its own
/// for its reads (WAL: readers never wait), and the writes go to one [`Writer`] thread, so the
/// parsing and signature checks of requests run in parallel and writers never fight over
/// SQLite's write lock.
pub struct SiteDbPool {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<SiteDb>>,
    writer: Writer,
    /// Dropping it ends the checkpoint thread (after a last checkpoint).
    _checkpointer: std::sync::mpsc::Sender<()>,
}

/// How often the checkpoint thread moves the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Starts the thread that checkpoints the site database every [`CHECKPOINT_EVERY`] (`PASSIVE`:
/// it never waits for, or blocks, the writer or readers), on its own connection.
fn start_checkpointer(path: &Path) -> anyhow::Result<std::sync::mpsc::Sender<()>> {
    let conn = SiteDb::open(path)?.conn;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("mp-db-checkpoint".into())
        .spawn(move || loop {
            let last = !matches!(
                stopped.recv_timeout(CHECKPOINT_EVERY),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "site database checkpoint failed");
            }
            if last {
                break;
            }
        })?;
    Ok(stop)
}

impl SiteDbPool {
    /// Opens (creating if needed) the database at `path`, with one connection ready and the
    /// writer thread started.
    pub fn open(path: impl AsRef<Path>) -> anyhow::Result<SiteDbPool> {
        let path = path.as_ref().to_path_buf();
        let mut first = SiteDb::open(&path)?;
        let writer_conn = SiteDb::open(&path)?;
        // Checkpoints (copying the WAL into the database file, with its fsync) off the writer
        // thread: the writer only appends to the WAL, so a checkpoint never holds up a group
        // commit and the requests waiting for it.
        writer_conn
            .conn
            .pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = start_checkpointer(&path)?;
        let (writer, _thread) =
            GroupWriter::start(writer_conn, "mp-db-writer", "the site database")?;
        first.writer = Some(writer.clone());
        Ok(SiteDbPool {
            path,
            idle: std::sync::Mutex::new(vec![first]),
            writer,
            _checkpointer: checkpointer,
        })
    }

    /// The writer thread's handle, for writes awaited without blocking a thread
    /// ([`super::step::Step::run_async`]).
    pub fn writer(&self) -> &SiteWriter {
        &self.writer
    }

    /// An idle connection, or a new one; it goes back to the pool when dropped.
    pub fn get(&self) -> anyhow::Result<PooledDb<'_>> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let db = match idle {
            Some(db) => db,
            None => {
                let mut db = SiteDb::open(&self.path)?;
                db.writer = Some(self.writer.clone());
                db
            }
        };
        Ok(PooledDb {
            pool: self,
            db: Some(db),
        })
    }
}

/// A connection borrowed from a [`SiteDbPool`].
pub struct PooledDb<'a> {
    pool: &'a SiteDbPool,
    db: Option<SiteDb>,
}

impl std::ops::Deref for PooledDb<'_> {
    type Target = SiteDb;

    fn deref(&self) -> &SiteDb {
        self.db.as_ref().expect("present until drop")
    }
}

impl Drop for PooledDb<'_> {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(db);
        }
    }
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
        rejections::migrate(&conn).context("updating the rejections table")?;
        Ok(SiteDb { conn, writer: None })
    }

    /// Runs `write` (reads and writes as one unit) on the writer thread, inside its next group
    /// transaction, and returns once that committed; without a writer (the CLI, tests), right
    /// here on this connection. `write` must not use a writer itself (it gets the writer's own
    /// connection, which has none).
    pub fn write<R: Send + 'static>(
        &self,
        write: impl FnOnce(&SiteDb) -> anyhow::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        match &self.writer {
            Some(w) => w.run(write),
            None => write(self),
        }
    }

    /// Logs an event.
    pub fn event(&self, smsid: Option<&str>, kind: &str, detail: &str) -> anyhow::Result<()> {
        if let Some(w) = &self.writer {
            let (smsid, kind, detail) = (own(smsid), kind.to_owned(), detail.to_owned());
            return w.run(move |db| db.event(smsid.as_deref(), &kind, &detail));
        }
        self.conn
            .prepare_cached("INSERT INTO events (at, smsid, kind, detail) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![utc_timestamp(), smsid, kind, detail])?;
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
}

fn own(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// Accepts `GUID:…` in any case and returns the stored spelling's normal form, or the input.
pub fn smsid_key(s: &str) -> String {
    normalize_smsid(s.trim()).unwrap_or_else(|| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp::util::new_smsid;
    use crate::mp::verify;

    fn db() -> (tempfile::TempDir, SiteDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = SiteDb::open(dir.path().join("site.db")).unwrap();
        (dir, db)
    }

    /// `import-cert` takes an ISV proxy's own certificate only: a CA certificate and an MP's
    /// server certificate are refused with the rule they break, and nothing is imported.
    #[test]
    fn import_cert_refuses_ca_and_server_certificates() {
        use crate::pki::{CertKind, IssueParams, TestCa};
        let (dir, db) = db();
        let ca = TestCa::init(&dir.path().join("ca"), "Import Test CA", 30).unwrap();
        let err = db.import_cert(ca.cert_der()).unwrap_err();
        assert!(format!("{err:#}").contains("CA certificate"), "{err:#}");
        let server = ca
            .issue(&IssueParams::new("mp.example", CertKind::Server))
            .unwrap();
        let err = db.import_cert(&server.cert_der).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("neither SMS signing"), "{text}");
        assert!(
            text.contains("1.3.6.1.5.5.7.3.1"),
            "names the usages it has: {text}"
        );
        let proxy = ca
            .issue(&IssueParams::new("ISVPROXY", CertKind::Proxy))
            .unwrap();
        let smsid = db.import_cert(&proxy.cert_der).unwrap();
        assert!(normalize_smsid(&smsid).is_some(), "{smsid}");
        assert_eq!(db.import_cert(&proxy.cert_der).unwrap(), smsid);
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

    /// The writer never checkpoints; the checkpoint thread moves its commits into the database
    /// file itself (a copy of that file alone, without the WAL, holds them).
    #[test]
    fn the_checkpoint_thread_moves_commits_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("site.db");
        let pool = SiteDbPool::open(&p).unwrap();
        for i in 0..50 {
            pool.get()
                .unwrap()
                .log_rejection("1.2.3.4:5", None, &format!("reason {i}"))
                .unwrap();
        }
        let copy = dir.path().join("copy.db");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let in_file = loop {
            std::fs::copy(&p, &copy).unwrap();
            let n = SiteDb::open(&copy).unwrap().rejections().unwrap().len();
            if n == 50 || std::time::Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(CHECKPOINT_EVERY);
        };
        assert_eq!(in_file, 50);
        let auto: i64 = pool
            .writer
            .run(|db| {
                Ok(db
                    .conn
                    .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(
            auto, 0,
            "the writer leaves checkpoints to the checkpoint thread"
        );
    }

    #[test]
    fn clients_approve_reject() {
        let (_d, db) = db();
        let smsid = new_smsid();
        let inserted = db
            .insert_client(&NewClient {
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
        assert_eq!(inserted, Inserted::New);
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
        // The same certificate cannot be recorded twice: a conflict, not an error.
        assert_eq!(
            db.insert_client(&NewClient {
                smsid: &new_smsid(),
                cert_der: b"not really a cert",
                agent_type: 0,
                netbios_name: None,
                fqdn: None,
                hash_algorithm: None,
                status: ClientStatus::Approved,
                registered_by_proxy: None,
            })
            .unwrap(),
            Inserted::Conflict
        );
        // Nor an SMSID (compared case-insensitively).
        assert_eq!(
            db.insert_client(&NewClient {
                smsid: &lower,
                cert_der: b"another cert",
                agent_type: 0,
                netbios_name: None,
                fqdn: None,
                hash_algorithm: None,
                status: ClientStatus::Approved,
                registered_by_proxy: None,
            })
            .unwrap(),
            Inserted::Conflict
        );
        assert_eq!(db.clients().unwrap().len(), 1);
        // Other constraint failures stay errors: an unknown proxy (foreign key).
        assert!(db
            .insert_client(&NewClient {
                smsid: &new_smsid(),
                cert_der: b"third cert",
                agent_type: 8,
                netbios_name: None,
                fqdn: None,
                hash_algorithm: None,
                status: ClientStatus::Approved,
                registered_by_proxy: Some("GUID:00000000-0000-0000-0000-000000000000"),
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
    fn message_ids_are_unique_per_smsid() {
        let (_d, db) = db();
        let a = "GUID:11111111-2222-4333-8444-555555555555";
        let b = "GUID:11111111-2222-4333-8444-666666666666";
        let m = |smsid, id| NewMessage {
            message_id: id,
            smsid,
            endpoint: "MP_DdrEndpoint",
            kind: "ddr",
            via_proxy: None,
            sent_time: None,
            body: "<x/>",
        };
        assert!(db.store_message(&m(a, "{A}")).unwrap());
        assert!(!db.store_message(&m(a, "{a}")).unwrap());
        assert!(db.message_seen(a, "{a}").unwrap());
        assert!(!db.message_seen(b, "{A}").unwrap());
        assert!(db.store_message(&m(b, "{A}")).unwrap());
        assert_eq!(db.messages(None).unwrap().len(), 2);
        let only_a = db.messages(Some(&a.to_ascii_lowercase())).unwrap();
        assert_eq!(only_a.len(), 1);
        assert_eq!(
            (only_a[0].smsid.as_str(), only_a[0].kind.as_str()),
            (a, "ddr")
        );
    }

    #[test]
    fn policies_assign_and_list() {
        let (_d, db) = db();
        let smsid = new_smsid();
        let inserted = db
            .insert_client(&NewClient {
                smsid: &smsid,
                cert_der: b"c",
                agent_type: 0,
                netbios_name: None,
                fqdn: None,
                hash_algorithm: None,
                status: ClientStatus::Approved,
                registered_by_proxy: None,
            })
            .unwrap();
        assert_eq!(inserted, Inserted::New);
        let lower = smsid.to_ascii_lowercase();
        let p = |id, target, body| NewPolicy {
            policy_id: id,
            version: "1.00",
            target,
            category: None,
            flags: 0,
            body,
        };
        let a1 = db
            .add_policy(&p("{P1}", PolicyTarget::Client(&smsid), "<Policy/>"))
            .unwrap();
        // Idempotent for the same target; another body for the same version is refused.
        assert_eq!(
            db.add_policy(&p("{P1}", PolicyTarget::Client(&lower), "<Policy/>"))
                .unwrap(),
            a1
        );
        assert!(db
            .add_policy(&p("{P1}", PolicyTarget::All, "<Other/>"))
            .is_err());
        let a2 = db
            .add_policy(&p("{P1}", PolicyTarget::All, "<Policy/>"))
            .unwrap();
        assert_ne!(a1, a2);
        db.add_policy(&p("P2", PolicyTarget::All, "<P2/>")).unwrap();
        for bad in [
            p("a.b", PolicyTarget::All, "<x/>"),
            p("", PolicyTarget::All, "<x/>"),
            p("P3", PolicyTarget::All, "not xml"),
            p("P3", PolicyTarget::All, "<!DOCTYPE x><x/>"),
            p(
                "P3",
                PolicyTarget::Client("GUID:00000000-0000-0000-0000-000000000000"),
                "<x/>",
            ),
        ] {
            assert!(db.add_policy(&bad).is_err(), "{bad:?}");
        }
        let all = db.policies().unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].target_smsid.as_deref(), Some(smsid.as_str()));
        assert_eq!(all[0].category, DEFAULT_POLICY_CATEGORY);
        assert_eq!(all[0].location_query(), "{P1}.1.00");
        assert_eq!(db.policies_for(&smsid).unwrap().len(), 3);
        assert_eq!(db.policies_for(&new_smsid()).unwrap().len(), 2);
        assert!(db.policy_exists("{p1}", "1.00").unwrap());
        assert!(!db.policy_exists("{P1}", "2.00").unwrap());
        db.record_policy_fetch(&smsid, "{P1}", "1.00").unwrap();
        let f = db.policy_fetches().unwrap();
        assert_eq!((f.len(), f[0].policy_id.as_str()), (1, "{P1}"));
    }
}
