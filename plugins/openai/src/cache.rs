//! The persistent call cache: content-addressed answers in an append-only JSONL file.
//!
//! A key is the SHA-256 of the request body (model, sampling parameters, messages, seed)
//! and the sample index, never of the endpoint or the API key. Each answer is appended with
//! one write as soon as it arrives, so a run killed with `kill -9` loses only the calls in
//! flight; on open, a torn last line is cut off and every complete line is read back.
//!
//! Several processes may share one file (`cache_path`): each append, and the read and cut
//! on open, hold an exclusive advisory lock on the file, so an open never cuts a line that
//! another process is still writing.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rco_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a call returned, as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    /// Summed log-probability of the answer's tokens, when asked for and given.
    #[serde(default)]
    pub logprob: Option<f64>,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// The most likely tokens at the answer's first position with their log-probabilities,
    /// when asked for (`top_logprobs`) and given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_top_logprobs: Option<Vec<(String, f64)>>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    answer: Answer,
}

pub struct CallCache {
    path: PathBuf,
    entries: Mutex<HashMap<String, Answer>>,
    file: Mutex<File>,
}

/// The key of a call: the serialized request body and the sample index.
pub fn key(body: &str, sample: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(body.as_bytes());
    hasher.update(format!("\nsample {sample}").as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl CallCache {
    /// The cache at `path`, shared by every plugin of the process that names the same file.
    pub fn shared(path: &Path) -> Result<Arc<CallCache>> {
        static OPEN: OnceLock<Mutex<HashMap<PathBuf, Arc<CallCache>>>> = OnceLock::new();
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let canonical = path
            .parent()
            .and_then(|d| std::fs::create_dir_all(d).ok().and(d.canonicalize().ok()))
            .map(|d| d.join(path.file_name().unwrap_or_default()))
            .unwrap_or_else(|| path.to_path_buf());
        if let Some(cache) = open.get(&canonical) {
            return Ok(cache.clone());
        }
        let cache = Arc::new(CallCache::open(&canonical)?);
        open.insert(canonical, cache.clone());
        Ok(cache)
    }

    /// Reads the file (cutting a torn last line) and opens it for appending. The read and the
    /// cut hold the file's lock, so a line another process is appending is waited for.
    pub fn open(path: &Path) -> Result<CallCache> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.lock().map_err(|e| Error::io(path, e))?;
        let read = read_locked(&mut file, path);
        let unlocked = file.unlock().map_err(|e| Error::io(path, e));
        let entries = read?;
        unlocked?;
        Ok(CallCache {
            path: path.to_path_buf(),
            entries: Mutex::new(entries),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &str) -> Option<Answer> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    /// Appends an answer with one write and remembers it.
    pub fn put(&self, key: &str, answer: &Answer) -> Result<()> {
        let mut line = serde_json::to_string(&Line {
            key: key.to_string(),
            answer: answer.clone(),
        })
        .map_err(|e| Error::Other(e.to_string()))?;
        line.push('\n');
        {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            // Held while the line is written: an open in another process waits for it.
            file.lock().map_err(|e| Error::io(&self.path, e))?;
            let written = file.write_all(line.as_bytes());
            let unlocked = file.unlock();
            written.map_err(|e| Error::io(&self.path, e))?;
            unlocked.map_err(|e| Error::io(&self.path, e))?;
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), answer.clone());
        Ok(())
    }
}

/// Every complete line of the locked file; a torn last line is cut off.
fn read_locked(file: &mut File, path: &Path) -> Result<HashMap<String, Answer>> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut entries = HashMap::new();
    for line in bytes[..complete].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        // A line that does not parse was torn by a crash in an older version of the
        // file's writer; it is skipped, and its call is made again.
        if let Ok(line) = serde_json::from_slice::<Line>(line) {
            entries.insert(line.key, line.answer);
        }
    }
    if complete < bytes.len() {
        file.set_len(complete as u64)
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer {
        Answer {
            text: text.into(),
            logprob: None,
            prompt_tokens: 3,
            completion_tokens: 2,
            finish_reason: Some("stop".into()),
            first_top_logprobs: None,
        }
    }

    #[test]
    fn keeps_answers_across_opens_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.jsonl");
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let (k0, k1) = (key(&body.to_string(), 0), key(&body.to_string(), 1));
        assert_ne!(k0, k1);
        {
            let cache = CallCache::open(&path).unwrap();
            cache.put(&k0, &answer("zero")).unwrap();
            cache.put(&k1, &answer("one")).unwrap();
        }
        // A crash in the middle of a third append.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"key\":\"abc\",\"ans");
        std::fs::write(&path, &bytes).unwrap();
        let cache = CallCache::open(&path).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&k1).unwrap().text, "one");
        cache.put("k2", &answer("two")).unwrap();
        let again = CallCache::open(&path).unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(again.get("k2").unwrap().text, "two");
    }

    #[test]
    fn an_open_waits_for_a_line_another_writer_is_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.jsonl");
        CallCache::open(&path)
            .unwrap()
            .put("k0", &answer("zero"))
            .unwrap();
        let mut line = serde_json::to_string(&Line {
            key: "k1".into(),
            answer: answer("one"),
        })
        .unwrap();
        line.push('\n');
        let (head, tail) = line.split_at(line.len() / 2);
        // Another process's writer: it holds the lock and has written half its line.
        let mut writer = OpenOptions::new().append(true).open(&path).unwrap();
        writer.lock().unwrap();
        writer.write_all(head.as_bytes()).unwrap();
        let opener = {
            let path = path.clone();
            std::thread::spawn(move || CallCache::open(&path).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        writer.write_all(tail.as_bytes()).unwrap();
        writer.unlock().unwrap();
        let opened = opener.join().unwrap();
        assert_eq!(opened.get("k1").map(|a| a.text), Some("one".to_string()));
        opened.put("k2", &answer("two")).unwrap();
        // Nothing was cut or mixed up: every line is whole.
        let again = CallCache::open(&path).unwrap();
        assert_eq!(again.len(), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains(&line), "{text}");
    }
}
