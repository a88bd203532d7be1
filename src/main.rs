//! The `trailkeep` command line: the server and every client-side tool (SPEC §5).

mod client;
mod config;
mod ingest_cmd;
mod keys_cmd;
mod query_cmd;
mod serve;
mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "trailkeep",
    version,
    about = "Self-hosted, verifiable audit log"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where a command finds the store.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct StoreArgs {
    /// Data directory (default ./trailkeep-data): the embedded store, and the log's signing key
    /// (also with --postgres, where the events live in PostgreSQL).
    #[arg(long, env = "TRAILKEEP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL instead of the embedded store.
    #[arg(long, env = "TRAILKEEP_POSTGRES_URL")]
    pub postgres: Option<String>,
}

/// How a client command reaches a server.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Base URL of the trailkeep server.
    #[arg(long, env = "TRAILKEEP_URL", default_value = "http://127.0.0.1:7438")]
    pub url: String,
    /// API key (Bearer). Prefer setting TRAILKEEP_KEY: a --key value is visible to every user
    /// of the machine (e.g. in `ps`) and lands in shell history.
    #[arg(long, env = "TRAILKEEP_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve {
        /// TOML configuration file (SPEC §10).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (default 127.0.0.1:7438).
        #[arg(long)]
        listen: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        integrity: serve::Integrity,
    },
    /// Manage API keys directly in the store.
    Key {
        #[command(subcommand)]
        cmd: keys_cmd::KeyCmd,
    },
    /// Send events from an NDJSON file (or `-` for standard input); safe to re-run.
    #[command(after_long_help = ingest_cmd::HELP)]
    Ingest {
        /// The NDJSON file, one event per line; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
        /// Events per request (at most 10000).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// List events matching filters (NDJSON on stdout), or one tenant's whole log in seq order
    /// (--log-order), optionally as a directory for `verify DIR` (--out-dir).
    Query(query_cmd::QueryArgs),
    /// Follow a tenant's log as events arrive (NDJSON on stdout).
    Tail(query_cmd::TailArgs),
    /// Apply the PostgreSQL schema migrations (also done by `serve` at start; safe to run while
    /// servers run and from several places at once).
    Migrate {
        /// PostgreSQL URL (postgres://user[:password]@host[:port]/database).
        #[arg(long, env = "TRAILKEEP_POSTGRES_URL")]
        postgres: Option<String>,
        /// TOML configuration file whose `postgres` setting to use.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Verify a log against its signed checkpoints: a tlog-proof, a directory, or a live server.
    #[command(after_long_help = verify::HELP)]
    Verify(verify::VerifyArgs),
}

/// `trailkeep migrate`: applies pending schema migrations and says which.
fn migrate(postgres: Option<String>, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let url = match postgres {
        Some(u) => u,
        None => config::Config::load(config.as_deref())?.postgres.ok_or_else(|| {
            anyhow::anyhow!(
                "trailkeep migrate applies the PostgreSQL schema: pass --postgres URL, set TRAILKEEP_POSTGRES_URL, or set postgres in the config file (the embedded store needs no migration)"
            )
        })?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let applied = rt.block_on(trailkeep_store::postgres::migrate(&url))?;
    if applied.is_empty() {
        eprintln!("the schema is up to date");
    } else {
        let v: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
        eprintln!("applied migrations {}", v.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.cmd {
        Cmd::Serve {
            config,
            listen,
            store,
            integrity,
        } => serve::run(config, listen, store, integrity),
        Cmd::Key { cmd } => keys_cmd::run(cmd),
        Cmd::Ingest {
            file,
            server,
            batch,
        } => ingest_cmd::run(&file, &server, batch),
        Cmd::Query(a) => query_cmd::query(a),
        Cmd::Tail(a) => query_cmd::tail(a),
        Cmd::Verify(a) => verify::run(a),
        Cmd::Migrate { postgres, config } => migrate(postgres, config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
