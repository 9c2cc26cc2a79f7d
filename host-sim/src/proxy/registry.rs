//! The proxy's device registry: for every device the key and certificate the proxy made for it,
//! its name and its registration state (SMSID), and the messages queued for it while the MP
//! cannot take them, in one SQLite database `DIR/devices.db`.
//!
//! Why one database and not a directory per device: the per-device directory (five fsynced
//! files, an inode and a directory entry each) made each registration cost several fsyncs and
//! ext4 inode allocations whose cost grew with the number of devices. Here a registration is at
//! most two row writes.
//!
//! Durability: WAL mode with `synchronous=FULL`, so a write is on disk (the WAL fsynced) before
//! its future resolves; a device's key and SMSID survive a crash or a restart. Writes go to one
//! writer thread ([`crate::group_commit`], shared with the MP's site database) that commits
//! whatever has queued up in one transaction (one fsync for many devices, and no runtime thread
//! ever waits on the disk). Reads use their own
//! connection (WAL readers do not wait for the writer).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::Smsid;
use mpagent_core::time::UnixTime;
use rusqlite::{params, Connection, OptionalExtension};

use crate::group_commit::GroupWriter;

/// The registry's database, in the proxy's state directory.
pub const REGISTRY_FILE: &str = "devices.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    key_pk8     BLOB NOT NULL,
    cert_der    BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('unregistered', 'pending', 'registered', 'rejected')),
    smsid       TEXT,
    rejected_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queues (
    id          TEXT PRIMARY KEY NOT NULL REFERENCES devices (id),
    image       BLOB NOT NULL
) WITHOUT ROWID;
";

/// Everything the proxy keeps for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The device's ID (`HELLO`).
    pub id: String,
    /// The name it last registered with.
    pub name: String,
    /// The key the proxy made for it (PKCS#8 DER, the proxy's key kind).
    pub key_pk8: Vec<u8>,
    /// Its self-signed certificate (DER), what the MP registered.
    pub cert_der: Vec<u8>,
    /// Its registration.
    pub state: RegistrationState,
}

/// The registry: reads on the calling thread, writes on the writer thread.
pub struct Registry {
    path: PathBuf,
    reader: Mutex<Connection>,
    writer: Option<GroupWriter<Connection>>,
    /// Joined on drop, so the last writes are committed and the file closed when it returns.
    thread: Option<std::thread::JoinHandle<()>>,
}

