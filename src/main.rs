//! The `trailkeep` command line: the server and every client-side tool (docs/cli.md).

mod alerts_cmd;
mod approvals_cmd;
mod client;
mod config;
mod export_cmd;
mod http;
mod impersonations_cmd;
mod ingest_cmd;
mod keys_cmd;
mod query_cmd;
mod serve;
mod table;
mod verify;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
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
    #[command(after_help = serve::HELP)]
    Serve {
        /// TOML configuration file (docs/configuration.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, HOST:PORT (default 127.0.0.1:7438; 0.0.0.0:PORT listens on every
        /// interface, port 0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        integrity: serve::Integrity,
    },
    /// Manage API keys: in the store directly, or through a running server with --url.
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
    /// Export events to a file (CSV, NDJSON, JSON, Parquet), or an evidence bundle that
    /// `trailkeep verify` checks offline.
    Export(export_cmd::ExportArgs),
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
    /// Alert channels: send a test alert (docs/alerts.md).
    Alerts {
        #[command(subcommand)]
        cmd: alerts_cmd::AlertsCmd,
    },
    /// Verify a log against its signed checkpoints: a tlog-proof, a directory, or a live server.
    #[command(after_long_help = verify::HELP)]
    Verify(verify::VerifyArgs),
    /// Dual approval through a running server: list and show approvals, approve or reject one.
    #[command(after_help = approvals_cmd::HELP)]
    Approvals {
        #[command(subcommand)]
        cmd: approvals_cmd::ApprovalsCmd,
    },
    /// Impersonation sessions through a running server: list them, or show one with the
    /// actions taken in it.
    Impersonations {
        #[command(subcommand)]
        cmd: impersonations_cmd::ImpersonationsCmd,
    },
    /// Print a shell completion script on stdout, e.g.
    /// `trailkeep completions bash > ~/.local/share/bash-completion/completions/trailkeep`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout, e.g. `trailkeep man > trailkeep.1; man ./trailkeep.1`.
    Man,
}

/// `trailkeep completions SHELL`.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "trailkeep", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `trailkeep man`: one page for the command and every subcommand (each as a section).
fn man() -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let cmd = Cli::command();
    let mut out = Vec::new();
    let page = clap_mangen::Man::new(cmd.clone());
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;
    fn sub_sections(cmd: &clap::Command, prefix: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{prefix} {}", sub.get_name());
            if sub.get_name() == "help" {
                continue;
            }
            writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
            let sub_cmd = sub.clone().bin_name(name.clone());
            let page = clap_mangen::Man::new(sub_cmd);
            let mut buf = Vec::new();
            page.render_synopsis_section(&mut buf)?;
            page.render_description_section(&mut buf)?;
            page.render_options_section(&mut buf)?;
            // Each rendered section starts with ".SH NAME"; inside a subcommand's section they
            // become sub-headings.
            let mut text = String::from_utf8_lossy(&buf).replace(".SH ", ".SS ");
            if sub.get_after_help().is_some() || sub.get_after_long_help().is_some() {
                // The after-help text is laid out by hand: shown as it is (no filling).
                let mut extra = Vec::new();
                page.render_extra_section(&mut extra)?;
                let extra = String::from_utf8_lossy(&extra).replace(".SH EXTRA", ".SS NOTES\n.nf");
                text.push_str(&extra);
                text.push_str(".fi\n");
            }
            out.extend_from_slice(text.as_bytes());
            sub_sections(sub, &name, out)?;
        }
        Ok(())
    }
    sub_sections(&cmd, "trailkeep", &mut out)?;
    page.render_version_section(&mut out)?;
    // Every rendered part starts with the same two-line preamble: keep the first.
    let text = String::from_utf8_lossy(&out);
    let mut page = String::new();
    let mut seen = 0;
    for line in text.lines() {
        if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
            seen += 1;
            if seen > 2 {
                continue;
            }
        }
        page.push_str(line);
        page.push('\n');
    }
    std::io::stdout().write_all(page.as_bytes())?;
    Ok(ExitCode::SUCCESS)
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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.cmd {
        Cmd::Serve {
            config,
            listen,
            store,
            integrity,
        } => serve::run(config, listen, store, integrity),
        Cmd::Key { cmd } => keys_cmd::run(
            cmd,
            matches
                .subcommand_matches("key")
                .and_then(|m| m.subcommand())
                .map(|(_, m)| m),
        ),
        Cmd::Ingest {
            file,
            server,
            batch,
        } => ingest_cmd::run(&file, &server, batch),
        Cmd::Query(a) => query_cmd::query(a),
        Cmd::Tail(a) => query_cmd::tail(a),
        Cmd::Export(a) => export_cmd::run(a),
        Cmd::Approvals { cmd } => approvals_cmd::run(cmd),
        Cmd::Impersonations { cmd } => impersonations_cmd::run(cmd),
        Cmd::Verify(a) => verify::run(a),
        Cmd::Alerts { cmd } => alerts_cmd::run(cmd),
        Cmd::Migrate { postgres, config } => migrate(postgres, config),
        Cmd::Completions { shell } => completions(shell),
        Cmd::Man => man(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument and subcommand of the whole command tree says what it is for.
    #[test]
    fn every_argument_and_subcommand_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: argument {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{p}: no description"));
                }
                walk(sub, &p, missing);
            }
        }
        let mut cmd = Cli::command();
        // Builds the generated --help, --version and help subcommands too.
        cmd.build();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "trailkeep", &mut missing);
        assert!(
            missing.is_empty(),
            "without help text:\n{}",
            missing.join("\n")
        );
    }
}
