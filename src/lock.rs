//! One writer per state directory: the daemon and `anomalyd baseline import` both append to the
//! audit chain and rewrite the baseline snapshot, so each holds an exclusive `flock` on the
//! state directory itself while it runs (no lock file to create, so a read-only directory fails
//! later, at the file that cannot be written). The kernel drops the lock when the process dies,
//! so a crash never leaves a stale lock behind.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot lock the state directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state directory {} is in use by another process (a running anomalyd, or an import): stop it first", path.display())]
    Held { path: PathBuf },
}

/// Held until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.to_owned();
        let file = File::open(&path).map_err(|source| LockError::Io {
            path: path.clone(),
            source,
        })?;
        // SAFETY: flock on a descriptor this function owns for as long as `file` lives.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held { path });
            }
            return Err(LockError::Io { path, source: err });
        }
        Ok(StateLock { _file: file })
    }
}
