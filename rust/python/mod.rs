//! The Python module `runlog_store._core`: it only registers what the area modules beside it
//! define. Each binding converts types, releases the GIL around I/O, and raises core errors as
//! the typed exceptions of `runlog_store.exceptions` through the one conversion in `errors`.

use pyo3::prelude::*;

mod chunks;
mod content;
mod document;
mod errors;
mod files;
mod hashing;
mod index;
mod pool;
mod runs;
mod summary;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // First: a missing exception class fails the import before anything is registered.
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    chunks::register(m)?;
    files::register(m)?;
    hashing::register(m)?;
    runs::register(m)?;
    document::register(m)?;
    content::register(m)?;
    summary::register(m)?;
    index::register(m)?;
    Ok(())
}
