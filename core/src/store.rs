//! The run store: JSONL tables appended and flushed one finished unit of work at a time, so a
//! run killed at any moment (even `kill -9`) keeps everything it finished and resumes from there.
//!
//! A unit that spans several tables (one item's critiques, refinements, verdicts and CU) is
//! committed by its last record: detail tables are written first and the commit table last;
//! on resume, [`RunStore::recover`] drops a torn last line and every detail record whose unit
//! has no commit record, so a half-written unit is redone from scratch, never duplicated.
//!
//! One process at a time: [`RunStore::open`] takes an exclusive advisory lock on the
//! directory's `.lock` file (which holds the holder's pid) for the life of the store, so two
//! runs never append to the same tables.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// The lock file of a run directory.
pub const LOCK_FILE: &str = ".lock";

/// How far an append is carried before it counts as done.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Every append to a run table is synced to the disk before the run goes on, so a
    /// committed unit survives power loss too.
    #[default]
    Commit,
    /// Appends are written, not synced: they survive the process being killed, and the
    /// operating system writes them out in its own time.
    Fast,
}

/// A run directory, locked against other stores (in this process or another) while any
/// clone of it lives.
#[derive(Debug, Clone)]
pub struct RunStore {
    dir: PathBuf,
    durability: Durability,
    _lock: Arc<DirLock>,
}

/// The open, locked `.lock` file; closing it releases the lock.
#[derive(Debug)]
struct DirLock {
    _file: File,
}

impl RunStore {
    /// Opens (and creates) a run directory and locks it; fails at once, naming the directory
    /// and the holder's pid, if another store holds it.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(dir, Durability::default())
    }

    /// [`RunStore::open`] with the durability of appends.
    pub fn open_with(dir: impl Into<PathBuf>, durability: Durability) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let lock = DirLock::take(&dir)?;
        Ok(Self {
            dir,
            durability,
            _lock: Arc::new(lock),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a file in the run directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Appends records as complete lines with one write; with [`Durability::Commit`], syncs
    /// the file (and the directory, for a new file) before returning.
    pub fn append<T: Serialize>(&self, table: &str, records: &[T]) -> Result<()> {
        let path = self.path(table);
        let created = !path.exists();
        let file = append_lines(&path, records)?;
        if self.durability == Durability::Commit {
            file.sync_data().map_err(|e| Error::io(&path, e))?;
            if created {
                sync_parent(&path)?;
            }
        }
        Ok(())
    }

    /// All records of a table (empty if it does not exist yet).
    pub fn read<T: DeserializeOwned>(&self, table: &str) -> Result<Vec<T>> {
        let path = self.path(table);
        if !path.exists() {
            return Ok(Vec::new());
        }
        read_jsonl(&path)
    }

    /// Makes the tables consistent after a crash: drops a torn last line in every table, then
    /// drops detail records (matched on `key`) whose unit has no record in `commit`.
    /// Returns the committed keys.
    pub fn recover(&self, details: &[&str], commit: &str, key: &str) -> Result<HashSet<String>> {
        for table in details.iter().chain(std::iter::once(&commit)) {
            drop_torn_line(&self.path(table))?;
        }
        let committed: HashSet<String> = self
            .read::<Value>(commit)?
            .iter()
            .filter_map(|r| r.get(key).and_then(Value::as_str).map(str::to_string))
            .collect();
        for table in details {
            let path = self.path(table);
            if !path.exists() {
                continue;
            }
            let records: Vec<Value> = read_jsonl(&path)?;
            let kept: Vec<&Value> = records
                .iter()
                .filter(|r| {
                    r.get(key)
                        .and_then(Value::as_str)
                        .is_some_and(|k| committed.contains(k))
                })
                .collect();
            if kept.len() != records.len() {
                let mut text = String::new();
                for record in kept {
                    text.push_str(&record.to_string());
                    text.push('\n');
                }
                write_atomic(&path, text.as_bytes())?;
            }
        }
        Ok(committed)
    }

    /// [`RunStore::recover`], then the same check the other way: a committed unit whose
    /// detail records are not all there (a torn or lost line under a commit that was
    /// written) is dropped from every table, commit included, so that it is redone rather
    /// than trained on incomplete. `details` pairs each detail table with the number of
    /// records one unit has in it. Returns the units that stay committed.
    pub fn recover_complete(
        &self,
        details: &[(&str, usize)],
        commit: &str,
        key: &str,
    ) -> Result<HashSet<String>> {
        let tables: Vec<&str> = details.iter().map(|(t, _)| *t).collect();
        let mut committed = self.recover(&tables, commit, key)?;
        let mut incomplete = HashSet::new();
        for (table, expected) in details {
            let mut counts: std::collections::HashMap<String, usize> = Default::default();
            for record in self.read::<Value>(table)? {
                if let Some(unit) = record.get(key).and_then(Value::as_str) {
                    *counts.entry(unit.to_string()).or_default() += 1;
                }
            }
            for unit in &committed {
                let found = counts.get(unit).copied().unwrap_or(0);
                if found != *expected {
                    incomplete.insert(unit.clone());
                    tracing::warn!(
                        "{}: unit `{unit}` has {found} records of {expected} in {table}; it is redone",
                        self.dir.display()
                    );
                }
            }
        }
        if !incomplete.is_empty() {
            for table in tables.iter().chain(std::iter::once(&commit)) {
                self.drop_units(table, key, &incomplete)?;
            }
            committed.retain(|unit| !incomplete.contains(unit));
        }
        Ok(committed)
    }

    /// Rewrites a table without the records of some units.
    fn drop_units(&self, table: &str, key: &str, units: &HashSet<String>) -> Result<()> {
        let path = self.path(table);
        if !path.exists() {
            return Ok(());
        }
        let records: Vec<Value> = read_jsonl(&path)?;
        let mut text = String::new();
        for record in &records {
            let unit = record.get(key).and_then(Value::as_str);
            if !unit.is_some_and(|u| units.contains(u)) {
                text.push_str(&record.to_string());
                text.push('\n');
            }
        }
        write_atomic(&path, text.as_bytes())
    }

    /// Writes a whole file atomically (temporary file, then rename).
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path(name), bytes)
    }

    /// Replaces a table with `records`, atomically: a reader sees the old table or the new.
    pub fn write_table<T: Serialize>(&self, table: &str, records: &[T]) -> Result<()> {
        let path = self.path(table);
        write_atomic(&path, jsonl_text(&path, records)?.as_bytes())
    }
}

