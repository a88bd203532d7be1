//! Files at rest are private to the account that runs trailkeep: the data directory (and every
//! directory under it) is created mode 0700 and every file 0600, since segments hold the
//! events' payloads and `keys.json` the keys' hashes. Existing paths that are wider are not
//! changed (an operator may have a reason) but reported at start.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// Creates `dir` and its missing parents, each new one mode 0700.
pub fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// `OpenOptions` that create a file mode 0600.
pub fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// The paths of the store in `dir` (the directory, its log directory, the segments and every
/// other file it holds) that other users may read or write, with their modes.
pub fn too_wide(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut check = |p: PathBuf| {
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    out.push((p, mode));
                }
            }
        };
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(d) = dirs.pop() {
            check(d.clone());
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries.flatten() {
                    match e.file_type() {
                        Ok(t) if t.is_dir() => dirs.push(e.path()),
                        Ok(t) if t.is_file() => check(e.path()),
                        _ => {}
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    out
}

/// Logs a warning naming the paths of [`too_wide`], if any.
pub fn warn_if_wide(dir: &Path) {
    let wide = too_wide(dir);
    if wide.is_empty() {
        return;
    }
    let list: Vec<String> = wide
        .iter()
        .take(5)
        .map(|(p, m)| format!("{} ({m:o})", p.display()))
        .collect();
    let more = if wide.len() > 5 {
        format!(" and {} more", wide.len() - 5)
    } else {
        String::new()
    };
    tracing::warn!(
        "the data directory {} is readable by other users: {}{more}; the store holds event payloads and key hashes, so restrict it with `chmod -R go-rwx {}`",
        dir.display(),
        list.join(", "),
        dir.display()
    );
}
