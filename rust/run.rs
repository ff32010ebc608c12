//! A chunked-fs run as one store object sees it (docs/format.md, "chunked-fs"): appending to
//! this process's journal, reading the run (documents with the journals' records on top), and
//! folding records into runnable's documents.
//!
//! **Order.** Every record gets a stamp while the appender holds the run's `flock` (`.lock`):
//! the stamp is the wall clock in nanoseconds, or one more than the last stamp handed out if
//! the clock is not past it (the last stamp is kept in the lock file's first 8 bytes). So
//! stamps are unique in a run, and a write that starts after another returned has a later
//! stamp, whichever process makes it: for one key, the record with the later stamp wins, and
//! every reader applies records in stamp order. A fold takes the same lock, so no record can be
//! stamped before a fold and appended after it.
//!
//! **Durability.** The frame is written while the lock is held and synced (`fdatasync`) after
//! it is released, so other writers do not wait for this one's disk. A journal created by the
//! append is named durably (its folder is fsynced) before the append returns.
//!
//! **Reading.** A store object keeps, per run, the records it has read from each journal and
//! how far it read; each read lists `.journals/` and reads only what was appended since, then
//! the documents it needs. Records already folded into a document (a stamp no later than the
//! document's) are skipped, so a reader sees every acknowledged write exactly once, whether a
//! fold happened before, during or after its read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::chunk::{
    decode_snapshot, document_status, encode_snapshot, now_ns, LAYOUT_MARKER, LAYOUT_MARKER_TEXT_1,
    RUN_LOG_FILE, SNAPSHOT_NAME,
};
use crate::error::{CoreError, Result};
use crate::fold::Doc;
use crate::journal::{
    encode_frame, journal_path, list_journals, new_journal_name, read_from, scan, Key, NewRecord,
    Record, JOURNAL_DIR,
};
use crate::lock::FileLock;
use crate::merger::{read_whole, Contents, MergedRun, Naming};
use crate::names::{chunk_file_name, chunk_kind_of, ChunkKind};
use crate::spares::Spares;
use crate::writer::fsync_folder;
use rustix::fs::FallocateFlags;
use rustix::io::Errno;

/// The lock file of a run: `flock` target, and the last stamp handed out.
pub const LOCK_FILE: &str = ".lock";

/// How a store writes.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Sync every acknowledged write to the disk.
    pub fsync: bool,
    /// How long to wait for the run's lock.
    pub lock_timeout: Duration,
}

/// Which layout a run folder has (its `.layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// No marker: written by runnable (documents only) or created by a put of a whole run.
    Documents,
    /// Format 1 of this package: a `StepLog-<key>.json` per step.
    Chunks,
    /// Format 2: runnable's documents at rest, journals meanwhile.
    Journals,
}

/// One run folder, for one store object.
pub struct Run {
    dir: PathBuf,
    options: RunOptions,
    state: Mutex<State>,
    /// Files made ahead for the folds (see `spares`).
    spares: Spares,
}

#[derive(Default)]
struct State {
    /// The process the state belongs to: a forked child starts its own journal.
    pid: u32,
    /// The run folder's device and inode: a run deleted and created again is another run.
    identity: Option<(u64, u64)>,
    layout: Option<Layout>,
    /// This process's journal once it has appended.
    own: Option<OwnJournal>,
    /// Appends stopped preallocating: the file system cannot (`fallocate` unsupported).
    no_preallocation: bool,
    index: Index,
    /// Branches known to have a document.
    documented: HashSet<String>,
}

/// The records read from the run's journals, by what they are about.
#[derive(Default)]
struct Index {
    /// How far each journal has been read.
    cursors: BTreeMap<String, u64>,
    records: HashMap<Key, Vec<Record>>,
    /// Step names by their name less the last component (runnable's parent branch), "" for
    /// names without a dot.
    steps_by_parent: BTreeMap<String, BTreeSet<String>>,
}

impl Index {
    fn add(&mut self, record: Record) {
        if let Key::Step(name) = record.key() {
            let parent = name.rsplit_once('.').map_or("", |(p, _)| p);
            self.steps_by_parent
                .entry(parent.to_string())
                .or_default()
                .insert(name);
        }
        let list = self.records.entry(record.key()).or_default();
        let sorted = list
            .last()
            .map_or(true, |last| last.order() <= record.order());
        list.push(record);
        if !sorted {
            list.sort_by(|a, b| a.order().cmp(&b.order()));
        }
    }

    fn get(&self, key: &Key) -> &[Record] {
        self.records.get(key).map_or(&[], Vec::as_slice)
    }

    /// Drop the records of `key` up to `stamp`: they are folded.
    fn prune(&mut self, key: &Key, stamp: i64) {
        let Some(list) = self.records.get_mut(key) else {
            return;
        };
        list.retain(|r| r.stamp > stamp);
        if list.is_empty() {
            self.records.remove(key);
            if let Key::Step(name) = key {
                let parent = name.rsplit_once('.').map_or("", |(p, _)| p);
                if let Some(set) = self.steps_by_parent.get_mut(parent) {
                    set.remove(name);
                    if set.is_empty() {
                        self.steps_by_parent.remove(parent);
                    }
                }
            }
        }
    }

    /// Forget the records of journals that are gone (a fold folded them all, then removed them).
    fn forget_journals(&mut self, gone: &HashSet<String>) {
        let keys: Vec<Key> = self.records.keys().cloned().collect();
        for key in keys {
            if let Some(list) = self.records.get_mut(&key) {
                list.retain(|r| !gone.contains(&*r.journal));
            }
            if self.records.get(&key).is_some_and(Vec::is_empty) {
                self.prune(&key, i64::MAX);
            }
        }
    }

    fn all(&self) -> Vec<&Record> {
        self.records.values().flatten().collect()
    }
}