fn connect(path: &Path) -> Result<Connection> {
    make_private(path)?;
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// The registry holds every device's private key: it is created 0600 (SQLite gives its journal
/// and WAL files the database's mode), and an existing one readable by others is made 0600.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private (chmod 600)", path.display()))?;
        tracing::warn!(
            "{} (every device's private key) was readable by others (mode {:o}); made it 0600",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

impl Registry {
    /// Open (creating) `state_dir/devices.db`.
    pub fn open(state_dir: &Path) -> Result<Registry> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let path = state_dir.join(REGISTRY_FILE);
        let conn = connect(&path)?;
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("creating the schema of {}", path.display()))?;
        let reader = connect(&path)?;
        let (writer, thread) = GroupWriter::start(conn, "mpx-registry", "the registry")?;
        Ok(Registry {
            path,
            reader: Mutex::new(reader),
            writer: Some(writer),
            thread: Some(thread),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self
            .reader
            .lock()
            .map_err(|_| anyhow!("the registry's reader lock is poisoned"))?;
        f(&conn).with_context(|| format!("reading {}", self.path.display()))
    }

    /// A device's registration (`None`: the proxy does not know it).
    pub fn state(&self, id: &str) -> Result<Option<RegistrationState>> {
        let row = self.read(|c| {
            c.prepare_cached("SELECT state, smsid, rejected_at FROM devices WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })?;
        row.map(|(s, id, at): (String, Option<String>, Option<i64>)| decode_state(&s, id, at))
            .transpose()
    }

    /// Everything kept for a device.
    pub fn device(&self, id: &str) -> Result<Option<DeviceRecord>> {
        let row = self.read(|c| {
            c.prepare_cached(SELECT_DEVICE)?
                .query_row([id], row_parts)
                .optional()
        })?;
        row.map(record).transpose()
    }

    /// Every device and its registration, by ID.
    pub fn all(&self) -> Result<Vec<(String, RegistrationState)>> {
        let rows = self.read(|c| {
            c.prepare_cached("SELECT id, state, smsid, rejected_at FROM devices ORDER BY id")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<(String, String, Option<String>, Option<i64>)>>>()
        })?;
        rows.into_iter()
            .map(|(id, s, smsid, at)| Ok((id, decode_state(&s, smsid, at)?)))
            .collect()
    }

    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.writer
            .as_ref()
            .ok_or_else(|| anyhow!("the registry is closed"))?
            .run_async(write)
            .await
    }

    /// Store a new device unless one with its ID exists; returns what is stored (durably).
    pub async fn insert_new(&self, record: DeviceRecord) -> Result<DeviceRecord> {
        self.write(move |conn| {
            put_row(conn, INSERT_NEW, &record)?;
            self::record(
                conn.prepare_cached(SELECT_DEVICE)?
                    .query_row([&record.id], row_parts)?,
            )
        })
        .await
    }

    /// Store `record`, replacing the device's if any (tools, tests: a copied mapping).
    pub async fn put(&self, record: DeviceRecord) -> Result<()> {
        self.write(move |conn| Ok(put_row(conn, UPSERT, &record).map(drop)?))
            .await
    }

    /// Store a known device's name and registration (durably).
    pub async fn set_registration(
        &self,
        id: &str,
        name: &str,
        state: RegistrationState,
    ) -> Result<()> {
        let (id, name) = (id.to_string(), name.to_string());
        self.write(move |conn| {
            let (s, smsid, at) = encode_state(state);
            let n = conn
                .prepare_cached(
                    "UPDATE devices SET name = ?2, state = ?3, smsid = ?4, rejected_at = ?5 \
                     WHERE id = ?1",
                )?
                .execute(params![id, name, s, smsid, at])?;
            match n {
                1 => Ok(()),
                _ => Err(anyhow!("device {id} is not in the registry")),
            }
        })
        .await
    }
}

impl Registry {
    /// The image of a device's queue (`None`: nothing is queued for it).
    pub fn queue_image(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.prepare_cached("SELECT image FROM queues WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()
        })
    }

    /// Keep the image of a device's queue (`None`: its queue is empty), durably.
    pub async fn set_queue_image(&self, id: &str, image: Option<Vec<u8>>) -> Result<()> {
        let id = id.to_string();
        self.write(move |conn| {
            match image {
                Some(image) => conn
                    .prepare_cached("INSERT OR REPLACE INTO queues (id, image) VALUES (?1, ?2)")?
                    .execute(params![id, image])?,
                None => conn
                    .prepare_cached("DELETE FROM queues WHERE id = ?1")?
                    .execute([&id])?,
            };
            Ok(())
        })
        .await
    }

    /// Replace a device's key and certificate (the site asked for new ones: CertificateReset)
    /// together with the registration the site gave them, in one row write: a crash leaves
    /// the old identity or the new one, whole.
    pub async fn replace_identity(
        &self,
        id: &str,
        key_pk8: Vec<u8>,
        cert_der: Vec<u8>,
        state: RegistrationState,
    ) -> Result<()> {
        let id = id.to_string();
        self.write(move |conn| {
            let (s, smsid, at) = encode_state(state);
            let n = conn
                .prepare_cached(
                    "UPDATE devices SET key_pk8 = ?2, cert_der = ?3, state = ?4, smsid = ?5, \
                     rejected_at = ?6 WHERE id = ?1",
                )?
                .execute(params![id, key_pk8, cert_der, s, smsid, at])?;
            match n {
                1 => Ok(()),
                _ => Err(anyhow!("device {id} is not in the registry")),
            }
        })
        .await
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it committed what was queued.
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type RowParts = (
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    Option<String>,
    Option<i64>,
);

fn row_parts(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowParts> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn record((id, name, key_pk8, cert_der, s, smsid, at): RowParts) -> Result<DeviceRecord> {
    let state = decode_state(&s, smsid, at).with_context(|| format!("device {id}"))?;
    Ok(DeviceRecord {
        id,
        name,
        key_pk8,
        cert_der,
        state,
    })
}

fn encode_state(state: RegistrationState) -> (&'static str, Option<String>, Option<i64>) {
    match state {
        RegistrationState::Unregistered => ("unregistered", None, None),
        RegistrationState::Pending(id) => ("pending", Some(id.to_string()), None),
        RegistrationState::Registered(id) => ("registered", Some(id.to_string()), None),
        RegistrationState::Rejected(at) => ("rejected", None, i64::try_from(at.0).ok()),
    }
}

fn decode_state(state: &str, smsid: Option<String>, at: Option<i64>) -> Result<RegistrationState> {
    let smsid = || -> Result<Smsid> {
        let s = smsid.as_deref().ok_or_else(|| anyhow!("no SMSID"))?;
        Smsid::parse(s.as_bytes()).ok_or_else(|| anyhow!("bad SMSID {s:?}"))
    };
    Ok(match state {
        "unregistered" => RegistrationState::Unregistered,
        "pending" => RegistrationState::Pending(smsid()?),
        "registered" => RegistrationState::Registered(smsid()?),
        "rejected" => RegistrationState::Rejected(UnixTime(
            at.and_then(|a| u64::try_from(a).ok()).unwrap_or(0),
        )),
        other => bail!("unknown registration state {other:?}"),
    })
}

fn put_row(conn: &Connection, sql: &str, r: &DeviceRecord) -> rusqlite::Result<usize> {
    let (state, smsid, at) = encode_state(r.state);
    conn.prepare_cached(sql)?.execute(params![
        r.id, r.name, r.key_pk8, r.cert_der, state, smsid, at
    ])
}

const INSERT_NEW: &str = "INSERT INTO devices (id, name, key_pk8, cert_der, state, smsid, \
     rejected_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING";
const SELECT_DEVICE: &str = "SELECT id, name, key_pk8, cert_der, state, smsid, rejected_at \
     FROM devices WHERE id = ?1";
const UPSERT: &str = "INSERT OR REPLACE INTO devices (id, name, key_pk8, cert_der, state, \
     smsid, rejected_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::state::{ClientSigner, KeyKind};
    use crate::client::transport::unix_now;

    fn smsid(n: u8) -> Smsid {
        let text = format!("GUID:{n:02X}345678-1234-1234-1234-123456789ABC");
        Smsid::parse(text.as_bytes()).unwrap()
    }

    fn new_record(id: &str) -> DeviceRecord {
        let signer = ClientSigner::generate(KeyKind::P256).unwrap();
        let params = mpagent_core::identity::CertParams::self_signed_now(
            "N",
            unix_now(),
            &mut rand_core::OsRng,
        );
        DeviceRecord {
            id: id.into(),
            name: "N".into(),
            key_pk8: signer.to_pkcs8_der().unwrap(),
            cert_der: signer.self_signed_cert(&params).unwrap(),
            state: RegistrationState::Unregistered,
        }
    }

    #[tokio::test]
    async fn writes_are_durable_across_reopen_and_insert_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.state("a").unwrap(), None);
        let a = new_record("a");
        assert_eq!(reg.insert_new(a.clone()).await.unwrap(), a);
        // A second insert for the same ID gets the stored record, not its own.
        let other = new_record("a");
        assert_eq!(reg.insert_new(other).await.unwrap(), a);
        for (i, state) in [
            RegistrationState::Pending(smsid(1)),
            RegistrationState::Registered(smsid(2)),
            RegistrationState::Rejected(UnixTime(1_700_000_000)),
            RegistrationState::Registered(smsid(3)),
        ]
        .into_iter()
        .enumerate()
        {
            reg.set_registration("a", &format!("N{i}"), state)
                .await
                .unwrap();
            assert_eq!(reg.state("a").unwrap(), Some(state));
        }
        assert!(reg
            .set_registration("nobody", "N", RegistrationState::Unregistered)
            .await
            .is_err());
        drop(reg);
        let reg = Registry::open(dir.path()).unwrap();
        let kept = reg.device("a").unwrap().unwrap();
        assert_eq!(kept.key_pk8, a.key_pk8);
        assert_eq!(kept.cert_der, a.cert_der);
        assert_eq!(kept.name, "N3");
        assert_eq!(kept.state, RegistrationState::Registered(smsid(3)));
        assert_eq!(
            reg.all().unwrap(),
            vec![("a".to_string(), RegistrationState::Registered(smsid(3)))]
        );
    }

    #[tokio::test]
    async fn queue_images_and_new_identities_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let a = new_record("a");
        reg.insert_new(a.clone()).await.unwrap();
        assert_eq!(reg.queue_image("a").unwrap(), None);
        reg.set_queue_image("a", Some(vec![1, 2, 3])).await.unwrap();
        let renewed = new_record("a");
        reg.replace_identity(
            "a",
            renewed.key_pk8.clone(),
            renewed.cert_der.clone(),
            RegistrationState::Registered(smsid(7)),
        )
        .await
        .unwrap();
        drop(reg);
        let reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.queue_image("a").unwrap(), Some(vec![1, 2, 3]));
        let kept = reg.device("a").unwrap().unwrap();
        assert_eq!(kept.cert_der, renewed.cert_der);
        assert_ne!(kept.cert_der, a.cert_der);
        assert_eq!(kept.key_pk8, renewed.key_pk8);
        assert_eq!(kept.state, RegistrationState::Registered(smsid(7)));
        reg.set_queue_image("a", None).await.unwrap();
        assert_eq!(reg.queue_image("a").unwrap(), None);
        assert!(reg
            .replace_identity("b", vec![], vec![], RegistrationState::Unregistered)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn concurrent_writers_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let reg = std::sync::Arc::new(Registry::open(dir.path()).unwrap());
        let template = new_record("t");
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200u8 {
            let (reg, mut r) = (reg.clone(), template.clone());
            r.id = format!("d{i}");
            set.spawn(async move {
                reg.insert_new(r).await.unwrap();
                reg.set_registration(
                    &format!("d{i}"),
                    "N",
                    RegistrationState::Registered(smsid(i)),
                )
                .await
                .unwrap();
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        let all = reg.all().unwrap();
        assert_eq!(all.len(), 200);
        for (id, state) in all {
            let i: u8 = id[1..].parse().unwrap();
            assert_eq!(state, RegistrationState::Registered(smsid(i)));
        }
    }
}
