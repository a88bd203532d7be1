//! `trailkeep verify`: check that a log is what its signed checkpoints say (docs/api.md, docs/cli.md, docs/verification.md).
//!
//! Four inputs, one rule: every leaf is recomputed from the event itself (never taken from its
//! `leaf_hash`), every checkpoint must carry a valid signature by the log key and name the
//! right tenant, and every tree root is rebuilt locally.
//!
//! * `verify PROOF_FILE --event EVENT.json --public-key KEY`: one event and its C2SP tlog-proof
//!   (`GET /v1/events/{id}/proof`) — the event is in the signed log at its `seq`.
//! * `verify DIR [--public-key KEY]`: a tenant's whole log offline (`events.ndjson`,
//!   `checkpoint.txt`, optionally `public-key.txt`), streamed line by line.
//! * `verify BUNDLE [--public-key KEY]`: an evidence bundle (a tar or gzip'd tar, told apart
//!   from a tlog-proof by its content), checked by `trailkeep_export::bundle`.
//! * `verify --url URL --key KEY [--tenant T]… [--checkpoint FILE|DIR]… [--save-checkpoint DIR]`:
//!   a live server — every tenant's events against its latest checkpoint, and each earlier
//!   checkpoint the auditor kept proven consistent with it.
//!
//! Output: one `ok: …` or `FAIL: …` line per check on stdout, naming the first failing event
//! (`seq` and `event_id`) or proof of each log. Exit 0 only if nothing failed, 1 if something
//! failed, 2 for usage and I/O errors (unreadable files, unreachable server) with no failure.

mod bundle;
mod frontier;
mod live;
mod offline;

pub use trailkeep_export::leaf;

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use trailkeep_tlog::Verifier;

