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
    /// Embedded store directory (default ./trailkeep-data).
    #[arg(long, env = "TRAILKEEP_DATA_DIR", conflicts_with = "postgres")]
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
    /// API key (Bearer).
    #[arg(long, env = "TRAILKEEP_KEY")]
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
    },
    /// Manage API keys directly in the store.
    Key {
        #[command(subcommand)]
        cmd: keys_cmd::KeyCmd,
    },
    /// Send events from an NDJSON file.
    Ingest {
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
        /// Events per request (at most 10000).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// List events matching filters (NDJSON on stdout).
    Query(query_cmd::QueryArgs),
    /// Follow a tenant's log as events arrive (NDJSON on stdout).
    Tail(query_cmd::TailArgs),
    /// Verify a log against its signed checkpoints: a tlog-proof, a directory, or a live server.
    #[command(after_long_help = verify::HELP)]
    Verify(verify::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.cmd {
        Cmd::Serve {
            config,
            listen,
            store,
        } => serve::run(config, listen, store),
        Cmd::Key { cmd } => keys_cmd::run(cmd),
        Cmd::Ingest {
            file,
            server,
            batch,
        } => ingest_cmd::run(&file, &server, batch),
        Cmd::Query(a) => query_cmd::query(a),
        Cmd::Tail(a) => query_cmd::tail(a),
        Cmd::Verify(a) => verify::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