impl Run {
    pub fn new(dir: &Path, options: RunOptions) -> Run {
        Run {
            dir: dir.to_path_buf(),
            options,
            state: Mutex::new(State::default()),
            spares: Spares::new(dir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn run_log_path(&self) -> PathBuf {
        self.dir.join(RUN_LOG_FILE)
    }

    fn not_found(&self) -> CoreError {
        CoreError::NotFound {
            path: self.run_log_path(),
        }
    }

    fn journal_dir(&self) -> PathBuf {
        self.dir.join(JOURNAL_DIR)
    }

    fn branch_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self.dir.join(chunk_file_name(ChunkKind::Branch, name)?))
    }

    /// The state, checked against the process and the run folder: a forked child starts its
    /// own journal, and a run folder replaced since (deleted, created again) is read afresh.
    fn state(&self) -> Result<MutexGuard<'_, State>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if state.pid != pid {
            state.pid = pid;
            state.own = None;
        }
        let identity = match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => (meta.dev(), meta.ino()),
            Ok(_) => return Err(self.not_found()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found()),
            Err(e) => return Err(CoreError::io("open", &self.dir, e)),
        };
        match state.identity {
            Some(known) if known != identity => {
                // Another folder under this name: what was read of the old one is void.
                *state = State {
                    pid,
                    identity: Some(identity),
                    ..State::default()
                };
            }
            Some(_) => {}
            None => state.identity = Some(identity),
        }
        Ok(state)
    }

    fn layout(&self, state: &mut State) -> Result<Layout> {
        if let Some(layout) = state.layout {
            return Ok(layout);
        }
        let layout = match read_whole(&self.dir.join(LAYOUT_MARKER))? {
            None => Layout::Documents,
            Some(text) if text == LAYOUT_MARKER_TEXT_1 => Layout::Chunks,
            Some(_) => Layout::Journals,
        };
        state.layout = Some(layout);
        Ok(layout)
    }

    /// Read what the journals gained since the last look.
    fn catch_up(&self, state: &mut State) -> Result<()> {
        let names = list_journals(&self.dir)?;
        let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
        let gone: HashSet<String> = state
            .index
            .cursors
            .keys()
            .filter(|n| !listed.contains(n.as_str()))
            .cloned()
            .collect();
        if !gone.is_empty() {
            for name in &gone {
                state.index.cursors.remove(name);
            }
            state.index.forget_journals(&gone);
        }
        for name in names {
            let cursor = *state.index.cursors.get(&name).unwrap_or(&0);
            let path = journal_path(&self.dir, &name);
            let Some(bytes) = read_from(&path, cursor)? else {
                continue;
            };
            if bytes.is_empty() {
                state.index.cursors.insert(name, cursor);
                continue;
            }
            let shared: Arc<str> = Arc::from(name.as_str());
            let scanned = scan(&bytes, cursor, &path, &shared, false)?;
            for record in scanned.records {
                state.index.add(record);
            }
            state.index.cursors.insert(name, scanned.end);
        }
        Ok(())
    }

    fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.dir.join(LOCK_FILE), self.options.lock_timeout).map_err(|e| {
            if e.errno() == Some(2) {
                self.not_found()
            } else {
                e
            }
        })
    }

    // --- appending -----------------------------------------------------------------------

    /// Append records to this process's journal, as one write: one lock, one frame each, one
    /// sync. Returns when they are durable (with `fsync`) and visible to every reader.
    ///
    /// A write to a run that has ended (its `RunLog.json` says so: its end was folded) is
    /// folded at once, so that what runnable reads stays whole: runnable's executor stores the
    /// last step once more after it has set the run's status. The check costs one read, made
    /// only when the append starts a journal: the fold that ended the run removed them all.
    pub fn append(&self, records: &[NewRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let started_journal = self.append_to_journal(records)?;
        if started_journal && self.has_ended().unwrap_or(false) {
            // The write is done (durable, visible to our readers) whatever happens here: a fold
            // that fails (the lock timed out) leaves the record in its journal, for the next
            // write or `runlog fold`, and `runlog show` says so.
            let _ = self.fold_all();
        }
        Ok(())
    }

    /// Whether the run's document says it has ended.
    fn has_ended(&self) -> Result<bool> {
        let run_log = read_whole(&self.run_log_path())?.ok_or_else(|| self.not_found())?;
        Ok(document_status(&run_log).is_some_and(|s| s == "SUCCESS" || s == "FAIL"))
    }

    /// The append itself; whether it started a journal.
    fn append_to_journal(&self, records: &[NewRecord]) -> Result<bool> {
        // No check of the folder's identity here (a system call per write): a run deleted
        // since fails to open its lock file, and one created again has no journal of this
        // name, so a new one is started in it.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if state.pid != pid {
            state.pid = pid;
            state.own = None;
        }
        let lock = self.lock()?;
        let (journal, new_folder) = self.open_journal(&mut state)?;
        let stamp = next_stamps(lock.file(), records.len() as i64, &self.dir)?;
        let mut frames = Vec::with_capacity(records.iter().map(|r| r.body.len() + 64).sum());
        for (i, record) in records.iter().enumerate() {
            encode_frame(&mut frames, stamp + i as i64, record);
        }
        let path = journal_path(&self.dir, &journal.own.name);
        let end = journal.own.size + frames.len() as u64;
        let mut own = journal.own.clone();
        if self.options.fsync && !state.no_preallocation && end > own.allocated {
            match self.preallocate(&journal.file, own.allocated, end) {
                Ok(allocated) => own.allocated = allocated,
                Err(e) if e == Errno::OPNOTSUPP || e == Errno::NOSYS => {
                    state.no_preallocation = true;
                }
                Err(e) => return Err(CoreError::io("allocate", &path, e.into())),
            }
        }
        if let Err(e) = journal.file.write_all_at(&frames, journal.own.size) {
            // Take the partial frame back, so the next append does not follow garbage; if even
            // that fails, this journal is abandoned (its torn tail is read as never written).
            state.own = journal
                .file
                .set_len(journal.own.size)
                .is_ok()
                .then(|| OwnJournal {
                    allocated: journal.own.size,
                    ..journal.own.clone()
                });
            return Err(CoreError::io("write", &path, e));
        }
        own.size = end;
        state.own = Some(own);
        drop(lock);
        if self.options.fsync {
            journal
                .file
                .sync_data()
                .map_err(|e| CoreError::io("fsync", &path, e))?;
            if journal.created {
                fsync_folder(&self.journal_dir())?;
            }
            if new_folder {
                fsync_folder(&self.dir)?;
            }
        }
        Ok(journal.created)
    }

    /// Make room for the journal to grow to `end` without changing its size at each append
    /// (with `fsync` only): an `fdatasync` of bytes written inside the file's size does not
    /// have to commit a new size and new blocks to the file system's own journal, which is
    /// most of what an append's sync costs otherwise (here, 80-100 us against 120-150).
    /// Readers see the room as zeros after the last frame: a torn tail, never read as records.
    /// Returns the new allocated end.
    fn preallocate(&self, file: &File, from: u64, end: u64) -> rustix::io::Result<u64> {
        let allocated = end.div_ceil(PREALLOCATION) * PREALLOCATION;
        rustix::fs::fallocate(file, FallocateFlags::empty(), from, allocated - from)?;
        Ok(allocated)
    }

    /// This process's journal, opened for writing (created, with `.journals/`, if needed);
    /// whether `.journals/` was created.
    fn open_journal(&self, state: &mut State) -> Result<(OpenJournal, bool)> {
        if let Some(own) = state.own.clone() {
            let path = journal_path(&self.dir, &own.name);
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => {
                    let journal = OpenJournal {
                        file,
                        created: false,
                        own,
                    };
                    return Ok((journal, false));
                }
                // Folded and removed: start a new one.
                Err(e) if e.kind() == io::ErrorKind::NotFound => state.own = None,
                Err(e) => return Err(CoreError::io("open", &path, e)),
            }
        }
        if !self.run_log_path().exists() {
            return Err(self.not_found());
        }
        let folder = self.journal_dir();
        let new_folder = match fs::create_dir(&folder) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found()),
            Err(e) => return Err(CoreError::io("create folder", &folder, e)),
        };
        let name = new_journal_name();
        let path = journal_path(&self.dir, &name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| CoreError::io("create", &path, e))?;
        let own = OwnJournal {
            name,
            size: 0,
            allocated: 0,
        };
        Ok((
            OpenJournal {
                file,
                created: true,
                own,
            },
            new_folder,
        ))
    }

    // --- reading ---------------------------------------------------------------------------

    /// The full run log, and what a salvage read left out.
    pub fn read(&self, salvage: bool) -> Result<MergedRun> {
        if salvage {
            // A salvage read uses nothing cached: it reads every journal past the damage.
            let (records, mut skipped) = crate::journal::read_all(&self.dir, true)?;
            let contents = Contents::read_folder(&self.dir)?;
            let refs: Vec<&Record> = records.iter().collect();
            let mut tree = contents.tree(&refs, true)?;
            skipped.extend(tree.take_skipped());
            return Ok(MergedRun {
                document: tree.document(),
                skipped,
            });
        }
        let mut state = self.state()?;
        self.catch_up(&mut state)?;
        // With no journal, the documents are the whole run: an ended one, unchanged since a
        // full read stored its merge, reads from that.
        let settled = state.index.cursors.is_empty();
        let mut stats = None;
        if settled {
            let run_log = read_whole(&self.run_log_path())?.ok_or_else(|| self.not_found())?;
            let ended = document_status(&run_log).is_some_and(|s| s == "SUCCESS" || s == "FAIL");
            if ended {
                // Taken before the documents are read: a document changed after this no longer
                // matches what a snapshot built from this read says of it.
                let now = document_stats(&self.dir)?;
                if let Some(snapshot) = read_whole(&self.dir.join(SNAPSHOT_NAME))? {
                    if let Some(document) = decode_snapshot(&snapshot, &now) {
                        return Ok(MergedRun {
                            document: document.to_vec(),
                            skipped: Vec::new(),
                        });
                    }
                }
                // Judged by the clock of the look itself (see SNAPSHOT_SETTLED_NS).
                stats = settled_long_enough(&now).then_some(now);
            }
        }
        let contents = Contents::read_folder(&self.dir)?;
        let records = state.index.all();
        let tree = contents.tree(&records, false)?;
        let document = tree.document();
        if let Some(stats) = stats {
            // Stored as the fold that ends a run stores it, against the stats taken before the
            // documents were read (settled documents pass the clock's check at once).
            self.store_snapshot(&document, &stats);
        }
        Ok(MergedRun {
            document,
            skipped: Vec::new(),
        })
    }

    /// The run's fields with its root steps (each without branches), as runnable's chunked
    /// store reads a run that is not full; with `steps: false`, the fields alone.
    pub fn read_run(&self, steps: bool) -> Result<Vec<u8>> {
        let mut state = self.state()?;
        self.catch_up(&mut state)?;
        let layout = self.layout(&mut state)?;
        if steps && layout != Layout::Journals {
            // Steps may sit in files of their own (format 1, magnus): the whole tree says.
            return self.with_tree(&mut state, |tree| Ok(tree.shallow()));
        }
        let root_steps = if steps {
            self.steps_homed_in(&mut state, None)?
        } else {
            Vec::new()
        };
        let path = self.run_log_path();
        let bytes = read_whole(&path)?.ok_or_else(|| self.not_found())?;
        let mut doc = Doc::parse(&bytes, path)?;
        let journal_dir = self.journal_dir();
        for record in state.index.get(&Key::Run) {
            doc.fold_own(record, &journal_dir)?;
        }
        if !steps {
            return Ok(doc.clean_fields());
        }
        for name in root_steps {
            for record in state.index.get(&Key::Step(name)) {
                doc.fold_step(record, &journal_dir)?;
            }
        }
        Ok(doc.clean())
    }

    /// A branch with its direct steps (each without its branches), as runnable's chunked store
    /// gives it; `None` when the run has no such branch.
    pub fn read_branch(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.branch_path(name)?;
        let mut state = self.state()?;
        self.catch_up(&mut state)?;
        let layout = self.layout(&mut state)?;
        if layout == Layout::Chunks {
            return self.with_tree(&mut state, |tree| Ok(tree.branch(name)));
        }
        let found = {
            let bytes = read_whole(&path)?;
            let mut doc = match &bytes {
                Some(bytes) => Doc::parse(bytes, path)?,
                None => Doc::missing(path),
            };
            let journal_dir = self.journal_dir();
            let steps = self.steps_homed_in(&mut state, Some(name))?;
            let own = state.index.get(&Key::Branch(name.to_string()));
            if doc.exists() || !own.is_empty() {
                for record in own {
                    doc.fold_own(record, &journal_dir)?;
                }
                for step in steps {
                    for record in state.index.get(&Key::Step(step)) {
                        doc.fold_step(record, &journal_dir)?;
                    }
                }
                Some(doc.clean())
            } else {
                None
            }
        };
        if found.is_none() && layout == Layout::Documents {
            // magnus and other older layouts may keep a branch elsewhere.
            return self.with_tree(&mut state, |tree| Ok(tree.branch(name)));
        }
        Ok(found)
    }

    /// One step without its branches; `None` when the run has no such step.
    pub fn read_step(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let mut state = self.state()?;
        self.catch_up(&mut state)?;
        let layout = self.layout(&mut state)?;
        let home = self.home_of(&mut state, name)?;
        let path = match &home {
            Some(branch) => self.branch_path(branch)?,
            None => self.run_log_path(),
        };
        let journal_dir = self.journal_dir();
        let found = {
            let bytes = read_whole(&path)?;
            if bytes.is_none() && home.is_none() {
                return Err(self.not_found());
            }
            let mut doc = match &bytes {
                Some(bytes) => Doc::parse(bytes, path)?,
                None => Doc::missing(path),
            };
            let chunk_path = self.dir.join(chunk_file_name(ChunkKind::Step, name)?);
            let chunk = if layout == Layout::Chunks {
                read_whole(&chunk_path)?
            } else {
                None
            };
            if let Some(chunk) = &chunk {
                // Format 1: the step's own chunk, unless a fold has embedded a later copy.
                let own = Doc::single_step(chunk, chunk_path)?;
                if own.child_stamp(name).unwrap_or(0) >= doc.child_stamp(name).unwrap_or(0) {
                    doc = own;
                }
            }
            for record in state.index.get(&Key::Step(name.to_string())) {
                doc.fold_step(record, &journal_dir)?;
            }
            doc.step(name)
        };
        if found.is_none() && layout != Layout::Journals {
            // Older layouts may keep a step inside another file: the whole tree says.
            return self.with_tree(&mut state, |tree| Ok(tree.step(name)));
        }
        Ok(found)
    }

    /// Whether the run has this branch (a document or a record of it).
    pub fn has_branch(&self, name: &str) -> Result<bool> {
        let mut state = self.state()?;
        self.catch_up(&mut state)?;
        let layout = self.layout(&mut state)?;
        if layout != Layout::Chunks && self.is_branch(&mut state, name)? {
            return Ok(true);
        }
        if layout == Layout::Journals {
            return Ok(false);
        }
        self.with_tree(&mut state, |tree| Ok(tree.has_branch(name)))
    }

    /// Run `read` on the full tree (documents and every record read so far).
    fn with_tree<T>(
        &self,
        state: &mut State,
        read: impl FnOnce(&crate::merger::Tree<'_>) -> Result<T>,
    ) -> Result<T> {
        let contents = Contents::read_folder(&self.dir)?;
        let records = state.index.all();
        let tree = contents.tree(&records, false)?;
        read(&tree)
    }

    /// Whether `name` is a branch: recorded in a journal, or with a document.
    fn is_branch(&self, state: &mut State, name: &str) -> Result<bool> {
        if name.is_empty() {
            return Ok(false); // a branch's name is <step>.<key>: never empty
        }
        if state.documented.contains(name)
            || state
                .index
                .records
                .contains_key(&Key::Branch(name.to_string()))
        {
            return Ok(true);
        }
        if self.branch_path(name)?.exists() {
            state.documented.insert(name.to_string());
            return Ok(true);
        }
        Ok(false)
    }

    /// The branch a step belongs to: the longest dot-prefix of its name that is a branch
    /// (docs/format.md, "The run log JSON"); None for a root step.
    fn home_of(&self, state: &mut State, step: &str) -> Result<Option<String>> {
        let mut prefix = step;
        while let Some((head, _)) = prefix.rsplit_once('.') {
            if !head.is_empty() && self.is_branch(state, head)? {
                return Ok(Some(head.to_string()));
            }
            prefix = head;
        }
        Ok(None)
    }

    /// The steps with records whose home is `home` (a branch, or the run for None).
    fn steps_homed_in(&self, state: &mut State, home: Option<&str>) -> Result<Vec<String>> {
        let candidates: Vec<(String, Vec<String>)> = match home {
            None => state
                .index
                .steps_by_parent
                .iter()
                .map(|(p, s)| (p.clone(), s.iter().cloned().collect()))
                .collect(),
            Some(branch) => {
                let prefix = format!("{branch}.");
                state
                    .index
                    .steps_by_parent
                    .range(branch.to_string()..)
                    .take_while(|(p, _)| *p == branch || p.starts_with(&prefix))
                    .map(|(p, s)| (p.clone(), s.iter().cloned().collect()))
                    .collect()
            }
        };
        let mut found = Vec::new();
        for (parent, steps) in candidates {
            if home.is_some_and(|h| h == parent) || (home.is_none() && parent.is_empty()) {
                // The name less its last component is the home itself (a branch, or nothing).
                found.extend(steps);
                continue;
            }
            if self.is_branch(state, &parent)? {
                continue; // they belong to that branch
            }
            for step in steps {
                if self.home_of(state, &step)?.as_deref() == home {
                    found.push(step);
                }
            }
        }
        Ok(found)
    }

    // --- folding -----------------------------------------------------------------------------

    /// Fold an ended branch: its records and its direct steps' into `BranchLog-<name>.json`,
    /// then the step that holds it into that step's document (and up, while documents are
    /// missing), so runnable's reader finds the branch where it looks.
    pub fn fold_branch(&self, name: &str) -> Result<()> {
        let mut state = self.state()?;
        let _lock = self.lock()?;
        self.catch_up(&mut state)?;
        if self.layout(&mut state)? == Layout::Chunks {
            let ended = self.fold_all_locked(&mut state)?;
            drop((_lock, state));
            if let Some((merged, expected)) = ended {
                self.store_snapshot(&merged, &expected);
            }
            return Ok(());
        }
        let mut branch = name.to_string();
        loop {
            let created = self.fold_document(&mut state, Some(&branch), true)?;
            // The step holding the branch, into its own document.
            let Some(parent) = self.recorded_parent_step(&state, &branch) else {
                return Ok(());
            };
            let home = self.home_of(&mut state, &parent)?;
            let home_created = self.fold_step_into(&mut state, &parent, home.as_deref())?;
            match home {
                Some(next) if home_created || created => branch = next,
                _ => return Ok(()),
            }
        }
    }

    /// Fold a document's own records and its steps'; whether it was created now.
    fn fold_document(
        &self,
        state: &mut State,
        branch: Option<&str>,
        with_steps: bool,
    ) -> Result<bool> {
        let path = match branch {
            Some(name) => self.branch_path(name)?,
            None => self.run_log_path(),
        };
        let key = match branch {
            Some(name) => Key::Branch(name.to_string()),
            None => Key::Run,
        };
        let steps = if with_steps {
            self.steps_homed_in(state, branch)?
        } else {
            Vec::new()
        };
        let bytes = read_whole(&path)?;
        let journal_dir = self.journal_dir();
        let (stored, own_stamp, step_stamps, created) = {
            let mut doc = match &bytes {
                Some(bytes) => Doc::parse(bytes, path.clone())?,
                None => Doc::missing(path.clone()),
            };
            for record in state.index.get(&key) {
                doc.fold_own(record, &journal_dir)?;
            }
            for step in &steps {
                for record in state.index.get(&Key::Step(step.clone())) {
                    doc.fold_step(record, &journal_dir)?;
                }
            }
            if !doc.exists() && !doc.has_fields() {
                return Ok(false); // nothing recorded of this branch
            }
            let stamps: Vec<(String, i64)> = steps
                .iter()
                .map(|s| (s.clone(), doc.child_stamp(s).unwrap_or(0)))
                .collect();
            let stored = doc.changed().then(|| doc.stored());
            (stored, doc.stamp(), stamps, !doc.exists())
        };
        if let Some(stored) = stored {
            self.write_folded(&path, &stored)?;
        }
        if let Some(name) = branch {
            state.documented.insert(name.to_string());
        }
        state.index.prune(&key, own_stamp);
        for (step, stamp) in step_stamps {
            state.index.prune(&Key::Step(step), stamp);
        }
        Ok(created)
    }

    /// Fold one step's records into its home document (a branch's or the run's); whether the
    /// branch document was created now.
    fn fold_step_into(&self, state: &mut State, step: &str, home: Option<&str>) -> Result<bool> {
        let path = match home {
            Some(name) => self.branch_path(name)?,
            None => self.run_log_path(),
        };
        let bytes = read_whole(&path)?;
        let journal_dir = self.journal_dir();
        let key = Key::Step(step.to_string());
        let own_key = home.map(|h| Key::Branch(h.to_string()));
        let (stored, step_stamp, own_stamp, created) = {
            let mut doc = match &bytes {
                Some(bytes) => Doc::parse(bytes, path.clone())?,
                None => Doc::missing(path.clone()),
            };
            if !doc.exists() {
                // A branch document is made with the branch's own fields.
                if let Some(own) = &own_key {
                    for record in state.index.get(own) {
                        doc.fold_own(record, &journal_dir)?;
                    }
                }
            }
            for record in state.index.get(&key) {
                doc.fold_step(record, &journal_dir)?;
            }
            let stored = doc.changed().then(|| doc.stored());
            (
                stored,
                doc.child_stamp(step).unwrap_or(0),
                doc.stamp(),
                !doc.exists(),
            )
        };
        if let Some(stored) = stored {
            self.write_folded(&path, &stored)?;
        }
        state.index.prune(&key, step_stamp);
        if let Some(own) = own_key {
            if created {
                state.index.prune(&own, own_stamp);
            }
            if let Some(name) = home {
                state.documented.insert(name.to_string());
            }
        }
        Ok(created)
    }

    /// The step that holds a branch, if a journal has records of it: the longest dot-prefix of
    /// the branch's name recorded as a step.
    fn recorded_parent_step(&self, state: &State, branch: &str) -> Option<String> {
        let mut prefix = branch;
        while let Some((head, _)) = prefix.rsplit_once('.') {
            let recorded = state
                .index
                .records
                .contains_key(&Key::Step(head.to_string()));
            if !head.is_empty() && recorded {
                return Some(head.to_string());
            }
            prefix = head;
        }
        None
    }

    /// Fold everything (the run ended, or `runlog fold`): every document that a journal record
    /// or a misplaced copy makes stale is written, then every journal is removed.
    pub fn fold_all(&self) -> Result<()> {
        let mut state = self.state()?;
        let lock = self.lock()?;
        self.catch_up(&mut state)?;
        let ended = self.fold_all_locked(&mut state)?;
        // The snapshot is stored without the lock: other writers need not wait for the file
        // clock, and it is checked against the documents as this fold left them.
        drop((lock, state));
        if let Some((merged, expected)) = ended {
            self.store_snapshot(&merged, &expected);
        }
        Ok(())
    }

    /// The fold of everything; when it folded anything, the merged run and the stats of its
    /// documents as the fold left them (for the snapshot).
    fn fold_all_locked(&self, state: &mut State) -> Result<Option<(Vec<u8>, Stats)>> {
        // Taken before the documents are read: one changed after this (by a writer that does
        // not take the lock) no longer has these stats.
        let mut expected = document_stats(&self.dir)?;
        let contents = Contents::read_folder(&self.dir)?;
        let (documents, merged) = {
            let records = state.index.all();
            let tree = contents.tree(&records, false)?;
            (tree.fold_documents(Naming::Folder)?, tree.document())
        };
        let folded_something = !documents.is_empty() || !state.index.cursors.is_empty();
        for (name, bytes) in &documents {
            let stats = self.write_folded(&self.dir.join(name), bytes)?;
            expected.insert(name.clone(), stats);
        }
        if self.options.fsync {
            // The names of these documents and of those earlier folds wrote (whose records
            // the journals kept until now).
            fsync_folder(&self.dir)?;
        }
        // Every record is in a document now (durably, with fsync): the journals can go.
        for name in state.index.cursors.keys() {
            let path = journal_path(&self.dir, name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(CoreError::io("remove", &path, e)),
            }
        }
        state.index = Index::default();
        state.own = None;
        self.spares.release();
        Ok(folded_something.then_some((merged, expected)))
    }

    /// Store the merge of an ended run as its snapshot: by the fold that ended it, so that the
    /// first read reads one file instead of merging every document, or by a full read that
    /// merged it. A cache: a failure to store it (a read-only folder) changes nothing.
    ///
    /// A reader trusts a snapshot whose documents all have the stats it records, so those
    /// must be the stats of what the merge was built from: `expected` holds the stats of the
    /// documents the fold read (taken before it read them) and of those it wrote (taken from
    /// the files it wrote, once named), and the snapshot is stored only if the documents have
    /// exactly these stats at the look. Anything changed since, by any writer, differs.
    ///
    /// A document changed in place (by runnable's own store, say) within the same tick of the
    /// file clock as the look, and to the same size, would keep its stats; so the look counts
    /// only once the clock has moved past every document's last change: the snapshot's temp
    /// file is the probe (its change time is the clock's now), and the look comes after the
    /// probe. Any change after the look then gets a later change time than the one recorded.
    /// Documents a fold has just written need at most one tick (1-10 ms, by the kernel's
    /// timer frequency) before they qualify.
    fn store_snapshot(&self, merged: &[u8], expected: &Stats) {
        if !document_status(merged).is_some_and(|s| s == "SUCCESS" || s == "FAIL") {
            return; // readers only use the snapshot of an ended run
        }
        let path = self.dir.join(SNAPSHOT_NAME);
        let Ok(temp) = crate::writer::temp_path_beside(&path) else {
            return;
        };
        let stored = (|| -> io::Result<bool> {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&temp)?;
            let deadline = std::time::Instant::now() + SNAPSHOT_PROBE_LIMIT;
            loop {
                let probe = file.metadata()?;
                let probe_ns = probe.ctime() * 1_000_000_000 + probe.ctime_nsec();
                let stats = document_stats(&self.dir).map_err(io::Error::other)?;
                if &stats != expected {
                    return Ok(false); // changed since the fold read or wrote it
                }
                if stats
                    .values()
                    .all(|s| change_time(s).is_some_and(|c| c < probe_ns))
                {
                    file.write_all_at(&encode_snapshot(&stats, merged), 0)?;
                    drop(file);
                    fs::rename(&temp, &path)?;
                    return Ok(true);
                }
                if std::time::Instant::now() > deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(1));
                file.write_all_at(b" ", 0)?; // moves the probe's change time to now
            }
        })();
        if !matches!(stored, Ok(true)) {
            let _ = fs::remove_file(&temp);
        }
    }

    /// The journals of the run with the bytes of records each holds (to the end of its last
    /// whole frame; with `fsync` a journal's file is larger, its room made ahead): records not
    /// folded yet (`runlog show`).
    pub fn journals(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for name in list_journals(&self.dir)? {
            let path = journal_path(&self.dir, &name);
            let Some(bytes) = read_from(&path, 0)? else {
                continue; // folded and removed meanwhile
            };
            let shared: Arc<str> = Arc::from(name.as_str());
            let scanned = scan(&bytes, 0, &path, &shared, true)?;
            out.push((name, scanned.end));
        }
        Ok(out)
    }
}

