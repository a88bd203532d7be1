//! API keys of the embedded store, in `keys.json` beside the database.
//!
//! Keys live in a small JSON file rather than in the LSM so that `trailkeep key create
//! --data-dir DIR` works while a server holds the database open. Writers take an exclusive file
//! lock, rewrite a temporary file, fsync it and rename it over the old one.
//!
//! The server keeps the keys in memory and, before each lookup, compares the file's identity
//! (device, inode, length, modification and change times: one `stat`, no read) with the one it
//! loaded, and re-reads the file only when it changed. So a key works the moment `trailkeep key
//! create` returns and a revoked one stops at once, and a flood of unknown keys costs a `stat`
//! each but never a re-read: the file is re-read only as often as someone writes it.
//!
//! A version of the file that cannot be read or parsed (edited by hand, say) does not take the
//! keys away: the server keeps answering with the last set it read, logs the problem once for
//! that version, and reports it through [`KeyFile::problem`] (so `/readyz` answers 503 naming
//! `keys.json`) until a good version replaces it. Creating or revoking keys refuses to touch a
//! file it cannot read rather than overwrite the keys in it.

use crate::{KeyRecord, StoreError};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct KeysFile {
    keys: Vec<KeyRecord>,
}

/// The key file and an in-memory index by secret hash.
pub struct KeyFile {
    path: PathBuf,
    lock_path: PathBuf,
    cache: Mutex<Cache>,
    /// How many times the file was read (tests check that unknown keys cause none).
    reads: std::sync::atomic::AtomicU64,
}

struct Cache {
    by_hash: HashMap<String, KeyRecord>,
    /// The identity of the file `by_hash` was read from (`None`: there was no file), or of the
    /// unreadable version `problem` is about.
    loaded: Option<Identity>,
    /// Why the current version of the file could not be read (the keys in `by_hash` are then
    /// those of the last good version).
    problem: Option<String>,
}

/// What tells one version of the key file from another without reading it. Every write
/// renames a new file over the old one, so the inode changes too.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    ctime: (i64, i64),
}

