//! The site database (SQLite, WAL): registered clients, certificates imported by the administrator
//! (ISV proxies), the rejection log, an event log, the store of accepted management messages (DDR,
//! inventory, status, state; unique per SMSID and message ID), and policies with their assignments
//! and the log of policy body downloads.

use super::util::{new_message_id, new_smsid, normalize_smsid, utc_timestamp};
use super::verify;
use crate::group_commit::{GroupWriter, WriterConnection};
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
CREATE TABLE IF NOT EXISTS policy_fetches (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    smsid     TEXT NOT NULL COLLATE NOCASE,
    policy_id TEXT NOT NULL,
    version   TEXT NOT NULL
);
";

/// Characters allowed in a policy ID (no `.`: the body location is `{id}.{version}`).
fn valid_policy_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"{}-_".contains(&b))
}

/// Characters allowed in a policy version (`1.00`, `2_00`, `7`).
fn valid_policy_version(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._".contains(&b))
}

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

/// What [`SiteDb::insert_client`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Inserted {
    /// The client was recorded.
    New,
    /// Nothing written: the certificate (`cert_sha256`) or the SMSID is taken already.
    Conflict,
}

/// A UNIQUE or PRIMARY KEY constraint failed (other constraints, e.g. foreign keys, are errors).
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
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

/// Who a policy is assigned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyTarget<'a> {
    /// One client (SMSID).
    Client(&'a str),
    /// Every client of the site.
    All,
}

/// A policy to publish and assign.
#[derive(Clone, Debug)]
pub struct NewPolicy<'a> {
    /// `[A-Za-z0-9{}_-]`, e.g. `{5C4D3A3E-…}`.
    pub policy_id: &'a str,
    /// `[A-Za-z0-9._]`, e.g. `1.00`.
    pub version: &'a str,
    pub target: PolicyTarget<'a>,
    /// `PolicyCategory`; `None` → [`DEFAULT_POLICY_CATEGORY`].
    pub category: Option<&'a str>,
    /// `PolicyFlags` bit mask (spec §5).
    pub flags: u32,
    /// The policy body XML served at `/SMS_MP/.sms_pol?{id}.{version}`.
    pub body: &'a str,
}

/// `PolicyCategory` of a policy added without one [profile].
pub const DEFAULT_POLICY_CATEGORY: &str = "Custom";
/// `PolicyType` of every policy the emulator serves (machine policy only) [profile].
pub const POLICY_TYPE: &str = "Machine";

/// One policy assignment with its policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRow {
    /// `{GUID}` upper case.
    pub assignment_id: String,
    pub policy_id: String,
    pub version: String,
    pub policy_type: String,
    pub category: String,
    pub flags: u32,
    /// `None`: assigned to every client.
    pub target_smsid: Option<String>,
    pub body: String,
    /// When the assignment was made.
    pub assigned_at: String,
}

impl PolicyRow {
    /// `{id}.{version}`: the query of the body's location.
    pub fn location_query(&self) -> String {
        format!("{}.{}", self.policy_id, self.version)
    }
}

/// One download of a policy body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFetchRow {
    pub id: i64,
    pub at: String,
    pub smsid: String,
    pub policy_id: String,
    pub version: String,
}

const POLICY_COLUMNS: &str = "a.assignment_id, p.policy_id, p.version, p.policy_type, \
     p.category, p.flags, a.target_smsid, p.body, a.created_at";

