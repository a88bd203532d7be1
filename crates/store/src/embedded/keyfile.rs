//! API keys of the embedded store, in `keys.json` beside the database.
//!
//! Keys live in a small JSON file rather than in the LSM so that `trailkeep key create
//! --data-dir DIR` works while a server holds the database open. Writers take an exclusive file
//! lock, rewrite a temporary file, fsync it and rename it over the old one; the server notices
//! the new modification time within a second and reloads.

use crate::{KeyRecord, StoreError};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct KeysFile {
    keys: Vec<KeyRecord>,
}

/// The key file and an in-memory index by secret hash.
pub struct KeyFile {
    path: PathBuf,
    lock_path: PathBuf,
    cache: Mutex<Cache>,
}

struct Cache {
    by_hash: HashMap<String, KeyRecord>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl KeyFile {
    pub fn open(dir: &Path) -> Result<KeyFile, StoreError> {
        let kf = KeyFile {
            path: dir.join("keys.json"),
            lock_path: dir.join("keys.lock"),
            cache: Mutex::new(Cache {
                by_hash: HashMap::new(),
                modified: None,
                checked: Instant::now(),
            }),
        };
        kf.reload()?;
        Ok(kf)
    }

    fn read(&self) -> Result<(KeysFile, Option<SystemTime>), StoreError> {
        match std::fs::read(&self.path) {
            Ok(b) => {
                let f: KeysFile = serde_json::from_slice(&b).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{} is not a valid key file: {e}",
                        self.path.display()
                    ))
                })?;
                let m = std::fs::metadata(&self.path)
                    .and_then(|m| m.modified())
                    .ok();
                Ok((f, m))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((KeysFile::default(), None)),
            Err(e) => Err(e.into()),
        }
    }

    fn reload(&self) -> Result<(), StoreError> {
        let (f, m) = self.read()?;
        let mut c = self
            .cache
            .lock()
            .map_err(|_| StoreError::Unavailable("key cache lock poisoned".into()))?;
        c.by_hash = f
            .keys
            .into_iter()
            .map(|k| (k.secret_hash.clone(), k))
            .collect();
        c.modified = m;
        c.checked = Instant::now();
        Ok(())
    }

    /// Runs `f` on the file's contents under an exclusive lock and writes the result durably.
    fn update<T>(&self, f: impl FnOnce(&mut KeysFile) -> T) -> Result<T, StoreError> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)?;
        lock.lock()?;
        let (mut keys, _) = self.read()?;
        let out = f(&mut keys);
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut t = File::create(&tmp)?;
            let body = serde_json::to_vec_pretty(&keys)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            t.write_all(&body)?;
            t.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(parent) = self.path.parent() {
            File::open(parent)?.sync_all()?;
        }
        drop(lock);
        self.reload()?;
        Ok(out)
    }

    pub fn create(&self, rec: KeyRecord) -> Result<KeyRecord, StoreError> {
        self.update(|k| {
            k.keys.push(rec.clone());
            rec
        })
    }

    pub fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.read()?.0.keys)
    }

    pub fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        self.update(|k| {
            let mut found = false;
            for r in k.keys.iter_mut().filter(|r| r.id == id) {
                r.revoked = true;
                found = true;
            }
            found
        })
    }

    pub fn find(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        let stale = {
            let c = self
                .cache
                .lock()
                .map_err(|_| StoreError::Unavailable("key cache lock poisoned".into()))?;
            c.checked.elapsed() > Duration::from_secs(1)
                && std::fs::metadata(&self.path)
                    .and_then(|m| m.modified())
                    .ok()
                    != c.modified
        };
        if stale {
            self.reload()?;
        } else if let Ok(mut c) = self.cache.lock() {
            if c.checked.elapsed() > Duration::from_secs(1) {
                c.checked = Instant::now();
            }
        }
        let c = self
            .cache
            .lock()
            .map_err(|_| StoreError::Unavailable("key cache lock poisoned".into()))?;
        Ok(c.by_hash.get(hash).cloned())
    }
}
