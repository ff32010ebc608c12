//! Rust core of runlog-store: run log chunks, journals and merges, writes, locks and hashing,
//! and (feature `python`) the module `runlog_store._core`. The module map is docs/architecture.md.

#![forbid(unsafe_code)]

pub mod cache;
pub mod chunk;
pub mod content;
pub mod copier;
pub mod document;
pub mod error;
pub mod flush;
pub mod fold;
pub mod hasher;
pub mod index;
pub mod journal;
pub mod json;
pub mod lock;
pub mod merger;
pub mod names;
pub mod nesting;
pub mod patch;
pub mod run;
pub mod spares;
pub mod summary;
pub mod untrusted;
pub mod writer;

#[cfg(feature = "python")]
mod python;

pub use error::{CoreError, Result};