/// Extra `--help` text: the files and the monitoring recipe.
pub const HELP: &str = "\
Modes:
  trailkeep verify PROOF_FILE --event EVENT.json --public-key KEY
      PROOF_FILE is the text of GET /v1/events/{id}/proof (c2sp.org/tlog-proof@v1), EVENT.json the
      event from GET /v1/events/{id}. The leaf is recomputed from the event and proven to be entry
      `seq` of the checkpoint, which must be signed by KEY with origin trailkeep/<log>/<tenant>.
  trailkeep verify DIR [--public-key KEY]
      DIR holds events.ndjson (one tenant's events as the API returns them, seq 0..N-1 in order),
      checkpoint.txt (a signed checkpoint of that tenant) and optionally public-key.txt (used when
      --public-key is absent; trust it only as far as you trust DIR).
  trailkeep verify BUNDLE [--public-key KEY]
      BUNDLE is an evidence bundle (GET /v1/export/bundle: a .tar or .tar.gz, recognised by its
      content). Every member must match the signed manifest; the checkpoints must be signed for the
      bundle's tenant; every event's leaf is recomputed and found in leaves.bin at its seq, and
      leaves.bin with range-proof.json must rebuild the checkpoint's root. Without --public-key the
      bundle's own key is used, which only proves the bundle consistent with itself.
  trailkeep verify --url URL --key KEY [--tenant T]... [--checkpoint FILE|DIR]... [--save-checkpoint DIR]
      Audits a live server: for the tenant (or every tenant) fetches the latest signed checkpoint and
      every event up to it, recomputes every leaf, rebuilds the tree and compares the roots. Each
      --checkpoint (a file of one or more signed checkpoints, or a directory of *.txt files) is an
      earlier checkpoint you kept: it must be signed, and consistent with the latest one (the
      server's consistency proof AND the rebuilt tree's root at its size). Its tenant comes from
      its origin line. With --public-key the server's key must be that key.

KEY is a signed-note verifier key (name+keyid+base64, as served by GET /v1/public-key) or a file
holding one.

Monitoring: keep each tenant's history of checkpoints so that a rewritten log is caught.
--save-checkpoint DIR writes each verified tenant's latest checkpoint to DIR/<tenant>.txt, but
only when everything about that tenant verified (a failure never overwrites the evidence).
Run it from cron with the same directory as input (use a reader key: auditor keys expire; give
it in TRAILKEEP_KEY, e.g. from the crontab's environment, so it never shows in `ps`):

  mkdir -p /var/lib/trailkeep-monitor
  */15 * * * * trailkeep verify --url https://audit.example \\
      --public-key /etc/trailkeep/log.vkey \\
      --checkpoint /var/lib/trailkeep-monitor --save-checkpoint /var/lib/trailkeep-monitor \\
      || alert-oncall

(Saved checkpoints are read before the new ones are written.) Events newer than the latest
checkpoint (it is signed at most once per second) are not checked until the next run.

Exit status: 0 everything verified; 1 a check failed (the FAIL line names the first failing
event or proof); 2 usage or I/O error.";

#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .args(["path", "url"])
))]
pub struct VerifyArgs {
    /// An evidence bundle (.tar or .tar.gz), a directory (events.ndjson, checkpoint.txt[,
    /// public-key.txt]) or a tlog-proof file (with --event).
    #[arg(value_name = "BUNDLE_DIR_OR_PROOF")]
    pub path: Option<PathBuf>,
    /// The event (JSON as the API returns it) that the tlog-proof file proves.
    #[arg(long, value_name = "EVENT.json", requires = "path")]
    pub event: Option<PathBuf>,
    /// The log's verifier key (name+keyid+base64) or a file holding it.
    #[arg(long, value_name = "VKEY_OR_FILE")]
    pub public_key: Option<String>,
    /// Audit the live server at this base URL.
    #[arg(long, conflicts_with = "path")]
    pub url: Option<String>,
    /// API key (admin, reader or auditor) for --url. Prefer setting TRAILKEEP_KEY: a --key value
    /// is visible to every user of the machine (e.g. in `ps`) and lands in shell history.
    #[arg(long, env = "TRAILKEEP_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Only this tenant (repeatable; default: every tenant the key can see).
    #[arg(long, requires = "url")]
    pub tenant: Vec<String>,
    /// An earlier checkpoint to prove consistent: a file of signed checkpoints or a directory of
    /// *.txt files (repeatable).
    #[arg(long = "checkpoint", value_name = "FILE_OR_DIR", requires = "url")]
    pub checkpoints: Vec<PathBuf>,
    /// Write each fully verified tenant's latest checkpoint to DIR/<tenant>.txt.
    #[arg(long, value_name = "DIR", requires = "url")]
    pub save_checkpoint: Option<PathBuf>,
}

/// What was found: `ok` and `FAIL` lines go to stdout as they are decided.
#[derive(Default)]
pub struct Report {
    failures: usize,
    /// Every line printed, for tests.
    #[cfg(test)]
    pub lines: Vec<String>,
}

impl Report {
    pub fn ok(&mut self, line: impl AsRef<str>) {
        self.print(format!("ok: {}", line.as_ref()));
    }

    pub fn fail(&mut self, line: impl AsRef<str>) {
        self.failures += 1;
        self.print(format!("FAIL: {}", line.as_ref()));
    }

    fn print(&mut self, line: String) {
        println!("{line}");
        let _ = std::io::stdout().flush();
        #[cfg(test)]
        self.lines.push(line);
    }

    pub fn failed(&self) -> bool {
        self.failures > 0
    }
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let mut report = Report::default();
    let result = dispatch(&args, &mut report);
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
    }
    Ok(if report.failed() {
        ExitCode::from(1)
    } else if result.is_err() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn dispatch(args: &VerifyArgs, report: &mut Report) -> Result<()> {
    if let Some(url) = &args.url {
        return live::run(url, args, report);
    }
    let Some(path) = &args.path else {
        bail!("give an evidence bundle, a directory, a tlog-proof file with --event, or --url");
    };
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        if args.event.is_some() {
            bail!(
                "{} is a directory: --event goes with a tlog-proof file",
                path.display()
            );
        }
        offline::verify_dir(path, args.public_key.as_deref(), report)
    } else {
        let Some(event) = &args.event else {
            if bundle::looks_like_bundle(path)? {
                return bundle::verify_bundle_file(path, args.public_key.as_deref(), report);
            }
            bail!(
                "{} is neither an evidence bundle (a tar or gzip'd tar) nor a directory: to check \
                 a tlog-proof pass the event with --event EVENT.json (for a whole log pass a \
                 directory holding events.ndjson and checkpoint.txt)",
                path.display()
            );
        };
        let Some(key) = &args.public_key else {
            bail!("a tlog-proof is checked against the log's key: pass --public-key");
        };
        let verifier = load_verifier(key)?;
        offline::verify_tlog_proof(path, event, &verifier, report)
    }
}