fn policy_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PolicyRow> {
    Ok(PolicyRow {
        assignment_id: r.get(0)?,
        policy_id: r.get(1)?,
        version: r.get(2)?,
        policy_type: r.get(3)?,
        category: r.get(4)?,
        flags: r.get(5)?,
        target_smsid: r.get(6)?,
        body: r.get(7)?,
        assigned_at: r.get(8)?,
    })
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
        migrate_messages_v0(&conn)?;
        conn.execute_batch(SCHEMA)
            .context("creating the site database schema")?;
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
            .prepare_cached(&format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE smsid = ?1"
            ))?
            .query_row([smsid], client_from_row)
            .optional()?)
    }

    /// The client registered with this certificate (SHA-256 thumbprint, hex upper).
    pub fn client_by_thumbprint(&self, thumbprint: &str) -> anyhow::Result<Option<ClientRow>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE cert_sha256 = ?1"
            ))?
            .query_row([thumbprint], client_from_row)
            .optional()?)
    }

    /// Records a new client; [`Inserted::Conflict`] (nothing written) if a client with this
    /// certificate or SMSID exists already, e.g. a concurrent registration of the same certificate
    /// got there first between the caller's look-up and this insert.
    pub fn insert_client(&self, c: &NewClient<'_>) -> anyhow::Result<Inserted> {
        if let Some(w) = &self.writer {
            let c = OwnedNewClient::from(c);
            return w.run(move |db| db.insert_client_here(&c.borrow()));
        }
        if !self.conn.is_autocommit() {
            // Inside a write of the writer thread: its savepoint keeps client and event together.
            return self.insert_client_here(c);
        }
        // The client and its "registered" event in one transaction: one commit, not two (each
        // commit is a WAL append and a lock round), and never a client without its event.
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let inserted = self.insert_client_here(c)?;
        if inserted == Inserted::New {
            tx.commit()?;
        }
        Ok(inserted)
    }

    /// [`insert_client`](Self::insert_client) inside the caller's transaction or savepoint.
    fn insert_client_here(&self, c: &NewClient<'_>) -> anyhow::Result<Inserted> {
        let now = utc_timestamp();
        let inserted = self
            .conn
            .prepare_cached(&format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"
            ))?
            .execute(params![
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
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(Inserted::Conflict),
            Err(e) => return Err(e.into()),
        }
        self.event(
            Some(c.smsid),
            "registered",
            &format!("agent type {}, {}", c.agent_type, c.status.as_str()),
        )?;
        Ok(Inserted::New)
    }

    /// Updates last-seen time and names of a client that registered again.
    pub fn touch_client(
        &self,
        smsid: &str,
        netbios: Option<&str>,
        fqdn: Option<&str>,
    ) -> anyhow::Result<()> {
        if let Some(w) = &self.writer {
            let (smsid, netbios, fqdn) = (smsid.to_owned(), own(netbios), own(fqdn));
            return w.run(move |db| db.touch_client(&smsid, netbios.as_deref(), fqdn.as_deref()));
        }
        self.conn
            .prepare_cached(
                "UPDATE clients SET last_seen = ?2, netbios_name = COALESCE(?3, netbios_name), \
                 fqdn = COALESCE(?4, fqdn) WHERE smsid = ?1",
            )?
            .execute(params![smsid, utc_timestamp(), netbios, fqdn])?;
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
            params![smsid, der, cert.thumbprint, cert.subject(), utc_timestamp()],
        )?;
        self.event(Some(&smsid), "imported", &cert.subject())?;
        Ok(smsid)
    }

    /// The imported certificate with this SMSID.
    pub fn imported_cert(&self, smsid: &str) -> anyhow::Result<Option<ImportedCertRow>> {
        // Cached: registration looks every certificate up here (a fresh prepare cost more
        // than the query).
        Ok(self
            .conn
            .prepare_cached(
                "SELECT smsid, cert_der, cert_sha256, subject, blocked, imported_at \
                 FROM imported_certs WHERE smsid = ?1",
            )?
            .query_row([smsid], imported_from_row)
            .optional()?)
    }

    /// The imported certificate with this thumbprint.
    pub fn imported_by_thumbprint(
        &self,
        thumbprint: &str,
    ) -> anyhow::Result<Option<ImportedCertRow>> {
        // Cached: registration looks every certificate up here (a fresh prepare cost more
        // than the query).
        Ok(self
            .conn
            .prepare_cached(
                "SELECT smsid, cert_der, cert_sha256, subject, blocked, imported_at \
                 FROM imported_certs WHERE cert_sha256 = ?1",
            )?
            .query_row([thumbprint], imported_from_row)
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

    /// Publishes a policy (if new) and assigns it; returns the assignment ID (`{GUID}`). The
    /// same policy assigned to the same target again returns the existing assignment. A policy
    /// ID and version are immutable: publishing them again with another body, category or flags
    /// is refused (publish a new version instead).
    pub fn add_policy(&self, p: &NewPolicy<'_>) -> anyhow::Result<String> {
        anyhow::ensure!(
            valid_policy_id(p.policy_id),
            "policy ID {:?} must be 1-128 characters of A-Z a-z 0-9 {{ }} - _",
            p.policy_id
        );
        anyhow::ensure!(
            valid_policy_version(p.version),
            "policy version {:?} must be 1-32 characters of A-Z a-z 0-9 . _",
            p.version
        );
        let category = p.category.unwrap_or(DEFAULT_POLICY_CATEGORY);
        anyhow::ensure!(
            !category.is_empty()
                && category.len() <= 128
                && !category.chars().any(char::is_control),
            "policy category must be 1-128 printable characters"
        );
        anyhow::ensure!(
            p.body.trim_start().starts_with('<') && !p.body.contains('\0'),
            "the policy body must be XML text"
        );
        super::messages::check_no_dtd(p.body).map_err(|e| anyhow::anyhow!("policy body: {e}"))?;
        let target = match p.target {
            PolicyTarget::All => None,
            PolicyTarget::Client(s) => {
                let key = smsid_key(s);
                let row = self
                    .client(&key)?
                    .with_context(|| format!("no client {key} in the site database"))?;
                Some(row.smsid)
            }
        };
        let existing: Option<(String, String, u32)> = self
            .conn
            .query_row(
                "SELECT body, category, flags FROM policies WHERE policy_id = ?1 AND version = ?2",
                params![p.policy_id, p.version],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        match existing {
            Some((body, cat, flags)) => anyhow::ensure!(
                body == p.body && cat == category && flags == p.flags,
                "policy {} version {} already exists with another body, category or flags; \
                 publish a new version",
                p.policy_id,
                p.version
            ),
            None => {
                self.conn.execute(
                    "INSERT INTO policies (policy_id, version, policy_type, category, flags, body, \
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        p.policy_id,
                        p.version,
                        POLICY_TYPE,
                        category,
                        p.flags,
                        p.body,
                        utc_timestamp()
                    ],
                )?;
            }
        }
        let assigned: Option<String> = self
            .conn
            .query_row(
                "SELECT assignment_id FROM policy_assignments WHERE policy_id = ?1 AND version = ?2 \
                 AND target_smsid IS ?3",
                params![p.policy_id, p.version, target],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = assigned {
            return Ok(id);
        }
        let id = new_message_id();
        self.conn.execute(
            "INSERT INTO policy_assignments (assignment_id, policy_id, version, target_smsid, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, p.policy_id, p.version, target, utc_timestamp()],
        )?;
        self.event(
            target.as_deref(),
            "policy-assigned",
            &format!(
                "{}.{} ({}) to {}",
                p.policy_id,
                p.version,
                id,
                target.as_deref().unwrap_or("all clients")
            ),
        )?;
        Ok(id)
    }

    /// Every policy assignment, oldest first.
    pub fn policies(&self) -> anyhow::Result<Vec<PolicyRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {POLICY_COLUMNS} FROM policy_assignments a JOIN policies p \
             ON p.policy_id = a.policy_id AND p.version = a.version ORDER BY a.rowid"
        ))?;
        let rows = st.query_map([], policy_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The assignments that apply to `smsid` (its own and those for every client), oldest first.
    pub fn policies_for(&self, smsid: &str) -> anyhow::Result<Vec<PolicyRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {POLICY_COLUMNS} FROM policy_assignments a JOIN policies p \
             ON p.policy_id = a.policy_id AND p.version = a.version \
             WHERE a.target_smsid IS NULL OR a.target_smsid = ?1 ORDER BY a.rowid"
        ))?;
        let rows = st.query_map([smsid_key(smsid)], policy_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// True if a policy with this ID and version exists (assigned or not).
    pub fn policy_exists(&self, policy_id: &str, version: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM policies WHERE policy_id = ?1 AND version = ?2",
                params![policy_id, version],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records that `smsid` downloaded a policy body (and logs a `policy-fetch` event).
    pub fn record_policy_fetch(
        &self,
        smsid: &str,
        policy_id: &str,
        version: &str,
    ) -> anyhow::Result<()> {
        if let Some(w) = &self.writer {
            let (s, p, v) = (smsid.to_owned(), policy_id.to_owned(), version.to_owned());
            return w.run(move |db| db.record_policy_fetch(&s, &p, &v));
        }
        self.conn.execute(
            "INSERT INTO policy_fetches (at, smsid, policy_id, version) VALUES (?1, ?2, ?3, ?4)",
            params![utc_timestamp(), smsid, policy_id, version],
        )?;
        self.event(
            Some(smsid),
            "policy-fetch",
            &format!("{policy_id}.{version}"),
        )
    }

    /// Every policy body download, oldest first.
    pub fn policy_fetches(&self) -> anyhow::Result<Vec<PolicyFetchRow>> {
        let mut st = self
            .conn
            .prepare("SELECT id, at, smsid, policy_id, version FROM policy_fetches ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(PolicyFetchRow {
                id: r.get(0)?,
                at: r.get(1)?,
                smsid: r.get(2)?,
                policy_id: r.get(3)?,
                version: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn own(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// A [`NewClient`] that can be sent to the writer thread.
struct OwnedNewClient {
    smsid: String,
    cert_der: Vec<u8>,
    agent_type: u8,
    netbios_name: Option<String>,
    fqdn: Option<String>,
    hash_algorithm: Option<String>,
    status: ClientStatus,
    registered_by_proxy: Option<String>,
}

impl From<&NewClient<'_>> for OwnedNewClient {
    fn from(c: &NewClient<'_>) -> Self {
        OwnedNewClient {
            smsid: c.smsid.to_owned(),
            cert_der: c.cert_der.to_vec(),
            agent_type: c.agent_type,
            netbios_name: own(c.netbios_name),
            fqdn: own(c.fqdn),
            hash_algorithm: own(c.hash_algorithm),
            status: c.status,
            registered_by_proxy: own(c.registered_by_proxy),
        }
    }
}

impl OwnedNewClient {
    fn borrow(&self) -> NewClient<'_> {
        NewClient {
            smsid: &self.smsid,
            cert_der: &self.cert_der,
            agent_type: self.agent_type,
            netbios_name: self.netbios_name.as_deref(),
            fqdn: self.fqdn.as_deref(),
            hash_algorithm: self.hash_algorithm.as_deref(),
            status: self.status,
            registered_by_proxy: self.registered_by_proxy.as_deref(),
        }
    }
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

/// Databases made before the message endpoints had a `messages` table without `kind` (never
/// written to): drop it when empty, else keep it as `messages_v0`, so the new schema applies.
fn migrate_messages_v0(conn: &Connection) -> anyhow::Result<()> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info('messages')")?;
    let cols: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    if cols.is_empty() || cols.iter().any(|c| c == "kind") {
        return Ok(());
    }
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
    if n == 0 {
        conn.execute_batch("DROP TABLE messages")?;
    } else {
        conn.execute_batch("ALTER TABLE messages RENAME TO messages_v0")?;
    }
    Ok(())
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
    fn old_messages_table_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(
                "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT \
                 UNIQUE, smsid TEXT, endpoint TEXT NOT NULL, received_at TEXT NOT NULL, body TEXT \
                 NOT NULL);",
            )
            .unwrap();
        }
        let db = SiteDb::open(&p).unwrap();
        assert!(db.messages(None).unwrap().is_empty());
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
