//! The catalogue of measurements and their assignment to worker threads.
//!
//! Pure: the main thread reads the KV bucket `<ns>_logs` (in `jetstream`) and hands the
//! entries here; this module validates them, tells what changed, and keeps each measurement
//! on one worker of the fixed pool — balanced when it is added, and never moved while it
//! stays, so a worker's pull state is not thrown away without cause.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::config::is_valid_name;
use crate::jetstream::KvEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    pub name: String,
    pub description: String,
}

/// A KV value as the Transfer client writes it; older clients wrote `key` instead of
/// `measurement`. Unknown fields are ignored.
#[derive(Deserialize)]
struct EntryValue {
    measurement: Option<String>,
    key: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// Validates one entry of the bucket. The error is one line naming what is wrong.
pub fn parse_entry(key: &str, value: &[u8]) -> Result<Measurement, String> {
    if !is_valid_name(key) {
        return Err("the key is not a valid stream name token (letters, digits, `_`, `-`)".into());
    }
    let entry: EntryValue = serde_json::from_slice(value)
        .map_err(|e| format!("the value is not a JSON object with a measurement: {e}"))?;
    let name = entry
        .measurement
        .or(entry.key)
        .unwrap_or_else(|| key.to_string());
    if name != key {
        return Err(format!("the value names measurement `{name}`, not its key"));
    }
    Ok(Measurement {
        name,
        description: entry.description.unwrap_or_default(),
    })
}

/// What a new reading of the bucket changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<Measurement>,
    pub changed: Vec<Measurement>,
    pub removed: Vec<String>,
    /// Entries refused for the first time with this value: `(key, problem)`. An entry that
    /// stays bad is reported once, not at every poll.
    pub invalid: Vec<(String, String)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.invalid.is_empty()
    }
}

/// The measurements in force.
#[derive(Debug, Default)]
pub struct Catalog {
    measurements: BTreeMap<String, Measurement>,
    /// Bad values already reported, by key.
    reported: BTreeMap<String, Vec<u8>>,
}

impl Catalog {
    pub fn measurements(&self) -> impl Iterator<Item = &Measurement> {
        self.measurements.values()
    }

    /// Applies a full reading of the bucket. A bad entry keeps the previous state of its key.
    pub fn update(&mut self, entries: &[KvEntry]) -> Changes {
        let mut changes = Changes::default();
        let mut seen = BTreeSet::new();
        for entry in entries {
            let Some(value) = &entry.value else { continue };
            seen.insert(entry.key.clone());
            match parse_entry(&entry.key, value) {
                Ok(m) => {
                    self.reported.remove(&entry.key);
                    match self.measurements.get(&m.name) {
                        None => changes.added.push(m.clone()),
                        Some(old) if *old != m => changes.changed.push(m.clone()),
                        Some(_) => continue,
                    }
                    self.measurements.insert(m.name.clone(), m);
                }
                Err(problem) => {
                    if self.reported.get(&entry.key) != Some(value) {
                        self.reported.insert(entry.key.clone(), value.clone());
                        changes.invalid.push((entry.key.clone(), problem));
                    }
                }
            }
        }
        let gone: Vec<String> = self
            .measurements
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for name in gone {
            self.measurements.remove(&name);
            changes.removed.push(name);
        }
        self.reported.retain(|key, _| seen.contains(key));
        changes
    }
}

/// Which worker pulls which measurements.
#[derive(Debug)]
pub struct Assignment {
    workers: Vec<BTreeSet<String>>,
}

impl Assignment {
    pub fn new(n_workers: usize) -> Assignment {
        Assignment {
            workers: vec![BTreeSet::new(); n_workers.max(1)],
        }
    }

    pub fn worker_of(&self, name: &str) -> Option<usize> {
        self.workers.iter().position(|set| set.contains(name))
    }