impl Run {
    /// Replace a document with what a fold made of it: a spare file made ahead (`spares`),
    /// or else a temp file, its bytes synced (with `fsync`), named as the document. The folder is not fsynced here: until the journals
    /// go, they hold every record the document holds, so a power cut that undoes the rename
    /// loses nothing; `fold_all` fsyncs the folder once before it removes them. The bytes are
    /// synced before the rename all the same, so no cut can leave the new name with lost bytes.
    ///
    /// Returns the document's stats as [`document_stats`] gives them, from the file written
    /// (after it was named, which changes its change time).
    fn write_folded(&self, path: &Path, data: &[u8]) -> Result<String> {
        if let Some(spare) = self.spares.take() {
            let file = spare.publish(path, data, self.options.fsync)?;
            return file
                .metadata()
                .map(|meta| stat_stamp(&meta))
                .map_err(|e| CoreError::io("stat", path, e));
        }
        let temp = crate::writer::temp_path_beside(path)?;
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&temp)
                .map_err(|e| CoreError::io("create", path, e))?;
            file.write_all(data)
                .map_err(|e| CoreError::io("write", path, e))?;
            if self.options.fsync {
                file.sync_data()
                    .map_err(|e| CoreError::io("fsync", path, e))?;
            }
            fs::rename(&temp, path).map_err(|e| CoreError::io("replace", path, e))?;
            file.metadata()
                .map(|meta| stat_stamp(&meta))
                .map_err(|e| CoreError::io("stat", path, e))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }
}

