//! The site database's one writer thread: the server's request handlers hand it their writes
//! (registrations, events, stored messages, rejections) and it runs every write that is waiting
//! in one transaction (group commit), each write in its own savepoint. A handler gets its result
//! only after that transaction committed: nothing is acknowledged before it is in the database.
//!
//! Why: with one connection per handler, concurrent writers fought over SQLite's write lock
//! (busy-handler sleeps that left the cores idle) and every registration paid a commit of its
//! own; one writer never waits for the lock and commits once per group.

use super::db::SiteDb;
use std::path::Path;
use std::sync::mpsc;

/// Most writes committed together (a bound on how long the first of a group waits).
const MAX_GROUP: usize = 256;

/// What the writer thread calls back after the group's commit: `None` if it committed, else the
/// reason it did not (the write's own result is then replaced by that error).
type Deliver = Box<dyn FnOnce(Option<&str>) + Send>;

/// One queued write. Called with `None` when the group's transaction could not even begin: the
/// write is not run and fails with the reason given to its [`Deliver`].
type Job = Box<dyn FnOnce(Option<&SiteDb>) -> Deliver + Send>;

/// A handle on the writer thread (cheap to clone; the thread ends when the last handle is gone).
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Opens a connection of its own to the database at `path` and starts the thread.
    pub fn start(path: &Path) -> anyhow::Result<Writer> {
        let db = SiteDb::open(path)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("mp-db-writer".into())
            .spawn(move || run(&db, &queue))?;
        Ok(Writer { jobs })
    }

    /// Runs `write` on the writer's connection inside the next group transaction and returns its
    /// result once that transaction has committed. A write that fails is rolled back alone (its
    /// savepoint); the others of its group still commit. Blocks the calling thread.
    pub fn run<R: Send + 'static>(
        &self,
        write: impl FnOnce(&SiteDb) -> anyhow::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = mpsc::sync_channel::<anyhow::Result<R>>(1);
        let job: Job = Box::new(move |db: Option<&SiteDb>| {
            let result = match db {
                Some(db) => db.in_savepoint(write),
                None => Err(anyhow::anyhow!("no transaction")),
            };
            Box::new(move |commit_error: Option<&str>| {
                let result = match commit_error {
                    None => result,
                    Some(e) => Err(anyhow::anyhow!("site database transaction failed: {e}")),
                };
                let _ = tx.send(result);
            })
        });
        let stopped = || anyhow::anyhow!("the site database writer has stopped");
        self.jobs.send(job).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }
}

/// The thread: takes the first waiting write, then every other already waiting (up to
/// [`MAX_GROUP`]), runs them in one transaction, commits, then answers them all.
fn run(db: &SiteDb, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut group = Vec::with_capacity(16);
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let outcome = match db.begin_immediate() {
            Ok(()) => {
                let deliveries: Vec<Deliver> = group.into_iter().map(|job| job(Some(db))).collect();
                let committed = db.commit().map_err(|e| {
                    db.rollback();
                    format!("{e:#}")
                });
                (deliveries, committed.err())
            }
            Err(e) => {
                let deliveries = group.into_iter().map(|job| job(None)).collect();
                (deliveries, Some(format!("{e:#}")))
            }
        };
        let (deliveries, error) = outcome;
        if let Some(e) = &error {
            tracing::error!(error = %e, writes = deliveries.len(), "site database group commit failed");
        }
        for deliver in deliveries {
            deliver(error.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes from many threads share group transactions; one that fails after writing is rolled
    /// back alone, and every answer comes after its commit (another connection sees the row).
    #[test]
    fn failed_writes_roll_back_alone_and_answers_follow_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let writer = Writer::start(&path).unwrap();
        std::thread::scope(|s| {
            for i in 0..16 {
                let (writer, path) = (writer.clone(), path.clone());
                s.spawn(move || {
                    let result = writer.run(move |db| {
                        db.log_rejection("peer", None, &format!("r{i}"))?;
                        anyhow::ensure!(i != 7, "fails after writing");
                        Ok(i)
                    });
                    if i == 7 {
                        assert!(result.unwrap_err().to_string().contains("fails after"));
                    } else {
                        assert_eq!(result.unwrap(), i);
                        let other = SiteDb::open(&path).unwrap();
                        let seen = other.rejections().unwrap();
                        assert!(seen.iter().any(|r| r.reason == format!("r{i}")));
                    }
                });
            }
        });
        let rows = SiteDb::open(&path).unwrap().rejections().unwrap();
        assert_eq!(rows.len(), 15);
        assert!(!rows.iter().any(|r| r.reason == "r7"));
    }
}
