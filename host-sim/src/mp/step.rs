//! A handler's answer that may still wait on one write to the site database ([`Step`]).
//!
//! Why: the request path reads, parses and verifies on the thread it runs on, and its writes go
//! to the database's one writer thread ([`crate::group_commit`]), which answers after the group's
//! commit. A synchronous caller (the CLI, tests, fuzz targets) simply blocks for that answer
//! ([`Step::run`]); the server awaits it ([`Step::run_async`]) instead of parking a thread per
//! request for the group commit.
//!
//! A handler ends in at most one write: its look-ups, checks and the write that records the
//! result are one job of the writer (one savepoint of the group's transaction), so nothing can
//! slip in between them, and a database fault undoes the job whole.

use super::db::{SiteDb, SiteWriter};
use super::rejection::Rejection;

/// The write a handler leaves to its caller, run on the writer's connection.
pub type WriteJob<T> = Box<dyn FnOnce(&SiteDb) -> Result<T, Rejection> + Send>;

/// A handler's answer: ready, or waiting on one database write.
pub enum Step<T> {
    Ready(T),
    Write(WriteJob<T>),
}

impl<T: Send + 'static> Step<T> {
    /// The answer `job` gives once it ran in a committed transaction.
    pub fn write(job: impl FnOnce(&SiteDb) -> Result<T, Rejection> + Send + 'static) -> Step<T> {
        Step::Write(Box::new(job))
    }

    /// The answer, passed through `f` (on the writer's thread if it waits on a write: keep `f`
    /// cheap).
    pub fn map<U: Send + 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Step<U> {
        match self {
            Step::Ready(t) => Step::Ready(f(t)),
            Step::Write(job) => Step::write(move |db| job(db).map(f)),
        }
    }

    /// Runs the write, if any, and waits for it: on the writer thread if `db` has one (blocking
    /// this thread), else right here on `db`.
    pub fn run(self, db: &SiteDb) -> Result<T, Rejection> {
        match self {
            Step::Ready(t) => Ok(t),
            Step::Write(job) => flatten(db.write(move |db| undo_on_fault(job(db)))),
        }
    }

    /// [`run`](Self::run) on the writer thread, awaited without blocking the runtime's thread.
    pub async fn run_async(self, writer: &SiteWriter) -> Result<T, Rejection> {
        match self {
            Step::Ready(t) => Ok(t),
            Step::Write(job) => flatten(writer.run_async(move |db| undo_on_fault(job(db))).await),
        }
    }
}

/// A fault of ours (`internal`) fails the job, so that the writer rolls its savepoint back; a
/// refusal is an answer (it is decided before anything is written).
fn undo_on_fault<T>(result: Result<T, Rejection>) -> anyhow::Result<Result<T, Rejection>> {
    match result {
        Err(r) if r.internal => Err(anyhow::anyhow!(r.reason)),
        other => Ok(other),
    }
}

fn flatten<T>(written: anyhow::Result<Result<T, Rejection>>) -> Result<T, Rejection> {
    written.unwrap_or_else(|e| Err(Rejection::internal(format!("{e:#}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp::db::SiteDbPool;

    fn pool() -> (tempfile::TempDir, SiteDbPool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = SiteDbPool::open(dir.path().join("site.db")).unwrap();
        (dir, pool)
    }

    fn count_events(db: &SiteDb) -> usize {
        db.events().unwrap().len()
    }

    #[test]
    fn a_write_is_committed_before_its_answer_sync_and_async() {
        let (_dir, pool) = pool();
        let db = pool.get().unwrap();
        let step = Step::write(|db| {
            db.event(None, "test", "sync")
                .map_err(|e| Rejection::internal(e.to_string()))?;
            Ok(1)
        });
        assert_eq!(step.map(|n| n + 1).run(&db), Ok(2));
        assert_eq!(count_events(&db), 1, "committed when run returns");

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let step = Step::write(|db| {
            db.event(None, "test", "async")
                .map_err(|e| Rejection::internal(e.to_string()))?;
            Ok("done")
        });
        assert_eq!(rt.block_on(step.run_async(pool.writer())), Ok("done"));
        assert_eq!(count_events(&db), 2, "committed when run_async returns");
        assert_eq!(Step::Ready(7).run(&db), Ok(7));
    }

    #[test]
    fn a_fault_undoes_the_job_and_a_refusal_keeps_nothing_it_did_not_write() {
        let (_dir, pool) = pool();
        let db = pool.get().unwrap();
        let faulty = Step::<()>::write(|db| {
            db.event(None, "test", "written, then undone").unwrap();
            Err(Rejection::internal("site database: disk on fire"))
        });
        let err = faulty.run(&db).unwrap_err();
        assert!(
            err.internal && err.reason.contains("disk on fire"),
            "{err:?}"
        );
        assert_eq!(count_events(&db), 0, "the fault rolled the job back");

        let refused = Step::<()>::write(|_| Err(Rejection::new("not this client")));
        assert_eq!(refused.run(&db), Err(Rejection::new("not this client")));
    }
}
