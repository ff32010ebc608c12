//! The records a store object has read from a run's journals, by what they are about, and how
//! far it has read each journal.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::journal::{Key, Record};

/// The records read from the run's journals, by what they are about.
#[derive(Default)]
pub(super) struct Index {
    /// How far each journal has been read.
    pub(super) cursors: BTreeMap<String, u64>,
    pub(super) records: HashMap<Key, Vec<Record>>,
    /// Step names by their name less the last component (runnable's parent branch), "" for
    /// names without a dot.
    pub(super) steps_by_parent: BTreeMap<String, BTreeSet<String>>,
}

impl Index {
    pub(super) fn add(&mut self, record: Record) {
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

    pub(super) fn get(&self, key: &Key) -> &[Record] {
        self.records.get(key).map_or(&[], Vec::as_slice)
    }

    /// Drop the records of `key` up to `stamp`: they are folded.
    pub(super) fn prune(&mut self, key: &Key, stamp: i64) {
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
    pub(super) fn forget_journals(&mut self, gone: &HashSet<String>) {
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

    pub(super) fn all(&self) -> Vec<&Record> {
        self.records.values().flatten().collect()
    }
}
