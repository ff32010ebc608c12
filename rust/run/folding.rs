//! Folding a run's journal records into runnable's documents: an ended branch into its
//! `BranchLog` (and the step holding it into its own document), or everything at the run's end,
//! after which the journals go.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::index::Index;
use super::snapshot::{stat_stamp, stats_of, Stats};
use super::{Layout, Run, State};
use crate::chunk::RUN_LOG_FILE;
use crate::error::{CoreError, Result};
use crate::fold::Doc;
use crate::journal::{journal_path, Key, JOURNAL_DIR};
use crate::merger::{check_run_record, Contents, Naming};
use crate::names::{chunk_file_name, ChunkKind};
use crate::untrusted::Folder;
use crate::writer::fsync_folder;

impl Run {
    /// Fold an ended branch: its records and its direct steps' into `BranchLog-<name>.json`,
    /// then the step that holds it into that step's document (and up, while documents are
    /// missing), so runnable's reader finds the branch where it looks.
    pub fn fold_branch(&self, name: &str) -> Result<()> {
        let mut state = self.state()?;
        let folder = self.folder()?;
        let _lock = self.lock(&folder)?;
        self.catch_up(&mut state, &folder)?;
        if self.layout(&mut state, &folder)? == Layout::Chunks {
            let ended = self.fold_all_locked(&mut state)?;
            drop((_lock, state));
            if let Some((merged, expected)) = ended {
                self.store_snapshot(&merged, &expected);
            }
            return Ok(());
        }
        let mut branch = name.to_string();
        loop {
            let created = self.fold_document(&mut state, &folder, Some(&branch), true)?;
            // The step holding the branch, into its own document.
            let Some(parent) = self.recorded_parent_step(&state, &branch) else {
                return Ok(());
            };
            let home = self.home_of(&mut state, &folder, &parent)?;
            let home_created =
                self.fold_step_into(&mut state, &folder, &parent, home.as_deref())?;
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
        folder: &Folder,
        branch: Option<&str>,
        with_steps: bool,
    ) -> Result<bool> {
        let path = match branch {
            Some(name) => self.branch_path(name)?,
            None => self.run_log_path(),
        };
        let document = document_name(branch)?;
        let key = match branch {
            Some(name) => Key::Branch(name.to_string()),
            None => Key::Run,
        };
        let steps = if with_steps {
            self.steps_homed_in(state, folder, branch)?
        } else {
            Vec::new()
        };
        let bytes = self.read_document(folder, &document)?;
        let journal_dir = self.journal_dir();
        let (stored, own_stamp, step_stamps, created) = {
            let mut doc = match &bytes {
                Some(bytes) => Doc::parse(bytes, path.clone())?,
                None => Doc::missing(path.clone()),
            };
            for record in state.index.get(&key) {
                if key == Key::Run {
                    check_run_record(record, &self.name, &journal_dir)?;
                }
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
    fn fold_step_into(
        &self,
        state: &mut State,
        folder: &Folder,
        step: &str,
        home: Option<&str>,
    ) -> Result<bool> {
        let path = match home {
            Some(name) => self.branch_path(name)?,
            None => self.run_log_path(),
        };
        let bytes = self.read_document(folder, &document_name(home)?)?;
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
        let folder = self.folder()?;
        let lock = self.lock(&folder)?;
        self.catch_up(&mut state, &folder)?;
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
    pub(super) fn fold_all_locked(&self, state: &mut State) -> Result<Option<(Vec<u8>, Stats)>> {
        let contents = Contents::read_folder(&self.dir, Some(&self.name))?;
        // As each document's open saw it, before its bytes were read: one changed after this
        // (by a writer that does not take the lock) no longer has these stats.
        let mut expected = stats_of(&contents.stamps);
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
        self.remove_journal_folder();
        self.spares.release();
        Ok(folded_something.then_some((merged, expected)))
    }

    /// Remove `.journals/` once the fold removed every journal, under the lock that an append
    /// takes to make it again: a scan of every run by an index (and any reader's listing of
    /// the run) then looks at one file less per ended run. A folder that is not empty (a file
    /// not ours in it) stays, and so does one that cannot be removed: it is only a cost. Not
    /// synced: a power cut that brings it back brings back an empty folder, or journals whose
    /// records the synced documents hold (a reader skips them).
    fn remove_journal_folder(&self) {
        let Ok(folder) = self.folder() else { return };
        if let Some(run) = folder.folder_inside(std::ffi::OsStr::new(&self.name)) {
            run.remove_empty_folder(std::ffi::OsStr::new(JOURNAL_DIR));
        }
    }

    /// Replace a document with what a fold made of it: a spare file made ahead (`spares`),
    /// or else a temp file, its bytes synced (with `fsync`), named as the document. The folder
    /// is not fsynced here: until the journals go, they hold every record the document holds,
    /// so a power cut that undoes the rename loses nothing; `fold_all` fsyncs the folder once
    /// before it removes them. The bytes are synced before the rename all the same, so no cut
    /// can leave the new name with lost bytes.
    ///
    /// Returns the document's stats as [`document_stats`] gives them, from the file written
    /// (after it was named, which changes its change time).
    fn write_folded(&self, path: &Path, data: &[u8]) -> Result<String> {
        if data.len() as u64 > crate::untrusted::MAX_FILE_BYTES {
            // A reader would refuse it; the records stay in their journals, where they are read.
            return Err(CoreError::InvalidArgument(format!(
                "{} would be {} bytes, more than the {} a store reads",
                path.display(),
                data.len(),
                crate::untrusted::MAX_FILE_BYTES
            )));
        }
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

/// The file name of a branch's document, or of the run's for `None`.
fn document_name(branch: Option<&str>) -> Result<String> {
    Ok(match branch {
        Some(name) => chunk_file_name(ChunkKind::Branch, name)?,
        None => RUN_LOG_FILE.to_string(),
    })
}