/// How long every document of a run must have been unchanged before a merge of it is stored
/// as its snapshot. Where file times are coarse (older kernels: one clock tick, a few ms), a
/// document changed in place within the tick of the look that recorded its time could keep
/// that time; one whose time is older than this by the look's own clock cannot.
const SNAPSHOT_SETTLED_NS: i64 = 100_000_000;

/// Each document of a run folder (`RunLog.json`, `BranchLog-*.json`, `StepLog-*.json`) with
/// what changes when it changes: `<inode>-<size>-<mtime ns>-<ctime ns>` (a replace makes a new
/// inode; a rewrite in place moves the times).
/// Each document's stats by its name (see [`document_stats`]).
type Stats = HashMap<String, String>;

/// What identifies a document's state: `<inode>-<size>-<mtime ns>-<ctime ns>`.
fn stat_stamp(meta: &fs::Metadata) -> String {
    format!(
        "{}-{}-{}-{}",
        meta.ino(),
        meta.size(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ctime() * 1_000_000_000 + meta.ctime_nsec()
    )
}

fn document_stats(dir: &Path) -> Result<Stats> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CoreError::NotFound {
                path: dir.join(RUN_LOG_FILE),
            })
        }
        Err(e) => return Err(CoreError::io("list", dir, e)),
    };
    let mut stats = HashMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::io("list", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name != RUN_LOG_FILE && chunk_kind_of(&name).is_none() {
            continue;
        }
        match entry.metadata() {
            Ok(meta) => {
                stats.insert(name, stat_stamp(&meta));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CoreError::io("stat", &dir.join(&name), e)),
        }
    }
    Ok(stats)
}

