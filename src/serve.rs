//! `trailkeep serve`: open the store, serve the API, shut down cleanly on SIGINT/SIGTERM.

use crate::config::Config;
use crate::StoreArgs;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use trailkeep_server::{app, AppState, ServerConfig};
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::postgres::PostgresStore;
use trailkeep_store::Store;

pub fn run(config: Option<PathBuf>, listen: Option<String>, store: StoreArgs) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRAILKEEP_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = Config::load(config.as_deref())?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(d) = store.data_dir {
        cfg.data_dir = d;
    }
    if let Some(p) = store.postgres {
        cfg.postgres = Some(p);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(cfg: Config) -> Result<()> {
    // PostgreSQL when a URL is configured (several processes may share the database; give them
    // the same signing key, `signing_key` or `signing_key_file`), else the embedded store.
    let seed = signing_seed(&cfg)?;
    let (store, where_): (Arc<dyn Store>, String) = match &cfg.postgres {
        Some(url) => {
            let store = PostgresStore::open(url, cfg.postgres_timeouts.options()?)
                .await
                .context("cannot open the PostgreSQL store")?;
            let id = trailkeep_server::checkpoint::LogIdentity::new(&cfg.log_name, seed)
                .map_err(anyhow::Error::msg)?;
            store
                .claim_signing_key(&cfg.log_name, &id.verifier.to_vkey())
                .await?;
            (Arc::new(store), "PostgreSQL store".to_string())
        }
        None => {
            let store = EmbeddedStore::open(&cfg.data_dir, EmbeddedOptions::default())
                .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display()))?;
            (
                Arc::new(store),
                format!("embedded store in {}", cfg.data_dir.display()),
            )
        }
    };
    let admin = std::env::var("TRAILKEEP_ADMIN_KEY").ok();
    let server_cfg = ServerConfig {
        max_body_bytes: cfg.max_body_bytes,
        default_retention_days: cfg.retention.default_days,
        rate_limit_rps: cfg.limits.requests_per_second,
        rate_limit_burst: cfg.limits.burst,
    };
    let state = AppState::new(store.clone(), server_cfg, admin.as_deref())
        .with_signer(&cfg.log_name, seed)
        .map_err(anyhow::Error::msg)?;
    let checkpointer = trailkeep_server::checkpoint::spawn(state.clone());
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = %where_, "trailkeep listening");
    eprintln!("trailkeep listening on http://{addr} ({where_})");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    checkpointer.abort();
    tracing::info!("shutting down: flushing the store");
    store.shutdown().await;
    Ok(())
}

/// The log's Ed25519 seed: from `signing_key`, from `signing_key_file`, or from
/// `<data_dir>/signing-key`, which is created (mode 0600) on first start.
fn signing_seed(cfg: &Config) -> Result<[u8; 32]> {
    fn parse(hex_text: &str, from: &str) -> Result<[u8; 32]> {
        let bytes = hex::decode(hex_text.trim())
            .with_context(|| format!("the signing key in {from} is not hex"))?;
        bytes.try_into().map_err(|_| {
            anyhow::anyhow!("the signing key in {from} must be 32 bytes (64 hex digits)")
        })
    }
    if let Some(k) = &cfg.signing_key {
        return parse(k, "signing_key");
    }
    let path = cfg
        .signing_key_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("signing-key"));
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cfg.signing_key_file.is_none() => {
            let seed: [u8; 32] = rand::random();
            std::fs::create_dir_all(&cfg.data_dir)?;
            let tmp = path.with_extension("tmp");
            {
                use std::io::Write;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&tmp)?;
                writeln!(f, "{}", hex::encode(seed))?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            tracing::info!(path = %path.display(), "created the log's signing key");
            Ok(seed)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the signing key {}", path.display())),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
