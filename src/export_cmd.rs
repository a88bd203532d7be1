//! `trailkeep export`: a streamed export (`GET /v1/export`) or an evidence bundle
//! (`GET /v1/export/bundle`) written to a file, with a progress bar on a terminal; and
//! `--bigquery-schema`, which needs no server.
//!
//! The file is written as `FILE.partial` beside FILE and renamed only once the server has sent
//! the whole export, so FILE is never a silently shortened copy: on any failure the partial
//! file is removed and the exit status is 1. Nothing is ever resumed.

use crate::client::Refused;
use crate::query_cmd::Filters;
use crate::ServerArgs;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use trailkeep_export::formats::Format;

/// Extra `--help` text.
pub const HELP: &str = "\
Examples:
  trailkeep export --tenant t_0042 --format csv --since 2026-11-01 --until 2026-12-01 -o nov.csv
  trailkeep export --tenant t_0042 --format parquet -o t_0042.parquet
  trailkeep export --bundle --tenant t_0042 --since 2026-11-01 --until 2026-12-01 -o nov.tar.gz
  trailkeep verify nov.tar.gz --public-key KEY
  trailkeep export --bigquery-schema > schema.json   # for bq load --schema=schema.json

-o - writes to stdout. Otherwise the export is written to FILE.partial and renamed to FILE once
the server has sent all of it; on any failure FILE.partial is removed. A bundle whose FILE ends
in .gz is gzip-compressed.

Exit status: 0 when the whole export was written; 1 when the server refused it (the message and
details are printed), could not be reached, or the export broke off midway, or FILE could not be
written; 2 for usage errors.";

#[derive(clap::Args)]
#[command(after_long_help = HELP)]
pub struct ExportArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only this tenant's events (required for --bundle unless the key is bound to a tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// csv, ndjson, json or parquet (docs/export.md).
    #[arg(
        long,
        default_value = "ndjson",
        conflicts_with = "bundle",
        value_parser = ["csv", "ndjson", "json", "parquet"]
    )]
    format: String,
    /// An evidence bundle (tar; gzip when FILE ends in .gz) that `trailkeep verify` checks
    /// offline, instead of a plain export.
    #[arg(long, conflicts_with_all = ["event_type", "actor", "session", "q", "asc"])]
    bundle: bool,
    #[command(flatten)]
    filters: Filters,
    /// Where to write (- for stdout).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        required_unless_present = "bigquery_schema"
    )]
    output: Option<PathBuf>,
    /// Print the BigQuery schema of Parquet exports (for `bq load --schema`) and exit.
    #[arg(
        long,
        conflicts_with_all = ["tenant", "bundle", "event_type", "actor", "since", "until", "session", "q", "asc", "output"]
    )]
    bigquery_schema: bool,
}

pub fn run(a: ExportArgs) -> Result<ExitCode> {
    if a.bigquery_schema {
        println!("{}", trailkeep_export::formats::bigquery_schema());
        return Ok(ExitCode::SUCCESS);
    }
    let output = a
        .output
        .clone()
        .ok_or_else(|| anyhow!("-o FILE is required"))?;
    let (path, counts_lines) = if a.bundle {
        let gzip = output.to_string_lossy().ends_with(".gz");
        let mut params: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("tenant_id", &a.tenant),
            ("since", &a.filters.since),
            ("until", &a.filters.until),
        ] {
            if let Some(v) = v {
                params.push((k, v.clone()));
            }
        }
        if gzip {
            params.push(("compress", "gzip".into()));
        }
        (
            format!(
                "/v1/export/bundle?{}",
                serde_urlencoded::to_string(&params)?
            ),
            false,
        )
    } else {
        let format: Format = a
            .format
            .parse()
            .map_err(|e| anyhow!("--format {:?}: {e}", a.format))?; // checked by clap already
        let mut params: Vec<(&str, String)> = vec![("format", a.format.clone())];
        params.extend(a.filters.params(&a.tenant));
        (
            format!("/v1/export?{}", serde_urlencoded::to_string(&params)?),
            matches!(format, Format::Ndjson | Format::Csv),
        )
    };
    let key =
        a.server.key.clone().ok_or_else(|| {
            anyhow!("no API key: set TRAILKEEP_KEY (preferred: a --key value is visible in `ps`) or pass --key")
        })?;
    let url = format!("{}{}", a.server.url.trim_end_matches('/'), path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(download(&url, &key, &output, counts_lines))
}