/// A verifier key given inline (`name+keyid+base64`) or as a file holding one.
pub fn load_verifier(arg: &str) -> Result<Verifier> {
    let path = Path::new(arg);
    if path.is_file() {
        return load_verifier_file(path);
    }
    Verifier::from_vkey(arg.trim()).with_context(|| {
        format!("--public-key {arg:?} is neither a readable file nor a verifier key")
    })
}

/// A verifier key from a file holding one (surrounding white space ignored).
pub fn load_verifier_file(path: &Path) -> Result<Verifier> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Verifier::from_vkey(text.trim())
        .with_context(|| format!("{} does not hold a verifier key", path.display()))
}

/// Splits a checkpoint origin `trailkeep/<log>/<tenant>` into (log, tenant).
pub fn split_origin(origin: &str) -> Option<(&str, &str)> {
    let rest = origin.strip_prefix("trailkeep/")?;
    let (log, tenant) = rest.rsplit_once('/')?;
    // is_tenant_id also accepts the reserved `_global`.
    (!log.is_empty() && trailkeep_core::validate::is_tenant_id(tenant)).then_some((log, tenant))
}

/// Splits text holding one or more signed notes one after the other (blank lines between them
/// allowed) into the notes.
pub fn split_notes(text: &str) -> Vec<String> {
    const SIG: &str = trailkeep_tlog::note::SIGNATURE_PREFIX;
    let mut notes = Vec::new();
    let mut cur = String::new();
    let (mut in_sigs, mut prev_blank) = (false, false);
    for line in text.split_inclusive('\n') {
        let is_sig = line.starts_with(SIG);
        if in_sigs && !is_sig {
            notes.push(std::mem::take(&mut cur));
            in_sigs = false;
            prev_blank = false;
        }
        if cur.is_empty() && line.trim().is_empty() {
            continue; // blank lines before or between notes
        }
        if is_sig && prev_blank {
            in_sigs = true;
        }
        prev_blank = line == "\n";
        cur.push_str(line);
    }
    if !cur.trim().is_empty() {
        notes.push(cur);
    }
    notes
}

/// `event seq N (id X)`.
pub fn event_label(seq: u64, id: &str) -> String {
    format!("event seq {seq} (id {id})")
}

#[cfg(test)]
pub(crate) mod testlog;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            split_origin("trailkeep/default/t_1"),
            Some(("default", "t_1"))
        );
        assert_eq!(
            split_origin("trailkeep/a/b/_global"),
            Some(("a/b", "_global"))
        );
        for bad in [
            "trailkeep/t_1",
            "trailkeep//t_1",
            "other/default/t_1",
            "trailkeep/default/",
            "trailkeep/default/bad tenant",
        ] {
            assert_eq!(split_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn notes_are_split() {
        let a = "o/a\n1\nAAAA\n\n\u{2014} k AAAA\n\u{2014} w BBBB\n";
        let b = "o/b\n2\nBBBB\n\n\u{2014} k CCCC\n";
        assert_eq!(split_notes(a), vec![a.to_string()]);
        assert_eq!(
            split_notes(&format!("{a}{b}")),
            vec![a.to_string(), b.to_string()]
        );
        assert_eq!(
            split_notes(&format!("{a}\n\n{b}\n")),
            vec![a.to_string(), b.to_string()]
        );
        assert!(split_notes("\n").is_empty());
    }
}