/// Whether every document's last change is older than [`SNAPSHOT_SETTLED_NS`] now.
fn settled_long_enough(stats: &HashMap<String, String>) -> bool {
    let limit = now_ns() - SNAPSHOT_SETTLED_NS;
    stats
        .values()
        .all(|stamp| change_time(stamp).is_some_and(|ctime| ctime < limit))
}

/// The change time (ns) in a document's stats (see [`document_stats`]).
fn change_time(stamp: &str) -> Option<i64> {
    stamp.rsplit('-').next()?.parse().ok()
}

/// How long the fold that ends a run waits for the file clock to pass its documents' last
/// change before it stores the snapshot (see `store_snapshot`): a few ticks of the slowest
/// timer frequency (100 Hz).
const SNAPSHOT_PROBE_LIMIT: Duration = Duration::from_millis(50);

/// How far a journal grows at a time with `fsync` (see `Run::preallocate`): an append of a
/// few hundred bytes meets a new allocation once in about a hundred.
const PREALLOCATION: u64 = 64 * 1024;

/// This process's journal as it left it (this process is its only writer).
#[derive(Clone)]
struct OwnJournal {
    name: String,
    /// The end of its last frame.
    size: u64,
    /// The end of the room made for it (0: none).
    allocated: u64,
}

struct OpenJournal {
    file: File,
    created: bool,
    own: OwnJournal,
}

