//! `verify BUNDLE`: an evidence bundle (a tar, or a gzip'd tar) checked offline by
//! `trailkeep_export::bundle::verify_bundle`; this module only chooses the key and prints.

use super::{load_verifier, Report};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use trailkeep_export::bundle::{verify_bundle, BundleError};
use trailkeep_tlog::hash::encode_hash;

/// Whether the file starts like a bundle: the gzip magic number, or a ustar tar header.
pub fn looks_like_bundle(path: &Path) -> Result<bool> {
    let mut head = Vec::with_capacity(512);
    File::open(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .take(512)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(head.starts_with(&[0x1f, 0x8b]) || head.get(257..262) == Some(b"ustar"))
}

pub fn verify_bundle_file(
    path: &Path,
    public_key: Option<&str>,
    report: &mut Report,
) -> Result<()> {
    let verifier = public_key.map(load_verifier).transpose()?;
    if verifier.is_none() {
        eprintln!(
            "note: no --public-key: {} is checked against the key inside it, which only proves \
             the bundle is consistent with itself — pass the log key you trust with --public-key",
            path.display()
        );
    }
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let input = std::io::BufReader::with_capacity(1 << 20, file);
    let r = match verify_bundle(input, verifier.as_ref()) {
        Ok(r) => r,
        Err(BundleError::Failed(f)) => {
            report.fail(format!("{}: {f}", path.display()));
            return Ok(());
        }
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let m = &r.manifest;
    report.ok(format!(
        "{}{}: every member matches manifest.json, signed by {}{}",
        path.display(),
        if r.gzip { " (gzip)" } else { "" },
        r.key,
        if r.key_from_bundle {
            " (the bundle's own key)"
        } else {
            ""
        }
    ));
    report.ok(format!(
        "checkpoint.txt: {}, size {}, root {}{}",
        m.origin,
        m.tree_size,
        encode_hash(&r.root),
        match r.first_checkpoint_size {
            Some(n) => format!(", consistent with checkpoint-first.txt (size {n})"),
            None => String::new(),
        }
    ));
    let range = match (&m.since, &m.until) {
        (None, None) => String::new(),
        (s, u) => format!(
            " in [{}, {})",
            s.as_deref().unwrap_or("-∞"),
            u.as_deref().unwrap_or("∞")
        ),
    };
    match (m.first_seq, m.last_seq) {
        (Some(a), Some(b)) => report.ok(format!(
            "tenant {}: {} events{range}, seq {a}..{b}: every leaf recomputed and proven in \
             checkpoint {} (leaves.bin and range-proof.json rebuild its root)",
            m.tenant_id, m.count, m.tree_size
        )),
        _ => report.ok(format!(
            "tenant {}: no events{range} (the checkpoint alone is verified)",
            m.tenant_id
        )),
    }
    Ok(())
}