/// The file being written: FILE.partial until it is complete, or stdout.
enum Sink {
    Stdout(std::io::StdoutLock<'static>),
    File {
        file: std::io::BufWriter<std::fs::File>,
        partial: PathBuf,
        dest: PathBuf,
    },
}

impl Sink {
    fn open(dest: &Path) -> Result<Sink> {
        if dest == Path::new("-") {
            return Ok(Sink::Stdout(std::io::stdout().lock()));
        }
        let mut name = dest.as_os_str().to_owned();
        name.push(".partial");
        let partial = PathBuf::from(name);
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Ok(Sink::File {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            partial,
            dest: dest.to_path_buf(),
        })
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        match self {
            Sink::Stdout(o) => o.write_all(b).context("writing to stdout"),
            Sink::File { file, partial, .. } => file
                .write_all(b)
                .with_context(|| format!("writing {}", partial.display())),
        }
    }

    /// Makes the file durable and gives it its name.
    fn commit(self) -> Result<()> {
        match self {
            Sink::Stdout(mut o) => o.flush().context("writing to stdout"),
            Sink::File {
                file,
                partial,
                dest,
            } => {
                let f = file
                    .into_inner()
                    .map_err(|e| anyhow!("writing {}: {}", partial.display(), e.error()))?;
                f.sync_all()
                    .with_context(|| format!("writing {}", partial.display()))?;
                std::fs::rename(&partial, &dest).with_context(|| {
                    format!("renaming {} to {}", partial.display(), dest.display())
                })
            }
        }
    }

    /// Removes what was written.
    fn abandon(self) {
        if let Sink::File { file, partial, .. } = self {
            drop(file);
            let _ = std::fs::remove_file(&partial);
        }
    }
}

/// Longest wait for the next bytes of an answer (its start included).
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// Attempts for an export the server answers with 429 or 503 before it starts.
const BUSY_ATTEMPTS: u32 = 6;

/// Sends the request, retrying 429/503 (honouring `Retry-After`) and connection failures
/// before the export starts; once bytes flow, nothing is retried.
async fn open(url: &str, key: &str) -> Result<reqwest::Response> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        // A bundle's answer starts only once the server has gathered it (seconds per million
        // events), and a selective Parquet export sends nothing until a row group is full.
        .read_timeout(READ_TIMEOUT)
        .build()?;
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut busy = 0;
    loop {
        match http.get(url).bearer_auth(key).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body = resp.text().await.unwrap_or_default();
                busy += 1;
                if !matches!(status, 429 | 503) || busy >= BUSY_ATTEMPTS {
                    bail!(Refused { status, body });
                }
                if let Some(s) = retry_after {
                    delay = delay.max(Duration::from_secs(s));
                }
            }
            Err(e) if e.is_connect() && started.elapsed() < crate::client::REACH_FOR => {
                if busy == 0 {
                    eprintln!("cannot reach the server ({e}); retrying");
                }
                busy = busy.max(1);
            }
            Err(e) => return Err(anyhow!("cannot reach the server: {e}")),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn download(url: &str, key: &str, dest: &Path, counts_lines: bool) -> Result<ExitCode> {
    let mut resp = open(url, key).await?;
    let mut sink = Sink::open(dest)?;
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new_spinner();
        let template = if counts_lines {
            "{spinner} {msg} {bytes} ({bytes_per_sec}) {elapsed}"
        } else {
            "{spinner} {bytes} ({bytes_per_sec}) {elapsed}"
        };
        b.set_style(
            ProgressStyle::with_template(template).unwrap_or(ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        Some(b)
    } else {
        None
    };
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut lines = 0u64;
    let copy = async {
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| anyhow!("the export broke off after {bytes} bytes: {e}"))?
        {
            sink.write(&chunk)?;
            bytes += chunk.len() as u64;
            if counts_lines {
                lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            }
            if let Some(b) = &bar {
                b.set_position(bytes);
                if counts_lines {
                    b.set_message(format!("{lines} lines"));
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    // Ctrl-C stops the copy; the partial file is removed like after any other failure.
    let result: Result<()> = tokio::select! {
        r = copy => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Err(e) = result {
        sink.abandon();
        return Err(e.context("nothing was kept: run the export again"));
    }
    sink.commit()?;
    let secs = started.elapsed().as_secs_f64();
    if dest != Path::new("-") {
        let what = if counts_lines {
            format!("{lines} lines, ")
        } else {
            String::new()
        };
        eprintln!(
            "wrote {} ({what}{bytes} bytes) in {secs:.1} s",
            dest.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