/// `count` consecutive stamps, the first later than every stamp handed out in this run and no
/// earlier than now; the lock file keeps the last one. Called with the run's lock held.
fn next_stamps(lock: &File, count: i64, dir: &Path) -> Result<i64> {
    let lock_path = dir.join(LOCK_FILE);
    let mut last = [0u8; 8];
    let read = lock
        .read_at(&mut last, 0)
        .map_err(|e| CoreError::io("read", &lock_path, e))?;
    let last = if read == 8 {
        i64::from_le_bytes(last)
    } else {
        0
    };
    let first = now_ns().max(last.saturating_add(1));
    let new_last = first + count - 1;
    lock.write_all_at(&new_last.to_le_bytes(), 0)
        .map_err(|e| CoreError::io("write", &lock_path, e))?;
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::decode_snapshot;
    use crate::journal::RecordKind;
    use serde_json::{json, Value};

    fn options() -> RunOptions {
        RunOptions {
            fsync: false,
            lock_timeout: Duration::from_secs(5),
        }
    }

    fn new_run(dir: &Path) -> PathBuf {
        let run = dir.join("r");
        fs::create_dir(&run).unwrap();
        fs::write(
            run.join(RUN_LOG_FILE),
            br#"{"run_id":"r","dag_hash":"","tag":"","status":"CREATED","steps":{},"job":null,"parameters":{},"run_config":{}}"#,
        )
        .unwrap();
        fs::write(run.join(LAYOUT_MARKER), crate::chunk::LAYOUT_MARKER_TEXT).unwrap();
        run
    }

    fn rec(kind: RecordKind, target: &str, body: Value) -> NewRecord {
        NewRecord::new(kind, target, body.to_string().into_bytes()).unwrap()
    }

    fn step(name: &str, status: &str) -> NewRecord {
        let short = name.rsplit('.').next().unwrap();
        rec(
            RecordKind::StepPut,
            name,
            json!({"name": short, "internal_name": name, "status": status, "step_type": "task",
                   "message": "", "mock": false, "attempts": [], "branches": {}, "data_catalog": []}),
        )
    }

    fn branch(name: &str, status: &str) -> NewRecord {
        rec(
            RecordKind::BranchPut,
            name,
            json!({"internal_name": name, "status": status, "steps": {}, "parameters": {}}),
        )
    }

    fn full(run: &Run) -> Value {
        serde_json::from_slice(&run.read(false).unwrap().document).unwrap()
    }

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn appended_records_read_back_and_fold_into_runnables_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_run(dir.path());
        let run = Run::new(&path, options());
        run.append(&[step("map", "PROCESSING")]).unwrap();
        for i in 0..3 {
            let b = format!("map.{i}");
            run.append(&[branch(&b, "PROCESSING")]).unwrap();
            run.append(&[rec(
                RecordKind::BranchMerge,
                &b,
                json!({"parameters": {"item": {"kind": "json", "value": i}}}),
            )])
            .unwrap();
            run.append(&[step(&format!("{b}.s"), "CREATED")]).unwrap();
            run.append(&[step(&format!("{b}.s"), "SUCCESS")]).unwrap();
        }
        let before = full(&run);
        assert_eq!(
            keys(&before["steps"]["map"]["branches"]),
            ["map.0", "map.1", "map.2"]
        );
        assert_eq!(
            before["steps"]["map"]["branches"]["map.1"]["steps"]["map.1.s"]["status"],
            "SUCCESS"
        );
        assert_eq!(
            before["steps"]["map"]["branches"]["map.1"]["parameters"]["item"]["value"],
            1
        );
        // The first branch ends: its document, and the map step in RunLog.json.
        // As runnable's executor does: read the branch back, put it with its new status.
        let mut ended: Value =
            serde_json::from_slice(&run.read_branch("map.0").unwrap().unwrap()).unwrap();
        ended["status"] = json!("SUCCESS");
        ended["steps"] = json!({});
        run.append(&[rec(RecordKind::BranchPut, "map.0", ended)])
            .unwrap();
        run.fold_branch("map.0").unwrap();
        let doc: Value =
            serde_json::from_slice(&fs::read(path.join("BranchLog-map.0.json")).unwrap()).unwrap();
        assert_eq!(doc["status"], "SUCCESS");
        assert_eq!(doc["parameters"]["item"]["value"], 0);
        assert_eq!(doc["steps"]["map.0.s"]["status"], "SUCCESS");
        let run_log: Value =
            serde_json::from_slice(&fs::read(path.join(RUN_LOG_FILE)).unwrap()).unwrap();
        assert_eq!(run_log["steps"]["map"]["status"], "PROCESSING");
        assert!(!path.join("BranchLog-map.1.json").exists());
        let mut after = full(&run);
        assert_eq!(
            after["steps"]["map"]["branches"]["map.0"]["status"],
            "SUCCESS"
        );
        after["steps"]["map"]["branches"]["map.0"]["status"] = json!("PROCESSING");
        assert_eq!(after, before, "the fold changed nothing a reader sees");
        // A fresh reader (another process) sees the same.
        let other = Run::new(&path, options());
        assert_eq!(full(&other), full(&run));
        // The run ends: everything folded, the journals gone.
        run.append(&[rec(RecordKind::RunSet, "", json!({"status": "SUCCESS"}))])
            .unwrap();
        let ended = full(&run);
        run.fold_all().unwrap();
        assert!(run.journals().unwrap().is_empty());
        assert_eq!(full(&Run::new(&path, options())), ended);
        assert_eq!(full(&run), ended);
        for i in 1..3 {
            let doc: Value = serde_json::from_slice(
                &fs::read(path.join(format!("BranchLog-map.{i}.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(doc["steps"][format!("map.{i}.s")]["status"], "SUCCESS");
        }
        // Folding again changes nothing.
        let bytes: Vec<Vec<u8>> = ["RunLog.json", "BranchLog-map.1.json"]
            .iter()
            .map(|n| fs::read(path.join(n)).unwrap())
            .collect();
        run.fold_all().unwrap();
        let again: Vec<Vec<u8>> = ["RunLog.json", "BranchLog-map.1.json"]
            .iter()
            .map(|n| fs::read(path.join(n)).unwrap())
            .collect();
        assert_eq!(bytes, again);
    }

    /// A run with one step whose end has been recorded, not folded yet.
    fn ended_run(dir: &Path) -> (PathBuf, Run) {
        let path = new_run(dir);
        let run = Run::new(&path, options());
        run.append(&[step("a", "SUCCESS")]).unwrap();
        run.append(&[rec(RecordKind::RunSet, "", json!({"status": "SUCCESS"}))])
            .unwrap();
        (path, run)
    }

    #[test]
    fn the_end_of_a_run_stores_its_merge_and_a_later_write_is_folded_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, run) = ended_run(dir.path());
        run.fold_all().unwrap();
        let snapshot = fs::read(path.join(SNAPSHOT_NAME)).unwrap();
        let merged = decode_snapshot(&snapshot, &document_stats(&path).unwrap())
            .expect("a snapshot of the documents as they are");
        let merged: Value = serde_json::from_slice(merged).unwrap();
        assert_eq!(merged, full(&Run::new(&path, options())));
        assert_eq!(merged["status"], "SUCCESS");

        // runnable stores the last step once more after the run's end: another process's
        // write, folded at once, and seen by every reader (the snapshot no longer matches).
        let mut again = step("a", "SUCCESS");
        again.body =
            br#"{"name":"a","internal_name":"a","status":"SUCCESS","message":"m1"}"#.to_vec();
        Run::new(&path, options()).append(&[again]).unwrap();
        assert!(run.journals().unwrap().is_empty(), "folded at once");
        let run_log: Value =
            serde_json::from_slice(&fs::read(path.join(RUN_LOG_FILE)).unwrap()).unwrap();
        assert_eq!(run_log["steps"]["a"]["message"], "m1");
        assert_eq!(
            full(&Run::new(&path, options()))["steps"]["a"]["message"],
            "m1"
        );

        // Changed in place right after (as runnable's store writes), to the same size: the
        // stored merge must not hide it. (Kernels with fine-grained change times, 6.13 on,
        // give this change a later time anyway; on older ones the wait in `store_snapshot`
        // is what makes it so.)
        let document = fs::read(path.join(RUN_LOG_FILE)).unwrap();
        let at = document.windows(4).position(|w| w == b"\"m1\"").unwrap();
        let file = OpenOptions::new()
            .write(true)
            .open(path.join(RUN_LOG_FILE))
            .unwrap();
        file.write_all_at(b"\"m2\"", at as u64).unwrap();
        assert_eq!(
            full(&Run::new(&path, options()))["steps"]["a"]["message"],
            "m2"
        );
    }

    #[test]
    fn no_snapshot_is_stored_of_documents_changed_since_the_fold() {
        let dir = tempfile::tempdir().unwrap();
        let (path, run) = ended_run(dir.path());
        let mut state = run.state().unwrap();
        let lock = run.lock().unwrap();
        run.catch_up(&mut state).unwrap();
        let (merged, expected) = run.fold_all_locked(&mut state).unwrap().unwrap();
        drop((lock, state));
        // Another writer replaces RunLog.json between the fold and the snapshot's look.
        let document = fs::read(path.join(RUN_LOG_FILE)).unwrap();
        fs::write(path.join("other"), &document).unwrap();
        fs::rename(path.join("other"), path.join(RUN_LOG_FILE)).unwrap();
        run.store_snapshot(&merged, &expected);
        assert!(!path.join(SNAPSHOT_NAME).exists());
        // Unchanged since: stored.
        run.store_snapshot(&merged, &document_stats(&path).unwrap());
        assert!(path.join(SNAPSHOT_NAME).exists());
    }

    #[test]
    fn with_fsync_a_journal_grows_into_room_made_ahead_which_reads_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_run(dir.path());
        let synced = RunOptions {
            fsync: true,
            ..options()
        };
        let run = Run::new(&path, synced);
        let reader = Run::new(&path, options());
        let mut names = Vec::new();
        // About 300 KiB of records: the room is made again several times.
        for i in 0..400 {
            let name = format!("step-{i:03}-{}", "x".repeat(600));
            run.append(&[step(&name, "SUCCESS")]).unwrap();
            names.push(name);
            if i % 97 == 0 {
                // A reader in between reads on from where it stopped, never past the frames.
                assert_eq!(keys(&full(&reader)["steps"]), names);
            }
        }
        let journals = run.journals().unwrap();
        assert_eq!(journals.len(), 1);
        let file = fs::metadata(journal_path(&path, &journals[0].0))
            .unwrap()
            .len();
        assert_eq!(file % PREALLOCATION, 0, "room made ahead");
        assert!(
            journals[0].1 < file && journals[0].1 > 300_000,
            "the records' bytes"
        );
        assert_eq!(keys(&full(&Run::new(&path, options()))["steps"]), names);
        assert_eq!(keys(&full(&reader)["steps"]), names);
        // The room is part of nothing the fold writes, and goes with the journal.
        run.append(&[rec(RecordKind::RunSet, "", json!({"status": "SUCCESS"}))])
            .unwrap();
        run.fold_all().unwrap();
        assert!(run.journals().unwrap().is_empty());
        assert_eq!(keys(&full(&Run::new(&path, options()))["steps"]), names);
    }

    #[test]
    fn partial_reads_see_documents_and_journals() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_run(dir.path());
        let run = Run::new(&path, options());
        run.append(&[
            step("map", "PROCESSING"),
            branch("map.1", "PROCESSING"),
            step("map.1.a", "SUCCESS"),
        ])
        .unwrap();
        run.append(&[rec(
            RecordKind::RunMerge,
            "",
            json!({"parameters": {"p": {"kind": "json", "value": 1}}}),
        )])
        .unwrap();
        let branch_json: Value =
            serde_json::from_slice(&run.read_branch("map.1").unwrap().unwrap()).unwrap();
        assert_eq!(keys(&branch_json["steps"]), ["map.1.a"]);
        assert!(run.read_branch("map.2").unwrap().is_none());
        let step_json: Value =
            serde_json::from_slice(&run.read_step("map.1.a").unwrap().unwrap()).unwrap();
        assert_eq!(step_json["status"], "SUCCESS");
        assert!(run.read_step("map.1.b").unwrap().is_none());
        let short: Value = serde_json::from_slice(&run.read_run(true).unwrap()).unwrap();
        assert_eq!(keys(&short["steps"]), ["map"]);
        assert_eq!(short["parameters"]["p"]["value"], 1);
        let fields: Value = serde_json::from_slice(&run.read_run(false).unwrap()).unwrap();
        assert_eq!(fields["steps"], json!({}));
        run.append(&[branch("map.1", "SUCCESS")]).unwrap();
        run.fold_branch("map.1").unwrap();
        let other = Run::new(&path, options());
        let step_json: Value =
            serde_json::from_slice(&other.read_step("map.1.a").unwrap().unwrap()).unwrap();
        assert_eq!(step_json["status"], "SUCCESS");
        assert!(other.has_branch("map.1").unwrap() && !other.has_branch("map.9").unwrap());
    }

    #[test]
    fn later_stamps_win_across_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_run(dir.path());
        let (a, b) = (Run::new(&path, options()), Run::new(&path, options()));
        a.append(&[step("s", "FIRST")]).unwrap();
        b.append(&[step("s", "SECOND")]).unwrap();
        a.append(&[rec(RecordKind::RunSet, "", json!({"status": "A"}))])
            .unwrap();
        b.append(&[rec(RecordKind::RunSet, "", json!({"status": "B"}))])
            .unwrap();
        for run in [&a, &b, &Run::new(&path, options())] {
            let doc = full(run);
            assert_eq!(doc["steps"]["s"]["status"], "SECOND");
            assert_eq!(doc["status"], "B");
        }
        assert_eq!(list_journals(&path).unwrap().len(), 2);
    }

    #[test]
    fn a_missing_run_is_not_found_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let run = Run::new(&dir.path().join("nope"), options());
        let err = run.append(&[step("s", "X")]).unwrap_err();
        assert!(matches!(err, CoreError::NotFound { .. }), "{err:?}");
        assert!(!dir.path().join("nope").exists());
        assert!(matches!(run.read(false), Err(CoreError::NotFound { .. })));
    }
}
