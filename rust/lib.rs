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

/// The allocator of the Python extension (not of `cargo test`): mimalloc's thread-local heaps
/// instead of glibc's arenas. An index build of 100,000 chunked-fs runs allocates and frees
/// millions of small strings and vectors on the core's threads: with glibc, malloc and free
/// were 8-9% of its samples; with mimalloc the build took 7% less time and CPU (six rounds in
/// turns, 5.22-5.43 s against 5.63-5.81 s). Only the core's own allocations go through it:
/// Python's objects and SQLite's pages keep their allocators, and what the core hands to
/// Python is copied into Python's objects.
#[cfg(feature = "python")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use error::{CoreError, Result};