    /// Puts a new measurement on the least loaded worker (the lowest index among equals).
    pub fn add(&mut self, name: &str) -> usize {
        if let Some(worker) = self.worker_of(name) {
            return worker;
        }
        let worker = (0..self.workers.len())
            .min_by_key(|&i| self.workers[i].len())
            .unwrap_or(0);
        self.workers[worker].insert(name.to_string());
        worker
    }

    pub fn remove(&mut self, name: &str) -> Option<usize> {
        let worker = self.worker_of(name)?;
        self.workers[worker].remove(name);
        Some(worker)
    }

    pub fn loads(&self) -> Vec<usize> {
        self.workers.iter().map(BTreeSet::len).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> KvEntry {
        KvEntry {
            key: key.into(),
            value: Some(value.as_bytes().to_vec()),
        }
    }

    fn m(name: &str, description: &str) -> Measurement {
        Measurement {
            name: name.into(),
            description: description.into(),
        }
    }

    #[test]
    fn entry_values() {
        assert_eq!(
            parse_entry("access", br#"{"measurement":"access","description":"web"}"#),
            Ok(m("access", "web"))
        );
        assert_eq!(
            parse_entry("access", br#"{"key":"access","description":"web","ttl":3}"#),
            Ok(m("access", "web"))
        );
        assert_eq!(
            parse_entry("access", br#"{"description":"web"}"#),
            Ok(m("access", "web"))
        );
        assert!(parse_entry("access", b"not json")
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(parse_entry("access", br#"{"measurement":"error"}"#)
            .unwrap_err()
            .contains("`error`, not its key"));
        assert!(parse_entry("a.b", br#"{"measurement":"a.b"}"#)
            .unwrap_err()
            .contains("not a valid stream name"));
        assert!(parse_entry("a b", br#"{}"#).is_err());
    }

    #[test]
    fn updates_report_what_changed_and_bad_entries_once() {
        let mut catalog = Catalog::default();
        let changes = catalog.update(&[
            entry("a", r#"{"measurement":"a"}"#),
            entry("b", r#"{"measurement":"b"}"#),
        ]);
        assert_eq!(changes.added, vec![m("a", ""), m("b", "")]);
        assert!(catalog
            .update(&[
                entry("a", r#"{"measurement":"a"}"#),
                entry("b", r#"{"measurement":"b"}"#)
            ])
            .is_empty());

        // b changes its description, a turns bad (keeps its state), c is bad from the start.
        let entries = [
            entry("a", "{broken"),
            entry("b", r#"{"measurement":"b","description":"x"}"#),
            entry("c", r#"{"measurement":"d"}"#),
        ];
        let changes = catalog.update(&entries);
        assert_eq!(changes.changed, vec![m("b", "x")]);
        assert_eq!(
            changes
                .invalid
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert!(
            changes.removed.is_empty(),
            "a bad entry keeps the previous state of its key"
        );
        assert!(
            catalog.update(&entries).is_empty(),
            "a bad entry is reported once"
        );

        // a is deleted (a delete marker has no value), b stays.
        let changes = catalog.update(&[
            KvEntry {
                key: "a".into(),
                value: None,
            },
            entries[1].clone(),
        ]);
        assert_eq!(changes.removed, vec!["a".to_string()]);
        assert_eq!(
            catalog
                .measurements()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn assignment_is_balanced_and_stable() {
        let mut a = Assignment::new(3);
        let placed: Vec<usize> = ["m1", "m2", "m3", "m4"].iter().map(|n| a.add(n)).collect();
        assert_eq!(placed, [0, 1, 2, 0]);
        assert_eq!(a.add("m2"), 1, "adding again keeps the worker");
        assert_eq!(a.remove("m2"), Some(1));
        assert_eq!(a.worker_of("m4"), Some(0), "others do not move");
        assert_eq!(a.add("m5"), 1, "the freed worker is the least loaded");
        assert_eq!(a.loads(), [2, 1, 1]);
        assert_eq!(a.remove("nope"), None);
    }
}