impl DirLock {
    fn take(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                return Err(Error::File {
                    path: dir.to_path_buf(),
                    message: format!(
                        "the run directory is in use by {holder} (lock file {}); wait for it to finish or use another --out directory",
                        path.display()
                    ),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        file.rewind().map_err(|e| Error::io(&path, e))?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        file.flush().map_err(|e| Error::io(&path, e))?;
        Ok(DirLock { _file: file })
    }
}

/// Appends records as complete lines with one write, then flushes.
pub fn append_jsonl<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    append_lines(path, records).map(drop)
}

/// `records` as JSON lines, each ending with a newline; `path` names the table in errors.
fn jsonl_text<T: Serialize>(path: &Path, records: &[T]) -> Result<String> {
    let mut text = String::new();
    for record in records {
        let line = serde_json::to_string(record).map_err(|e| Error::File {
            path: path.to_path_buf(),
            message: format!("cannot serialize record: {e}"),
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// [`append_jsonl`], returning the open file.
fn append_lines<T: Serialize>(path: &Path, records: &[T]) -> Result<File> {
    let text = jsonl_text(path, records)?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    file.flush().map_err(|e| Error::io(path, e))?;
    Ok(file)
}

/// Reads a JSONL file; a malformed line is an error naming the file and the line. Blank lines
/// are skipped.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            line: index + 1,
            message: format!("malformed JSON record: {e}"),
        })?;
        out.push(record);
    }
    Ok(out)
}

/// Cuts a last line that has no newline (a write torn by a crash).
fn drop_torn_line(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.set_len(keep as u64).map_err(|e| Error::io(path, e))
}

/// Writes a file atomically: a temporary file beside it, flushed, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = temp_path(path);
    let written = (|| {
        let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        // The rename itself is durable only once the directory is synced.
        sync_parent(path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Syncs the directory holding `path`, so that a new or renamed entry survives power loss.
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(parent, e))
}

/// `NAME.PID.N.tmp` beside `path`: unique per process and per write, so two writers (threads
/// or processes) never share a temporary file.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        "{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_written_table_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        store
            .append("t.jsonl", &[json!({"a": 1}), json!({"a": 2})])
            .unwrap();
        store.write_table("t.jsonl", &[json!({"a": 3})]).unwrap();
        assert_eq!(
            store.read::<Value>("t.jsonl").unwrap(),
            vec![json!({"a": 3})]
        );
        store.append("t.jsonl", &[json!({"a": 4})]).unwrap();
        assert_eq!(store.read::<Value>("t.jsonl").unwrap().len(), 2);
    }

