//! Errors of the core. Each carries the path it is about, so the Python layer can raise a typed
//! exception that names the file (and the run id the caller passed).

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The operating system refused an operation on `path`.
    #[error("{op} {}: {}", path.display(), describe_io(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A stored file is not the JSON it must be.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// A file the operation needs does not exist.
    #[error("{} does not exist", path.display())]
    NotFound { path: PathBuf },
    /// An exclusive create found its target already there.
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    /// Another process held the lock longer than the caller was willing to wait.
    #[error("could not lock {} within {timeout_secs} s: another writer holds it", path.display())]
    LockTimeout { path: PathBuf, timeout_secs: f64 },
    /// A path that cannot be hashed or copied as a file: a directory, a FIFO, a device, or a
    /// file that changed while it was read.
    #[error("{}: {reason}", path.display())]
    NotAFile { path: PathBuf, reason: String },
    /// The run-level document read for run `asked` says it is run `found` (a file copied or
    /// written under another run's name): never handed out as the run asked for.
    #[error("{} says it is run {found:?}, not run {asked:?} that was asked for", path.display())]
    RunIdMismatch {
        path: PathBuf,
        asked: String,
        found: String,
    },
    /// A write that would make the run log nest deeper than every reader reads back
    /// (`nesting::MAX_NESTING`); `what` names the run, step or branch, `at` the place in it.
    #[error(
        "{what} nests too deep at {at}: the run log would be more than {limit} levels deep \
         there, the most every reader reads back"
    )]
    TooDeep {
        what: String,
        at: String,
        limit: usize,
    },
    /// The caller passed something the core cannot act on (a bad patch, an unknown kind).
    #[error("{0}")]
    InvalidArgument(String),
}

impl CoreError {
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound && op == "read" {
            return CoreError::NotFound {
                path: path.to_path_buf(),
            };
        }
        CoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        CoreError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The error as a reader of stored documents reports it: a file that is not one the store
    /// can read (a symlink, a FIFO, a device, larger than the cap) is a corrupt document, as a
    /// document that is not JSON is, so a salvage leaves it out the same way.
    pub fn as_document(self) -> Self {
        match self {
            CoreError::NotAFile { path, reason } => CoreError::Corrupt { path, reason },
            other => other,
        }
    }

    /// The path the error is about (empty for argument errors).
    pub fn path(&self) -> &Path {
        match self {
            CoreError::Io { path, .. }
            | CoreError::Corrupt { path, .. }
            | CoreError::NotFound { path }
            | CoreError::Exists { path }
            | CoreError::LockTimeout { path, .. }
            | CoreError::NotAFile { path, .. }
            | CoreError::RunIdMismatch { path, .. } => path,
            CoreError::TooDeep { .. } | CoreError::InvalidArgument(_) => Path::new(""),
        }
    }

    /// The OS error number, when the operating system gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CoreError::Io { source, .. } => source.raw_os_error(),
            CoreError::NotFound { .. } => Some(2),
            _ => None,
        }
    }
}

/// An I/O error in words an operator acts on: a full disk says so plainly.
fn describe_io(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(28) => "disk full (no space left on device)".to_string(),
        Some(122) => "disk quota exceeded".to_string(),
        _ => err.to_string(),
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
