//! Rust core of runlog-store.
//!
//! Plain Rust, in modules by job, tested with `cargo test` and no Python:
//! - [`chunk`]: the chunk byte format (fixed names, the `_created_ns` header, sealed branches,
//!   snapshots, temp names), its one owner;
//! - [`writer`]: atomic file writes (temp, fsync, rename, folder fsync), reads, and durable
//!   folder creation;
//! - [`lock`]: the inter-process lock (`flock`) with a deadline;
//! - [`patch`]: read-modify-write of a shared JSON document under that lock;
//! - [`merger`]: a run folder's chunks read in parallel and merged into one run log;
//! - [`names`]: the chunk file names;
//! - [`journal`]: the per-writer journal of a chunked-fs run (record frames, reading back);
//! - [`fold`]: one stored document and folding journal records into it;
//! - [`run`]: a chunked-fs run as a store sees it (appending, reading, folding);
//! - [`spares`]: unnamed files made ahead, so a fold does not wait for a new inode;
//! - [`content`]: the content catalogs' store: contents named by BLAKE3, reflink / hard link /
//!   copy materialization, the run manifests.
//!
//! The `python` feature adds the `#[pymodule]` (in `python.rs`), which only converts types,
//! releases the GIL around I/O and maps errors to typed Python exceptions.

#![forbid(unsafe_code)]

pub mod cache;
pub mod chunk;
pub mod content;
pub mod copier;
pub mod document;
pub mod error;
pub mod fold;
pub mod hasher;
pub mod journal;
pub mod lock;
pub mod merger;
pub mod names;
pub mod patch;
pub mod run;
pub mod spares;
pub mod writer;

#[cfg(feature = "python")]
mod python;

pub use error::{CoreError, Result};
