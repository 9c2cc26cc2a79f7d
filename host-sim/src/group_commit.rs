//! One SQLite writer thread with group commit, shared by the MP's site database
//! ([`crate::mp::db`]) and the ISV proxy's device registry ([`crate::proxy::registry`]): callers
//! hand it their writes, it runs every write that is waiting in one transaction, each in its own
//! savepoint (a failing write is undone alone), and a caller gets its result only after that
//! transaction committed: nothing is acknowledged before it is in the database.
//!
//! Why: concurrent writers on their own connections fight over SQLite's write lock (busy-handler
//! sleeps that leave the cores idle) and each pays a commit (an fsync) of its own; one writer
//! never waits for the lock and commits once per group.

use std::sync::mpsc;

use rusqlite::Connection;

/// Most writes committed together (a bound on how long the first of a group waits).
const MAX_GROUP: usize = 256;

/// What the writer's connection is: a bare connection, or a type that owns one.
pub trait WriterConnection: Send + 'static {
    /// The connection the transactions run on.
    fn connection(&self) -> &Connection;
}

impl WriterConnection for Connection {
    fn connection(&self) -> &Connection {
        self
    }
}

/// What the writer thread calls back after the group's commit: `None` if it committed, else the
/// reason it did not (the write's own result is then replaced by that error).
type Deliver = Box<dyn FnOnce(Option<&str>) + Send>;

/// One queued write. Called with `None` when the group's transaction could not even begin: the
/// write is not run and fails with the reason given to its [`Deliver`].
type Job<C> = Box<dyn FnOnce(Option<&C>) -> Deliver + Send>;

/// A handle on the writer thread (cheap to clone; the thread ends, after committing what was
/// queued, when the last handle is gone).
pub struct GroupWriter<C> {
    jobs: mpsc::Sender<Job<C>>,
    /// Names the database in errors ("the site database", "the registry").
    what: &'static str,
}

impl<C> Clone for GroupWriter<C> {
    fn clone(&self) -> Self {
        GroupWriter {
            jobs: self.jobs.clone(),
            what: self.what,
        }
    }
}

impl<C> std::fmt::Debug for GroupWriter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupWriter({})", self.what)
    }
}

impl<C: WriterConnection> GroupWriter<C> {
    /// Starts the thread (named `thread`) on `conn`; `what` names the database in errors. The
    /// join handle lets an owner wait for the last commit after dropping every handle.
    pub fn start(
        conn: C,
        thread: &str,
        what: &'static str,
    ) -> std::io::Result<(GroupWriter<C>, std::thread::JoinHandle<()>)> {
        let (jobs, queue) = mpsc::channel::<Job<C>>();
        let handle = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || run(&conn, &queue, what))?;
        Ok((GroupWriter { jobs, what }, handle))
    }

    /// Queues `write`; `answer` gets its result once the group's transaction committed (or the
    /// reason it did not).
    fn submit<R: Send + 'static>(
        &self,
        write: impl FnOnce(&C) -> anyhow::Result<R> + Send + 'static,
        answer: impl FnOnce(anyhow::Result<R>) + Send + 'static,
    ) -> anyhow::Result<()> {
        let what = self.what;
        let job: Job<C> = Box::new(move |conn: Option<&C>| {
            let result = match conn {
                Some(conn) => in_savepoint(conn, write),
                None => Err(anyhow::anyhow!("no transaction")),
            };
            Box::new(move |commit_error: Option<&str>| {
                answer(match commit_error {
                    None => result,
                    Some(e) => Err(anyhow::anyhow!("{what} transaction failed: {e}")),
                })
            })
        });
        self.jobs.send(job).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> anyhow::Error {
        anyhow::anyhow!("the writer of {} has stopped", self.what)
    }

    /// Runs `write` in the next group transaction and returns its result once that transaction
    /// has committed. Blocks the calling thread.
    pub fn run<R: Send + 'static>(
        &self,
        write: impl FnOnce(&C) -> anyhow::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = mpsc::sync_channel::<anyhow::Result<R>>(1);
        self.submit(write, move |r| drop(tx.send(r)))?;
        rx.recv().map_err(|_| self.stopped())?
    }

    /// [`run`](Self::run) for async callers: waits without blocking the runtime's thread.
    pub async fn run_async<R: Send + 'static>(
        &self,
        write: impl FnOnce(&C) -> anyhow::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = tokio::sync::oneshot::channel::<anyhow::Result<R>>();
        self.submit(write, move |r| drop(tx.send(r)))?;
        rx.await.map_err(|_| self.stopped())?
    }
}

