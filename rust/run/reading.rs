//! Reading a run: the full run log (from the stored merge of an ended run when it is still
//! good), the run's fields with its root steps, one branch, one step, whether a branch exists,
//! and the journals not folded yet.

use std::sync::Arc;

use super::snapshot::{document_stats, settled_long_before, stats_of};
use super::{Layout, Run, State};
use crate::chunk::RUN_LOG_FILE;
use crate::chunk::{decode_snapshot, document_status, now_ns, SNAPSHOT_NAME};
use crate::error::Result;
use crate::fold::Doc;
use crate::journal::{journal_path, list_journals, read_from, scan, Key, Record, JOURNAL_DIR};
use crate::merger::{check_run_record, in_installed_pool, Contents, MergedRun};
use crate::names::{chunk_file_name, ChunkKind};
use crate::nesting;
use crate::untrusted::Folder;

impl Run {
    /// The full run log, and what a salvage read left out. A read of an ended run that had to
    /// merge its documents stores the merge as the run's snapshot, for the next full read.
    pub fn read(&self, salvage: bool) -> Result<MergedRun> {
        self.read_merged(salvage, true)
    }

    /// The full run log as [`Run::read`] gives it, for a summary: from the stored merge when it
    /// is still good, but a merge made here is not stored. An index summarizes every run that
    /// changed (thousands after a pipeline's run, a hundred thousand in a build), and storing
    /// each merge (a temp file, a second look at every document's stats, a rename) took most
    /// of a summary's time for runs nobody reads in full afterwards; a search never writes into
    /// a run's folder.
    pub fn read_for_summary(&self) -> Result<MergedRun> {
        self.read_merged(false, false)
    }

    fn read_merged(&self, salvage: bool, store_snapshot: bool) -> Result<MergedRun> {
        if salvage {
            // A salvage read uses nothing cached: it reads every journal past the damage.
            let (records, mut skipped) = crate::journal::read_all(&self.dir, true)?;
            let contents = Contents::read_folder(&self.dir, Some(&self.name))?;
            let refs: Vec<&Record> = records.iter().collect();
            let mut tree = contents.tree(&refs, true)?;
            skipped.extend(tree.take_skipped());
            let document = tree.document();
            nesting::check_read(&self.dir, &document)?;
            return Ok(MergedRun { document, skipped });
        }
        let mut state = self.state()?;
        let folder = self.folder()?;
        self.catch_up(&mut state, &folder)?;
        // With no journal, the documents are the whole run: an ended one, unchanged since a
        // full read stored its merge, reads from that.
        let settled = state.index.cursors.is_empty();
        if settled {
            // A cache: one that cannot be read (a link, a FIFO, past the size cap) is no
            // snapshot, and the next merge replaces it. One that reads back whole was built
            // from these very documents (their stats and its hash say so), which the merge that
            // stored it checked: it is handed out as it is, unchecked (a second pass over every
            // byte of the fastest read). RunLog.json is not read for it: a snapshot is stored
            // only for an ended run, against RunLog.json's stats among the others, so the same
            // stats are that ended document; the merge must name this run, as RunLog.json must.
            let snapshot = self.read_document(&folder, SNAPSHOT_NAME).ok().flatten();
            if let Some(snapshot) = &snapshot {
                if let Ok(now) = document_stats(&self.dir) {
                    let stored = decode_snapshot(snapshot, &now)
                        .filter(|document| names_run(document, &self.name));
                    if let Some(document) = stored {
                        return Ok(MergedRun {
                            document: document.to_vec(),
                            skipped: Vec::new(),
                        });
                    }
                }
            }
        }
        let read_started_ns = now_ns();
        // RunLog.json among the others: a missing one, or one naming another run, fails the
        // read as the merge would fail it; its status says whether the merge may be stored.
        let contents = Contents::read_folder_in(&folder, &self.dir, Some(&self.name))?;
        let store_merge = store_snapshot
            && settled
            && document_status(&contents.run_log).is_some_and(|s| s == "SUCCESS" || s == "FAIL");
        // The merge is stored against the stamps each document's open saw before its bytes
        // were read (no stat of its own: a thousand-branch run's first read took a thousand
        // stats more, twice), and only when every document had last changed well before the
        // read began (SNAPSHOT_SETTLED_NS): a change made after those stamps then has a later
        // change time however coarse the file clock, so no later state of a document can match
        // them, and the store need not look at the documents again.
        let stats = (store_merge && settled_long_before(&contents.stamps, read_started_ns))
            .then(|| stats_of(&contents.stamps));
        let records = state.index.all();
        let tree = contents.tree(&records, false)?;
        let document = tree.document();
        drop(tree);
        let Some(stats) = stats else {
            nesting::check_read(&self.dir, &document)?;
            return Ok(MergedRun {
                document,
                skipped: Vec::new(),
            });
        };
        // An ended run with no journal (so the merge's status is RunLog.json's): checked, and
        // meanwhile on the other core hashed and written to a temp file, which is named as the
        // run's snapshot only if the check passed (readers hand a snapshot out unchecked).
        let check = || nesting::check_read(&self.dir, &document);
        let write = || self.write_settled_snapshot(&document, &stats);
        let (checked, temp) = if in_installed_pool() {
            rayon::join(check, write)
        } else {
            (check(), write())
        };
        if let Some(temp) = temp {
            self.name_snapshot(&temp, checked.is_ok());
        }
        checked?;
        Ok(MergedRun {
            document,
            skipped: Vec::new(),
        })
    }

