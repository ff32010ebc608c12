//! The threads the bindings run work on: this process's rayon pool (one per process, so a forked
//! child never waits on threads it did not inherit) or a pool of the caller's size, entered with
//! the GIL released.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::CoreError;

/// This process's rayon pool (every core), built at its first use in each process.
///
/// Not rayon's global pool: a process forked after that pool started (runnable's local executor
/// forks its `multiprocessing.Pool` workers) inherits the pool's state but none of its threads,
/// and its first parallel call would wait forever for them. A pool built by another process is
/// leaked, not dropped: its threads are not there to be told to stop.
pub(super) fn process_pool() -> PyResult<Arc<rayon::ThreadPool>> {
    static POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return Ok(Arc::clone(pool));
        }
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .build()
            .map_err(|e| PyValueError::new_err(format!("cannot start the thread pool: {e}")))?,
    );
    if let Some(inherited) = slot.replace((pid, Arc::clone(&pool))) {
        std::mem::forget(inherited);
    }
    Ok(pool)
}

/// Run `work` in this process's pool with the GIL released (see [`process_pool`]).
pub(super) fn in_process_pool<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    let pool = process_pool()?;
    Ok(py.detach(|| pool.install(work)))
}

/// Run `work` on `jobs` threads (all cores when None), with the GIL released.
pub(super) fn on_threads<T: Send>(
    py: Python<'_>,
    jobs: Option<usize>,
    work: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    match jobs {
        None => in_process_pool(py, work),
        Some(0) => Err(CoreError::InvalidArgument("jobs must be at least 1".to_string()).into()),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| PyValueError::new_err(format!("cannot start {n} threads: {e}")))?;
            Ok(py.detach(|| pool.install(work)))
        }
    }
}
