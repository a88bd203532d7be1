//! Delivery in the embedded store: filtered log reads and delivery cursors.
//!
//! # Filtered log reads
//!
//! [`read_log_matching`] decides from memory alone which seqs of the window match: every
//! event's [`Meta`] holds its type's symbol, and the filter is first turned into the set of the
//! tenant's type symbols it accepts (a tenant uses few types; its type index lists them). A
//! non-matching event then costs one symbol comparison and no read of the log, which matters:
//! a delivery loop calls this constantly while ingest applies hundreds of thousands of events a
//! second. The window is scanned under one read lock (at most [`crate::LOG_SCAN_WINDOW`] metas,
//! well under a millisecond); the matching events are then read from the log a batch at a time,
//! each batch under a read lock of its own, so the apply thread never waits long. Entries do
//! not change once written, so reading them under later locks reads what the scan saw.
//!
//! # Delivery cursors
//!
//! A cursor is a small JSON file `DATA_DIR/cursors/<name>.json` (the name escaped: letters,
//! digits, `-` and `_` stay, every other byte becomes `%XX`, so `alerts/ops-chat` is
//! `alerts%2Fops-chat.json`, and two names never share a file). A save reads the file, merges
//! the new positions in, writes a temporary file, fsyncs it, renames it over the old one and
//! fsyncs the directory: after a crash the file holds the positions before or after the save,
//! never a mix. Saves of one cursor are serialised by a mutex of that cursor, so concurrent
//! saves never lose each other's positions; different cursors do not wait for each other. A
//! file that does not parse is reported as [`StoreError::Corrupt`] naming it, and never
//! overwritten.

use super::memory::{Mem, Meta, TenantMem};
use super::read::EntryReader;
use super::Shared;
use crate::{DeliveryCursor, LogSlice, StoreError, TypeFilter};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLockReadGuard};

/// Matching events read from the log per read lock.
const LOAD_BATCH: usize = 256;

/// The type symbols a filter accepts, decided once per call.
enum Wanted {
    All,
    /// A handful: a linear scan beats hashing.
    Few(Vec<u32>),
    Many(HashSet<u32>),
}

impl Wanted {
    /// The tenant's types that match one of `types` (every type when `types` is empty); `None`
    /// when no event of the tenant can match.
    fn new(mem: &Mem, t: &TenantMem, types: &[TypeFilter]) -> Result<Option<Wanted>, StoreError> {
        if types.is_empty() {
            return Ok(Some(Wanted::All));
        }
        let mut syms = Vec::new();
        for &ty in t.by_type.keys() {
            let name = mem.sym(ty)?;
            if types.iter().any(|f| f.matches(name)) {
                syms.push(ty);
            }
        }
        Ok(if syms.is_empty() {
            None
        } else if syms.len() == t.by_type.len() {
            Some(Wanted::All)
        } else if syms.len() <= 8 {
            Some(Wanted::Few(syms))
        } else {
            Some(Wanted::Many(syms.into_iter().collect()))
        })
    }

    #[inline]
    fn accepts(&self, m: &Meta) -> bool {
        match self {
            Wanted::All => true,
            Wanted::Few(v) => v.contains(&m.event_type),
            Wanted::Many(s) => s.contains(&m.event_type),
        }
    }
}

fn read_mem(shared: &Shared) -> Result<RwLockReadGuard<'_, Mem>, StoreError> {
    shared
        .mem
        .read()
        .map_err(|_| StoreError::Unavailable("the store's memory lock is poisoned".into()))
}

/// [`crate::Store::read_log_matching`]: the window is scanned in memory, only matches are read
/// from the log (see the module doc). Blocking: run it on a blocking thread.
pub(crate) fn read_log_matching(
    shared: &Shared,
    tenant: &str,
    from: u64,
    types: &[TypeFilter],
    limit: usize,
) -> Result<LogSlice, StoreError> {
    crate::delivery::check_limit(limit)?;
    shared.visible.wait();
    let (sym, seqs, next_seq) = {
        let mem = read_mem(shared)?;
        let Some((sym, t)) = mem.tenant(tenant) else {
            return Ok(LogSlice {
                events: Vec::new(),
                next_seq: from,
            });
        };
        mem.check(sym)?;
        let end = crate::delivery::window_end(from, t.size());
        let Some(wanted) = Wanted::new(&mem, t, types)? else {
            return Ok(LogSlice {
                events: Vec::new(),
                next_seq: end,
            });
        };
        let mut seqs = Vec::new();
        let mut next_seq = end;
        for seq in from..end {
            let m = super::memory::meta_at(&t.events, seq).ok_or_else(|| {
                StoreError::Corrupt(format!("no event {seq} in the log of {tenant}"))
            })?;
            if wanted.accepts(m) {
                seqs.push(seq);
                if seqs.len() == limit {
                    next_seq = seq + 1;
                    break;
                }
            }
        }
        (sym, seqs, next_seq)
    };
    let mut events = Vec::with_capacity(seqs.len());
    let mut reader = EntryReader::windowed();
    for batch in seqs.chunks(LOAD_BATCH) {
        let mem = read_mem(shared)?;
        let t = mem
            .tenants
            .get(&sym)
            .ok_or_else(|| StoreError::Corrupt(format!("the log of {tenant} disappeared")))?;
        for &seq in batch {
            events.push(reader.load(&mem, sym, t, seq)?);
        }
        // The window must not outlive the lock it was read under.
        reader.forget();
    }
    Ok(LogSlice { events, next_seq })
}

