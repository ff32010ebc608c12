//! Core errors as Python exceptions: the classes of `runlog_store.exceptions` the core raises
//! (checked when `_core` is imported), and the one conversion of a [`CoreError`] into the typed
//! exception, carrying the path, the run id and, for storage failures, the errno.

use pyo3::exceptions::{PyException, PyImportError, PyValueError};
use pyo3::import_exception;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::error::CoreError;

/// Declares each class of `runlog_store.exceptions` the core raises (a Rust type per class,
/// imported once) and lists their names in `RAISED_EXCEPTIONS`, which the module checks when it
/// is imported: a class renamed on the Python side fails `import runlog_store._core` (and the
/// tests) instead of the first real failure.
macro_rules! raised_exceptions {
    ($($name:ident),* $(,)?) => {
        $(import_exception!(runlog_store.exceptions, $name);)*
        const RAISED_EXCEPTIONS: &[&str] = &[$(stringify!($name)),*];
    };
}

raised_exceptions!(
    StorageError,
    HashError,
    CorruptChunkError,
    RunIdMismatchError,
    NestingTooDeepError,
    ChunkNotFoundError,
    ChunkExistsError,
    LockTimeoutError,
);

/// Fail the import of `_core` unless every class in `RAISED_EXCEPTIONS` is an exception class of
/// `runlog_store.exceptions` (an imported exception type that is missing would otherwise panic
/// at the moment of a real failure).
fn check_raised_exceptions(py: Python<'_>) -> PyResult<()> {
    let module = py.import("runlog_store.exceptions")?;
    for name in RAISED_EXCEPTIONS {
        let is_exception = module
            .getattr(*name)
            .ok()
            .and_then(|class| class.cast_into::<PyType>().ok())
            .is_some_and(|class| class.is_subclass_of::<PyException>().unwrap_or(false));
        if !is_exception {
            return Err(PyImportError::new_err(format!(
                "runlog_store._core raises runlog_store.exceptions.{name}, which is not an \
                 exception class there"
            )));
        }
    }
    Ok(())
}

/// What a call was doing when it failed, which decides the exception of a storage failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    /// Reading and writing a run's documents: a missing file is a missing chunk
    /// (ChunkNotFoundError, which the stores turn into their typed not-found errors).
    Documents,
    /// Hashing files: every failure to read one, a missing file too, is a HashError.
    Hashing,
    /// Copying files: every failure to copy one, a missing source too, is a StorageError.
    Copying,
}

/// A core error with what Python needs to raise it: the run it concerns and the operation.
/// Its `From` conversion into `PyErr` is the one place core errors become exceptions.
#[derive(Debug)]
pub(super) struct PyCoreError {
    err: CoreError,
    run_id: String,
    operation: Operation,
}

impl PyCoreError {
    pub(super) fn new(err: CoreError, run_id: &str, operation: Operation) -> Self {
        PyCoreError {
            err,
            run_id: run_id.to_owned(),
            operation,
        }
    }

    /// The exception class, and whether it takes `errno` (the StorageError family does).
    fn class<'py>(&self, py: Python<'py>) -> Option<(Bound<'py, PyType>, bool)> {
        use CoreError as E;
        use Operation as Op;
        Some(match (&self.err, self.operation) {
            (E::Io { .. } | E::NotAFile { .. } | E::NotFound { .. }, Op::Hashing) => {
                (py.get_type::<HashError>(), true)
            }
            (E::Io { .. } | E::NotAFile { .. }, _) | (E::NotFound { .. }, Op::Copying) => {
                (py.get_type::<StorageError>(), true)
            }
            (E::NotFound { .. }, Op::Documents) => (py.get_type::<ChunkNotFoundError>(), false),
            (E::Corrupt { .. }, _) => (py.get_type::<CorruptChunkError>(), false),
            (E::RunIdMismatch { .. }, _) => (py.get_type::<RunIdMismatchError>(), false),
            (E::TooDeep { .. }, _) => (py.get_type::<NestingTooDeepError>(), false),
            (E::Exists { .. }, _) => (py.get_type::<ChunkExistsError>(), false),
            (E::LockTimeout { .. }, _) => (py.get_type::<LockTimeoutError>(), false),
            (E::InvalidArgument(_), _) => return None,
        })
    }

    fn into_py_err(self, py: Python<'_>) -> PyErr {
        let Some((class, takes_errno)) = self.class(py) else {
            return PyValueError::new_err(self.err.to_string());
        };
        let message =
            if self.run_id.is_empty() || matches!(self.err, CoreError::RunIdMismatch { .. }) {
                self.err.to_string()
            } else {
                format!("{} (run {:?})", self.err, self.run_id)
            };
        let build = || -> PyResult<PyErr> {
            let kwargs = PyDict::new(py);
            kwargs.set_item("path", self.err.path().as_os_str())?;
            match &self.err {
                // The run asked for, and the one the document names.
                CoreError::RunIdMismatch { asked, found, .. } => {
                    kwargs.set_item("run_id", asked)?;
                    kwargs.set_item("found", found)?;
                }
                _ => kwargs.set_item("run_id", &self.run_id)?,
            }
            if takes_errno {
                kwargs.set_item("errno", self.err.errno())?;
            }
            Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
        };
        // A class whose constructor refuses these arguments is a bug, raised as it is.
        build().unwrap_or_else(|refused| refused)
    }
}

impl From<PyCoreError> for PyErr {
    fn from(err: PyCoreError) -> PyErr {
        Python::attach(|py| err.into_py_err(py))
    }
}

/// A core error outside any run (argument errors mostly) is a documents error with no run id.
impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        PyCoreError::new(err, "", Operation::Documents).into()
    }
}

/// `result.for_run(run_id)?` raises a core error naming the run.
pub(super) trait ForRun<T> {
    fn for_run(self, run_id: &str) -> Result<T, PyCoreError>;
}

impl<T> ForRun<T> for crate::Result<T> {
    fn for_run(self, run_id: &str) -> Result<T, PyCoreError> {
        self.map_err(|err| PyCoreError::new(err, run_id, Operation::Documents))
    }
}

/// The exception instance for one failed item of a batch (returned in its place, not raised).
pub(super) fn failure_instance(py: Python<'_>, err: PyCoreError) -> Bound<'_, PyAny> {
    PyErr::from(err).into_value(py).into_bound(py).into_any()
}

/// Check the exception classes (failing the import when one is missing) and publish their
/// names as `RAISED_EXCEPTIONS`.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    check_raised_exceptions(py)?;
    m.add("RAISED_EXCEPTIONS", PyTuple::new(py, RAISED_EXCEPTIONS)?)?;
    Ok(())
}