    #[test]
    fn a_committed_unit_with_a_torn_detail_line_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        for unit in ["a", "b"] {
            store
                .append(
                    "details.jsonl",
                    &[json!({"id": unit, "n": 0}), json!({"id": unit, "n": 1})],
                )
                .unwrap();
            store
                .append("commit.jsonl", &[json!({"id": unit})])
                .unwrap();
        }
        // Unit `b`'s last detail record is torn, though `b` was committed.
        let path = store.path("details.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 5]).unwrap();
        let committed = store
            .recover_complete(&[("details.jsonl", 2)], "commit.jsonl", "id")
            .unwrap();
        assert_eq!(committed, HashSet::from(["a".to_string()]));
        let details: Vec<Value> = store.read("details.jsonl").unwrap();
        let commits: Vec<Value> = store.read("commit.jsonl").unwrap();
        assert_eq!(details.len(), 2, "{details:?}");
        assert_eq!(commits, vec![json!({"id": "a"})]);
    }

    #[test]
    fn recover_drops_torn_lines_and_uncommitted_units() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        store
            .append(
                "detail.jsonl",
                &[
                    json!({"item_id": "a", "x": 1}),
                    json!({"item_id": "b", "x": 2}),
                ],
            )
            .unwrap();
        store
            .append("commit.jsonl", &[json!({"item_id": "a"})])
            .unwrap();
        // A torn write of b's commit record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(store.path("commit.jsonl"))
            .unwrap();
        f.write_all(b"{\"item_id\": \"b").unwrap();
        drop(f);
        let committed = store
            .recover(&["detail.jsonl"], "commit.jsonl", "item_id")
            .unwrap();
        assert_eq!(
            committed.into_iter().collect::<Vec<_>>(),
            vec!["a".to_string()]
        );
        let detail: Vec<Value> = store.read("detail.jsonl").unwrap();
        assert_eq!(detail, vec![json!({"item_id": "a", "x": 1})]);
        let commit: Vec<Value> = store.read("commit.jsonl").unwrap();
        assert_eq!(commit.len(), 1);
    }

    #[test]
    fn a_run_directory_has_one_store_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunStore::open(dir.path()).unwrap();
        let clone = first.clone();
        let err = RunStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(LOCK_FILE))
                .unwrap()
                .trim(),
            std::process::id().to_string()
        );
        // Every clone holds the lock; the last one dropped releases it.
        drop(first);
        assert!(RunStore::open(dir.path()).is_err());
        drop(clone);
        let again = RunStore::open(dir.path()).unwrap();
        again.append("t.jsonl", &[json!({"a": 1})]).unwrap();
        assert_eq!(again.read::<Value>("t.jsonl").unwrap().len(), 1);
    }

    #[test]
    fn concurrent_atomic_writes_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let texts: Vec<String> = (0..8).map(|i| format!("{i}").repeat(200_000)).collect();
        std::thread::scope(|scope| {
            let writers: Vec<_> = texts
                .iter()
                .map(|text| {
                    let path = &path;
                    scope.spawn(move || {
                        (0..5)
                            .map(|_| write_atomic(path, text.as_bytes()))
                            .collect::<Result<Vec<()>>>()
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap().unwrap();
            }
        });
        // The file is one writer's whole text, and no temporary file is left behind.
        let last = fs::read_to_string(&path).unwrap();
        assert!(texts.contains(&last), "a mix of writes");
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["report.json".to_string()]);
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        fs::write(&path, "{\"a\": 1}\n\n{oops\n").unwrap();
        let err = read_jsonl::<Value>(&path).unwrap_err().to_string();
        assert!(err.contains("d.jsonl, line 3"), "{err}");
    }
}