    /// The run's fields with its root steps (each without branches), as runnable's chunked
    /// store reads a run that is not full; with `steps: false`, the fields alone.
    pub fn read_run(&self, steps: bool) -> Result<Vec<u8>> {
        let mut state = self.state()?;
        let folder = self.folder()?;
        self.catch_up(&mut state, &folder)?;
        let layout = self.layout(&mut state, &folder)?;
        if steps && layout != Layout::Journals {
            // Steps may sit in files of their own (format 1, magnus): the whole tree says.
            return self.with_tree(&mut state, |tree| Ok(tree.shallow()));
        }
        let root_steps = if steps {
            self.steps_homed_in(&mut state, &folder, None)?
        } else {
            Vec::new()
        };
        let path = self.run_log_path();
        let bytes = self.read_run_log(&folder)?;
        let mut doc = Doc::parse(&bytes, path)?;
        let journal_dir = self.journal_dir();
        for record in state.index.get(&Key::Run) {
            check_run_record(record, &self.name, &journal_dir)?;
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
        let document = chunk_file_name(ChunkKind::Branch, name)?;
        let mut state = self.state()?;
        let folder = self.folder()?;
        self.catch_up(&mut state, &folder)?;
        let layout = self.layout(&mut state, &folder)?;
        if layout == Layout::Chunks {
            return self.with_tree(&mut state, |tree| Ok(tree.branch(name)));
        }
        let found = {
            let bytes = self.read_document(&folder, &document)?;
            let mut doc = match &bytes {
                Some(bytes) => Doc::parse(bytes, path)?,
                None => Doc::missing(path),
            };
            let journal_dir = self.journal_dir();
            let steps = self.steps_homed_in(&mut state, &folder, Some(name))?;
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
        let folder = self.folder()?;
        self.catch_up(&mut state, &folder)?;
        let layout = self.layout(&mut state, &folder)?;
        let home = self.home_of(&mut state, &folder, name)?;
        let (path, document) = match &home {
            Some(branch) => (
                self.branch_path(branch)?,
                chunk_file_name(ChunkKind::Branch, branch)?,
            ),
            None => (self.run_log_path(), RUN_LOG_FILE.to_string()),
        };
        let journal_dir = self.journal_dir();
        let found = {
            let bytes = match &home {
                Some(_) => self.read_document(&folder, &document)?,
                None => Some(self.read_run_log(&folder)?),
            };
            let mut doc = match &bytes {
                Some(bytes) => Doc::parse(bytes, path)?,
                None => Doc::missing(path),
            };
            let chunk_name = chunk_file_name(ChunkKind::Step, name)?;
            let chunk_path = self.dir.join(&chunk_name);
            let chunk = if layout == Layout::Chunks {
                self.read_document(&folder, &chunk_name)?
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
        let folder = self.folder()?;
        self.catch_up(&mut state, &folder)?;
        let layout = self.layout(&mut state, &folder)?;
        if layout != Layout::Chunks && self.is_branch(&mut state, &folder, name)? {
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
        let contents = Contents::read_folder(&self.dir, Some(&self.name))?;
        let records = state.index.all();
        let tree = contents.tree(&records, false)?;
        read(&tree)
    }

    /// Whether `name` is a branch: recorded in a journal, or with a document.
    fn is_branch(&self, state: &mut State, folder: &Folder, name: &str) -> Result<bool> {
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
        let document = chunk_file_name(ChunkKind::Branch, name)?;
        if self.has_document(folder, &document)? {
            state.documented.insert(name.to_string());
            return Ok(true);
        }
        Ok(false)
    }

    /// The branch a step belongs to: the longest dot-prefix of its name that is a branch
    /// (docs/format.md, "The run log JSON"); None for a root step.
    pub(super) fn home_of(
        &self,
        state: &mut State,
        folder: &Folder,
        step: &str,
    ) -> Result<Option<String>> {
        let mut prefix = step;
        while let Some((head, _)) = prefix.rsplit_once('.') {
            if !head.is_empty() && self.is_branch(state, folder, head)? {
                return Ok(Some(head.to_string()));
            }
            prefix = head;
        }
        Ok(None)
    }

    /// The steps with records whose home is `home` (a branch, or the run for None).
    pub(super) fn steps_homed_in(
        &self,
        state: &mut State,
        folder: &Folder,
        home: Option<&str>,
    ) -> Result<Vec<String>> {
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
            if self.is_branch(state, folder, &parent)? {
                continue; // they belong to that branch
            }
            for step in steps {
                if self.home_of(state, folder, &step)?.as_deref() == home {
                    found.push(step);
                }
            }
        }
        Ok(found)
    }

    /// The journals of the run with the bytes of records each holds (to the end of its last
    /// whole frame; with `fsync` a journal's file is larger, its room made ahead): records not
    /// folded yet (`runlog show`).
    pub fn journals(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let folder = self.folder()?;
        for name in list_journals(&self.dir)? {
            let path = journal_path(&self.dir, &name);
            let below = self.below(JOURNAL_DIR).join(&name);
            let Some(bytes) = read_from(&folder, &below, 0)? else {
                continue; // folded and removed meanwhile
            };
            let shared: Arc<str> = Arc::from(name.as_str());
            let scanned = scan(&bytes, 0, &path, &shared, true)?;
            out.push((name, scanned.end));
        }
        Ok(out)
    }
}

/// Whether a merged run log names run `name` in its first field, as every merge writes it
/// (`{"run_id":"<name>",...`): a stored merge is handed out only in the folder of the run it
/// was made for. Any other start (escapes, another order) says no, and the run is read from
/// its documents, which check the name themselves.
pub(super) fn names_run(document: &[u8], name: &str) -> bool {
    let Some(rest) = document.strip_prefix(b"{\"run_id\":".as_slice()) else {
        return false;
    };
    let Ok(quoted) = serde_json::to_vec(name) else {
        return false;
    };
    rest.strip_prefix(quoted.as_slice())
        .is_some_and(|after| matches!(after.first(), Some(b',' | b'}')))
}