/// What a cursor file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct CursorFile {
    /// The cursor's name, as given (the file name is its escaped form).
    name: String,
    /// Tenant → next seq to deliver.
    positions: BTreeMap<String, u64>,
}

/// The directory of cursor files in a data directory.
pub(crate) fn cursors_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cursors")
}

/// The file name of a cursor: letters, digits, `-` and `_` as they are, every other byte
/// `%XX` (so `%` itself too: no two names share a file, and none is `.` or `..`).
pub(crate) fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 5);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".json");
    out
}

/// The delivery cursors of one data directory.
pub(crate) struct Cursors {
    dir: PathBuf,
    /// One mutex per cursor saved since open (a handful: one per delivery destination).
    saving: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Cursors {
    pub fn new(data_dir: &Path) -> Cursors {
        Cursors {
            dir: cursors_dir(data_dir),
            saving: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        crate::delivery::check_name("cursor", name)?;
        Ok(self.dir.join(file_name(name)))
    }

    /// The cursor as saved; empty when never saved.
    pub fn load(&self, name: &str) -> Result<DeliveryCursor, StoreError> {
        let path = self.path(name)?;
        read_file(&path, name)
    }

    /// Merges `positions` into the saved cursor, durably (see the module doc).
    pub fn save(&self, name: &str, positions: BTreeMap<String, u64>) -> Result<(), StoreError> {
        let path = self.path(name)?;
        if positions.is_empty() {
            return Ok(());
        }
        let lock = {
            let mut map = self.saving.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(name.to_string()).or_default().clone()
        };
        let _serialised = lock.lock().unwrap_or_else(|p| p.into_inner());
        let fail = |what: &str, e: std::io::Error| {
            StoreError::Unavailable(format!(
                "cannot save delivery cursor {name:?}: {what} {}: {e}",
                path.display()
            ))
        };
        if !self.dir.is_dir() {
            super::perm::create_dir_private(&self.dir)
                .map_err(|e| fail("cannot create the directory of", e))?;
            // The new directory's entry in the data directory must be durable too.
            if let Some(parent) = self.dir.parent() {
                sync_dir(parent).map_err(|e| fail("cannot fsync the data directory for", e))?;
            }
        }
        let mut saved = read_file(&path, name)?;
        saved.extend(positions);
        let body = serde_json::to_vec_pretty(&CursorFile {
            name: name.to_string(),
            positions: saved,
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot encode cursor {name:?}: {e}")))?;
        // A name of its own: another store on this directory in this process (one being
        // dropped while the next opens) never writes the same temporary file.
        let tmp = self.dir.join(format!(
            "{}.{:016x}.tmp",
            file_name(name),
            rand::random::<u64>()
        ));
        let written = (|| {
            let mut f = super::perm::private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail("cannot write", e));
        }
        sync_dir(&self.dir).map_err(|e| fail("cannot fsync the directory of", e))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The positions in a cursor file (none when there is no file).
fn read_file(path: &Path, name: &str) -> Result<DeliveryCursor, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DeliveryCursor::new()),
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "cannot read delivery cursor {name:?} from {}: {e}",
                path.display()
            )))
        }
    };
    let corrupt = |why: String| {
        StoreError::Corrupt(format!(
            "the delivery cursor file {} {why}; restore it from a backup, or delete it to deliver that cursor's destination from the start of every log again",
            path.display()
        ))
    };
    let file: CursorFile = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(format!("is not a valid cursor file ({e})")))?;
    if file.name != name {
        return Err(corrupt(format!(
            "belongs to the cursor {:?}, not {name:?}",
            file.name
        )));
    }
    Ok(file.positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(file_name("alerts/ops-chat"), "alerts%2Fops-chat.json");
        assert_eq!(file_name("sinks/gcl"), "sinks%2Fgcl.json");
        assert_eq!(file_name(".."), "%2E%2E.json");
        assert_eq!(file_name("a%2Fb"), "a%252Fb.json");
        assert_ne!(file_name("a/b"), file_name("a%2Fb"));
        assert_eq!(file_name("é"), "%C3%A9.json");
    }

    #[test]
    fn saves_merge_and_survive_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cursors::new(dir.path());
        assert!(c.load("alerts/x").unwrap().is_empty());
        c.save(
            "alerts/x",
            BTreeMap::from([("a".into(), 3), ("b".into(), 5)]),
        )
        .unwrap();
        c.save("alerts/x", BTreeMap::from([("b".into(), 7)]))
            .unwrap();
        let again = Cursors::new(dir.path());
        assert_eq!(
            again.load("alerts/x").unwrap(),
            BTreeMap::from([("a".into(), 3), ("b".into(), 7)])
        );
        assert!(again.load("alerts/y").unwrap().is_empty());
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(cursors_dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["alerts%2Fx.json".to_string()]);
    }

    #[test]
    fn a_corrupt_file_is_named_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cursors::new(dir.path());
        c.save("s", BTreeMap::from([("a".into(), 1)])).unwrap();
        let path = cursors_dir(dir.path()).join("s.json");
        std::fs::write(&path, b"{\"name\": \"s\", \"positions\": {\"a\": ").unwrap();
        for r in [
            c.load("s").map(|_| ()),
            c.save("s", BTreeMap::from([("a".into(), 2)])),
        ] {
            match r {
                Err(StoreError::Corrupt(m)) => assert!(m.contains("s.json"), "{m}"),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"name\": \"s\", \"positions\": {\"a\": "
        );
    }
}
