//! The exclusive lock on a state directory: one process at a time owns a client's or a proxy's
//! identity and registration state, and a second one is told which process holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file inside a state directory; it holds the owner's PID for the message a second
/// process prints.
pub const LOCK_FILE: &str = "lock";

/// Taking the lock failed.
#[derive(Debug, thiserror::Error)]
pub enum StateLockError {
    /// Another process holds it.
    #[error(
        "state directory {} is in use by {} (another mpagent-sim process); stop it or use another --state",
        dir.display(),
        match pid { Some(p) => format!("PID {p}"), None => "another process".to_string() }
    )]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// The owner's PID, when its lock file names one.
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    #[error("locking state directory {}: {source}", dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Held for as long as the process uses the directory; released when dropped (or when the
/// process dies, however it dies: the kernel drops advisory locks with the file).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Lock `dir` (which must exist) without waiting.
    pub fn acquire(dir: &Path) -> Result<StateLock, StateLockError> {
        let io = |source| StateLockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        // `File::try_lock` is Rust 1.89; the workspace declares 1.85 but builds with 1.95
        // (see client/flash_file.rs).
        #[allow(clippy::incompatible_msrv)]
        let locked = file.try_lock();
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StateLockError::InUse {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_told_the_pid_and_the_lock_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        match &err {
            StateLockError::InUse { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("expected InUse, got {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("PID {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("--state"), "{text}");
        drop(first);
        StateLock::acquire(dir.path()).unwrap();
    }
}