/// Runs `write` in a savepoint of the open transaction, undoing its changes if it fails.
fn in_savepoint<C: WriterConnection, R>(
    conn: &C,
    write: impl FnOnce(&C) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let c = conn.connection();
    // Prepared once per connection (`execute_batch` would parse the SQL for every write).
    let run = |sql: &str| c.prepare_cached(sql)?.execute([]).map(drop);
    run("SAVEPOINT write")?;
    let result = write(conn);
    if result.is_err() {
        run("ROLLBACK TO write")?;
    }
    run("RELEASE write")?;
    result
}

/// The thread: takes the first waiting write, then every other already waiting (up to
/// [`MAX_GROUP`]), runs them in one transaction, commits, then answers them all.
fn run<C: WriterConnection>(conn: &C, queue: &mpsc::Receiver<Job<C>>, what: &str) {
    let c = conn.connection();
    while let Ok(first) = queue.recv() {
        let mut group = Vec::with_capacity(16);
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (deliveries, error): (Vec<Deliver>, Option<String>) =
            match c.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => {
                    let deliveries = group.into_iter().map(|job| job(Some(conn))).collect();
                    let committed = c.execute_batch("COMMIT").map_err(|e| {
                        // Nothing to do if SQLite already ended the transaction.
                        if !c.is_autocommit() {
                            let _ = c.execute_batch("ROLLBACK");
                        }
                        e.to_string()
                    });
                    (deliveries, committed.err())
                }
                Err(e) => (
                    group.into_iter().map(|job| job(None)).collect(),
                    Some(e.to_string()),
                ),
            };
        if let Some(e) = &error {
            tracing::error!(error = %e, writes = deliveries.len(), database = what, "group commit failed");
        }
        for deliver in deliveries {
            deliver(error.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(path: &std::path::Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c.execute_batch("CREATE TABLE IF NOT EXISTS t (v TEXT NOT NULL)")
            .unwrap();
        c
    }

    fn rows(path: &std::path::Path) -> Vec<String> {
        let c = table(path);
        let mut st = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let v = st.query_map([], |r| r.get(0)).unwrap();
        v.collect::<Result<_, _>>().unwrap()
    }

    /// Writes from many threads share group transactions; one that fails after writing is rolled
    /// back alone, and every answer comes after its commit (another connection sees the row).
    #[test]
    fn failed_writes_roll_back_alone_and_answers_follow_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (writer, thread) = GroupWriter::start(table(&path), "test-writer", "test").unwrap();
        std::thread::scope(|s| {
            for i in 0..16 {
                let (writer, path) = (writer.clone(), path.clone());
                s.spawn(move || {
                    let result = writer.run(move |c: &Connection| {
                        c.execute("INSERT INTO t (v) VALUES (?1)", [format!("r{i:02}")])?;
                        anyhow::ensure!(i != 7, "fails after writing");
                        Ok(i)
                    });
                    if i == 7 {
                        assert!(result.unwrap_err().to_string().contains("fails after"));
                    } else {
                        assert_eq!(result.unwrap(), i);
                        assert!(rows(&path).contains(&format!("r{i:02}")));
                    }
                });
            }
        });
        drop(writer);
        thread.join().unwrap();
        let rows = rows(&path);
        assert_eq!(rows.len(), 15);
        assert!(!rows.contains(&"r07".to_string()));
    }

    /// The async form answers after the commit too, and a stopped writer is an error.
    #[tokio::test]
    async fn async_callers_get_committed_results() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (writer, thread) = GroupWriter::start(table(&path), "test-writer", "test").unwrap();
        let n = writer
            .run_async(|c: &Connection| Ok(c.execute("INSERT INTO t (v) VALUES ('a')", [])?))
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(rows(&path), vec!["a".to_string()]);
        let (tx, _) = mpsc::channel::<Job<Connection>>();
        let dead = GroupWriter {
            jobs: tx,
            what: "test",
        };
        let err = dead.run_async(|_| Ok(())).await.unwrap_err();
        assert!(err.to_string().contains("has stopped"), "{err}");
        drop(writer);
        thread.join().unwrap();
    }
}