impl Identity {
    fn of(m: &std::fs::Metadata) -> Identity {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Identity {
            #[cfg(unix)]
            dev: m.dev(),
            #[cfg(not(unix))]
            dev: 0,
            #[cfg(unix)]
            ino: m.ino(),
            #[cfg(not(unix))]
            ino: 0,
            len: m.len(),
            modified: m.modified().ok(),
            #[cfg(unix)]
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl KeyFile {
    pub fn open(dir: &Path) -> Result<KeyFile, StoreError> {
        let kf = KeyFile {
            path: dir.join("keys.json"),
            lock_path: dir.join("keys.lock"),
            cache: Mutex::new(Cache {
                by_hash: HashMap::new(),
                loaded: None,
                problem: None,
            }),
            reads: Default::default(),
        };
        kf.reload()?;
        Ok(kf)
    }

    /// The file's identity now (`None`: no file).
    fn identity(&self) -> Result<Option<Identity>, StoreError> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(Some(Identity::of(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The file's contents and the identity of the version read.
    fn read(&self) -> Result<(KeysFile, Option<Identity>), StoreError> {
        // Opened once: the identity and the contents are of the same file even if a writer
        // renames a new one over it meanwhile.
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((KeysFile::default(), None))
            }
            Err(e) => return Err(e.into()),
        };
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = Identity::of(&f.metadata()?);
        let mut b = Vec::new();
        f.read_to_end(&mut b)?;
        let keys: KeysFile = serde_json::from_slice(&b).map_err(|e| {
            StoreError::Corrupt(format!(
                "{} is not a valid key file: {e}",
                self.path.display()
            ))
        })?;
        Ok((keys, Some(id)))
    }

    fn lock_cache(&self) -> Result<std::sync::MutexGuard<'_, Cache>, StoreError> {
        self.cache
            .lock()
            .map_err(|_| StoreError::Unavailable("key cache lock poisoned".into()))
    }

    fn reload(&self) -> Result<(), StoreError> {
        let (f, id) = self.read()?;
        let mut c = self.lock_cache()?;
        c.by_hash = f
            .keys
            .into_iter()
            .map(|k| (k.secret_hash.clone(), k))
            .collect();
        c.loaded = id;
        if c.problem.take().is_some() {
            tracing::info!(path = %self.path.display(), "the key file is readable again; its keys are in use");
        }
        Ok(())
    }

    /// Re-reads the file if it changed since it was last looked at. A version that cannot be
    /// read keeps the last good keys and is recorded (and logged) once, as [`KeyFile::problem`].
    fn refresh(&self) -> Result<(), StoreError> {
        let now = self.identity()?;
        if self.lock_cache()?.loaded == now {
            return Ok(());
        }
        match self.reload() {
            Ok(()) => Ok(()),
            Err(e) => {
                let why = match e {
                    StoreError::Corrupt(m) => m,
                    other => format!("{} cannot be read: {other}", self.path.display()),
                };
                let problem = format!(
                    "{why}; the server goes on with the keys it read last: restore the file from a backup or fix it (trailkeep key list shows when it is readable again)"
                );
                tracing::error!(path = %self.path.display(), "{problem}");
                let mut c = self.lock_cache()?;
                // This version is not looked at again; the next change of the file is.
                c.loaded = now;
                c.problem = Some(problem);
                Ok(())
            }
        }
    }

    /// Why the key file in use could not be read, if it could not (checked now: one `stat`).
    pub fn problem(&self) -> Option<String> {
        if let Err(e) = self.refresh() {
            return Some(format!("cannot check {}: {e}", self.path.display()));
        }
        self.lock_cache().ok().and_then(|c| c.problem.clone())
    }

    /// Runs `f` on the file's contents under an exclusive lock and writes the result durably.
    fn update<T>(&self, f: impl FnOnce(&mut KeysFile) -> T) -> Result<T, StoreError> {
        let lock = super::perm::private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)?;
        lock.lock()?;
        let (mut keys, _) = self.read()?;
        let out = f(&mut keys);
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut t = super::perm::private_file()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&tmp)?;
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

    /// The key with this secret hash, as the file holds it now
    /// (or, while the file cannot be read, as its last good version held it).
    pub fn find(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.refresh()?;
        Ok(self.lock_cache()?.by_hash.get(hash).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewKey, Role};
    use trailkeep_core::Timestamp;

    fn new_key(n: usize) -> KeyRecord {
        NewKey {
            role: Role::Ingest,
            tenant_id: None,
            ttl_seconds: None,
            secret_hash: format!("hash-{n}"),
        }
        .into_record(Timestamp::now_micros())
    }

    /// A server's key file sees what another process (here: another `KeyFile` on the same
    /// directory, as `trailkeep key create` opens it) wrote, at once.
    #[test]
    fn keys_written_elsewhere_are_found_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let server = KeyFile::open(dir.path()).unwrap();
        assert!(server.find("hash-0").unwrap().is_none());
        for n in 1..=20 {
            let cli = KeyFile::open(dir.path()).unwrap();
            let rec = cli.create(new_key(n)).unwrap();
            let found = server.find(&format!("hash-{n}")).unwrap();
            assert_eq!(found.map(|k| k.id), Some(rec.id.clone()), "round {n}");
            cli.revoke(&rec.id).unwrap();
            assert!(
                server.find(&format!("hash-{n}")).unwrap().unwrap().revoked,
                "round {n}"
            );
        }
    }

    /// Unknown keys cost a `stat`, never a re-read of an unchanged file.
    #[test]
    fn unknown_keys_do_not_reread_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let server = KeyFile::open(dir.path()).unwrap();
        server.create(new_key(1)).unwrap();
        let reads = server.reads.load(std::sync::atomic::Ordering::Relaxed);
        for n in 0..1000 {
            assert!(server.find(&format!("unknown-{n}")).unwrap().is_none());
        }
        assert!(server.find("hash-1").unwrap().is_some());
        assert_eq!(
            server.reads.load(std::sync::atomic::Ordering::Relaxed),
            reads
        );
        // A write elsewhere: exactly one more read.
        KeyFile::open(dir.path())
            .unwrap()
            .create(new_key(2))
            .unwrap();
        for _ in 0..100 {
            assert!(server.find("unknown").unwrap().is_none());
        }
        assert!(server.find("hash-2").unwrap().is_some());
        assert_eq!(
            server.reads.load(std::sync::atomic::Ordering::Relaxed),
            reads + 1
        );
    }

    /// A damaged key file does not take the keys away: the last good set stays in use, the
    /// damaged version is read once however many lookups follow, the problem is reported until
    /// a good version replaces it, and that version's keys are used at once.
    #[test]
    fn a_damaged_key_file_keeps_the_last_good_keys() {
        let dir = tempfile::tempdir().unwrap();
        let server = KeyFile::open(dir.path()).unwrap();
        server.create(new_key(1)).unwrap();
        assert!(server.problem().is_none());
        let good = std::fs::read(dir.path().join("keys.json")).unwrap();

        std::fs::write(dir.path().join("keys.json"), b"{\"keys\": [ {\"id\": ").unwrap();
        let reads = server.reads.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..100 {
            assert!(server.find("hash-1").unwrap().is_some());
            assert!(server.find("unknown").unwrap().is_none());
        }
        assert_eq!(
            server.reads.load(std::sync::atomic::Ordering::Relaxed),
            reads + 1,
            "the damaged version is read once"
        );
        let p = server.problem().expect("the problem is reported");
        assert!(p.contains("keys.json"), "{p}");
        // Adding a key refuses to overwrite a file it cannot read.
        assert!(server.create(new_key(2)).is_err());
        assert!(server.problem().is_some());

        // A good version (here with one more key) replaces it.
        let mut fixed: serde_json::Value = serde_json::from_slice(&good).unwrap();
        let extra = serde_json::to_value(new_key(3)).unwrap();
        fixed["keys"].as_array_mut().unwrap().push(extra);
        std::fs::write(
            dir.path().join("keys.json"),
            serde_json::to_vec(&fixed).unwrap(),
        )
        .unwrap();
        assert!(server.problem().is_none());
        assert!(server.find("hash-1").unwrap().is_some());
        assert!(server.find("hash-3").unwrap().is_some());
    }
}
