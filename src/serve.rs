//! `trailkeep serve`: open the store, serve the API, shut down cleanly on SIGINT/SIGTERM.

use crate::config::Config;
use crate::StoreArgs;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use trailkeep_deliver::alerts::engine::AlertHandle;
use trailkeep_server::{app, AppState, ServerConfig};
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::postgres::PostgresStore;
use trailkeep_store::{Store, StoreError};

/// The environment `serve` reads besides the configuration settings (shown by `serve --help`).
pub const HELP: &str = "\
Environment:
  TRAILKEEP_ADMIN_KEY  An admin API key installed at start, for creating the first keys over the
                       API. It is held in memory only (as its SHA-256, never written to the
                       store, never listed by `key list`); it works until the server stops.
                       At least 32 characters: make one with `openssl rand -hex 32`.
  TRAILKEEP_LOG        Log filter for stderr (default: info), e.g. debug, warn or
                       trailkeep=debug,info. Logs are coloured only on a terminal; NO_COLOR turns
                       colour off.
  TRAILKEEP_*          Every setting of the configuration file, upper case with __ between levels:
                       TRAILKEEP_LISTEN, TRAILKEEP_LOG_NAME, TRAILKEEP_SIGNING_KEY,
                       TRAILKEEP_RETENTION__DEFAULT_DAYS… Unknown TRAILKEEP_ variables are refused.

Settings come from the defaults, then the --config file, then TRAILKEEP_* variables, then flags.";

/// What an operator accepts at start that the integrity checks would otherwise refuse (see
/// docs/operations.md, "Integrity checks at start"). Embedded store only.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Integrity {
    /// Start even though the log is behind its high-water mark (the data directory was
    /// restored from a backup on purpose); what is missing is recorded as a `log.restored`
    /// event in `_global`.
    #[arg(long)]
    pub accept_restored_log: bool,
    /// Sign checkpoints with a key other than the one recorded in the log; the rotation is
    /// recorded as a `log.key_rotated` event in `_global` (old checkpoints stay verifiable
    /// with the old key).
    #[arg(long)]
    pub rotate_signing_key: bool,
}

pub fn run(
    config: Option<PathBuf>,
    listen: Option<String>,
    store: StoreArgs,
    integrity: Integrity,
) -> Result<ExitCode> {
    init_logging();
    let admin = admin_key()?;
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
    let served = rt.block_on(serve(cfg, integrity, admin));
    // Stopped while the store was still opening: the replay (reads, at most cutting a torn
    // tail, as safe to interrupt as a crash) is not waited for.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Shortest `TRAILKEEP_ADMIN_KEY` accepted: a key an attacker can guess is an open door.
pub const MIN_ADMIN_KEY_CHARS: usize = 32;

/// `TRAILKEEP_ADMIN_KEY`, refused when shorter than [`MIN_ADMIN_KEY_CHARS`] (unset or empty:
/// no admin key).
fn admin_key() -> Result<Option<String>> {
    let Some(key) = std::env::var_os("TRAILKEEP_ADMIN_KEY") else {
        return Ok(None);
    };
    let Some(key) = key.to_str().map(str::to_string) else {
        anyhow::bail!(
            "TRAILKEEP_ADMIN_KEY is not valid UTF-8; make a key with `openssl rand -hex 32`"
        );
    };
    if key.is_empty() {
        return Ok(None);
    }
    let n = key.chars().count();
    if n < MIN_ADMIN_KEY_CHARS {
        anyhow::bail!(
            "TRAILKEEP_ADMIN_KEY is {n} characters long; it must have at least {MIN_ADMIN_KEY_CHARS} so it cannot be guessed. Make one with `openssl rand -hex 32` (or `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`)"
        );
    }
    Ok(Some(key))
}

/// Logs to stderr, filtered by `TRAILKEEP_LOG` (default `info`), in colour only when stderr is
/// a terminal and `NO_COLOR` is unset or empty.
fn init_logging() {
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let (filter, bad) = match std::env::var("TRAILKEEP_LOG") {
        Err(_) => (tracing_subscriber::EnvFilter::new("info"), None),
        Ok(v) => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (tracing_subscriber::EnvFilter::new("info"), Some((v, e))),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    if let Some((v, e)) = bad {
        tracing::warn!("TRAILKEEP_LOG={v:?} is not a valid log filter ({e}); logging at info");
    }
}

/// Parses and binds the listen address. Done before anything else is created or opened, so a
/// bad address leaves no data directory or signing key behind.
async fn bind(listen: &str) -> Result<tokio::net::TcpListener> {
    use std::net::SocketAddr;
    let addrs: Vec<SocketAddr> = match listen.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => {
            let shape_ok = listen
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !shape_ok {
                anyhow::bail!(
                    "invalid listen address {listen:?}: expected HOST:PORT with PORT from 0 to 65535, such as 127.0.0.1:7438 (this machine only) or 0.0.0.0:7438 (every interface)"
                );
            }
            tokio::net::lookup_host(listen)
                .await
                .with_context(|| format!("cannot resolve the listen address {listen:?}"))?
                .collect()
        }
    };
    if addrs.is_empty() {
        anyhow::bail!("the listen address {listen:?} resolves to no address");
    }
    tokio::net::TcpListener::bind(&addrs[..])
        .await
        .map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "the address is already in use (by another trailkeep serve?); stop that process or choose another address with --listen".to_string()
                }
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied (ports below 1024 need privileges); choose another port with --listen".to_string()
                }
                std::io::ErrorKind::AddrNotAvailable => {
                    "no network interface of this machine has that address; choose another with --listen".to_string()
                }
                _ => e.to_string(),
            };
            anyhow::anyhow!("cannot listen on {listen}: {why}")
        })
}

/// The `[viewer]` settings the server needs, checked.
fn viewer_config(cfg: &Config) -> Result<trailkeep_server::viewer::ViewerConfig> {
    let max_ttl_secs = trailkeep_store::keys::parse_duration_secs(&cfg.viewer.max_ttl)
        .map_err(|e| anyhow::anyhow!("invalid configuration: viewer.max_ttl: {e}"))?;
    for o in &cfg.viewer.frame_ancestors {
        trailkeep_server::viewer::check_frame_ancestor(o)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    }
    Ok(trailkeep_server::viewer::ViewerConfig {
        max_ttl_secs,
        frame_ancestors: cfg.viewer.frame_ancestors.clone(),
    })
}

async fn serve(cfg: Config, integrity: Integrity, admin: Option<String>) -> Result<()> {
    let viewer = viewer_config(&cfg)?;
    let alerts = cfg.alerts.check()?;
    let max_session = cfg.impersonation.max_session()?;
    let public_url = crate::config::public_url(cfg.public_url.as_deref())?;
    let listener = bind(&cfg.listen).await?;
    let addr = listener.local_addr()?;
    let seed = signing_seed(&cfg)?;
    let token_key = viewer_token_key(&cfg)?;
    if cfg.postgres.is_some() && (integrity.accept_restored_log || integrity.rotate_signing_key) {
        anyhow::bail!(
            "--accept-restored-log and --rotate-signing-key apply to the embedded store only"
        );
    }
    let conn_limits = crate::http::ConnLimits {
        header_read_timeout: cfg
            .limits
            .duration("header_read_timeout", &cfg.limits.header_read_timeout)?,
        idle_timeout: cfg
            .limits
            .duration("idle_timeout", &cfg.limits.idle_timeout)?,
        max_connections: cfg.limits.max_connections,
    };
    if conn_limits.max_connections == 0 {
        anyhow::bail!("invalid configuration: limits.max_connections must be at least 1");
    }
    // The address answers at once: opening the store replays its log, which takes a while for
    // a large one. Until it is open, /healthz answers 200, /readyz 503 "starting", everything
    // else 503 with Retry-After (see `starting`); then the full API takes over.
    let full: Arc<std::sync::OnceLock<axum::Router>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(crate::http::serve(
        listener,
        front(full.clone()),
        conn_limits,
        stopped(stop_rx.clone()),
    ));
    let opened = tokio::select! {
        r = open_store(&cfg, seed, &integrity) => r?,
        _ = stopped(stop_rx.clone()) => {
            tracing::info!("stopped while opening the store");
            let _ = server.await;
            return Ok(());
        }
    };
    let (store, where_) = opened;
    let server_cfg = ServerConfig {
        max_body_bytes: cfg.max_body_bytes,
        default_retention_days: cfg.retention.default_days,
        rate_limit_rps: cfg.limits.requests_per_second,
        rate_limit_burst: cfg.limits.burst,
        viewer,
        failed_auth_rps: cfg.limits.failed_auth_per_second,
        failed_auth_burst: cfg.limits.failed_auth_burst,
        max_auditor_ttl_secs: cfg.limits.max_auditor_ttl_secs()?,
        max_exports: cfg.limits.max_exports,
        approvals: cfg.approvals.config()?,
        body_read_timeout: Some(
            cfg.limits
                .duration("body_read_timeout", &cfg.limits.body_read_timeout)?,
        ),
    };
    let state = AppState::new(store.clone(), server_cfg, admin.as_deref())
        .with_signer(&cfg.log_name, seed)
        .map_err(anyhow::Error::msg)?
        .with_viewer_key(token_key);
    let (state, engine) = start_alerts(state, store.clone(), alerts, max_session, public_url)?;
    let checkpointer = trailkeep_server::checkpoint::spawn(state.clone());
    let expiry = trailkeep_server::expiry::spawn(state.clone(), trailkeep_server::expiry::EVERY);
    let _ = full.set(app(state));
    // One line, always shown (scripts and tests read the address from it, and wait for it: the
    // API is complete from here on): through the log when it shows info lines, else stderr.
    if tracing::enabled!(tracing::Level::INFO) {
        tracing::info!("trailkeep listening on http://{addr} ({where_})");
    } else {
        eprintln!("trailkeep listening on http://{addr} ({where_})");
    }
    server.await??;
    checkpointer.abort();
    expiry.abort();
    if let Some(engine) = engine {
        // Between two attempts: cursors saved up to the last alert delivered.
        engine.shutdown().await;
    }
    tracing::info!("shutting down: flushing the store");
    store.shutdown().await;
    Ok(())
}

/// Starts the alert engine when channels are configured (docs/alerts.md).
fn start_alerts(
    state: AppState,
    store: Arc<dyn Store>,
    alerts: crate::config::CheckedAlerts,
    max_session: std::time::Duration,
    public_url: Option<String>,
) -> Result<(AppState, Option<AlertHandle>)> {
    use trailkeep_deliver::alerts::channel::Channel;
    use trailkeep_deliver::alerts::engine::{self, Destination, EngineConfig};
    use trailkeep_deliver::alerts::retry::RetryPolicy;
    if alerts.channels.is_empty() {
        return Ok((state, None));
    }
    let http = reqwest::Client::builder()
        .user_agent(concat!("trailkeep/", env!("CARGO_PKG_VERSION")))
        // A redirect would turn the POST into a GET (an alert lost as "delivered") or send
        // the signed body elsewhere: a 3xx is an answer like any other (refused).
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the alert channels' HTTP client")?;
    let limits = trailkeep_deliver::alerts::rate::Limits::new();
    let mut channels: Vec<Arc<dyn Destination>> = Vec::new();
    let mut summaries = Vec::new();
    for c in &alerts.channels {
        let ch = Channel::new(c, public_url.as_deref(), http.clone(), &limits)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        summaries.push(trailkeep_server::alerts::ChannelSummary {
            name: ch.name().to_string(),
            kind: ch.kind().as_str().to_string(),
            url: ch.redacted_url().to_string(),
        });
        channels.push(Arc::new(ch));
    }
    let rules = alerts
        .rules
        .rules
        .iter()
        .map(|r| r.config.clone())
        .collect();
    let mut cfg = EngineConfig::new(
        alerts.rules,
        channels,
        RetryPolicy {
            give_up_after: alerts.give_up_after,
            ..RetryPolicy::default()
        },
    );
    cfg.max_session = Some(max_session);
    let handle = engine::start(store, cfg);
    let state = state.with_alerts(trailkeep_server::alerts::Alerts {
        handle: handle.clone(),
        rules,
        default_rules: alerts.default_rules,
        channels: summaries,
    });
    Ok((state, Some(handle)))
}

/// Opens the configured store (the embedded one on a blocking thread: it replays the log).
async fn open_store(
    cfg: &Config,
    seed: [u8; 32],
    integrity: &Integrity,
) -> Result<(Arc<dyn Store>, String)> {
    // Test only: holds the opening back, so that tests can watch the probes during a long
    // start without writing a large log first. Not a setting; never set it in production.
    if let Some(ms) = std::env::var("TRAILKEEP_TEST_OPEN_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    // PostgreSQL when a URL is configured (several processes may share the database; give them
    // the same signing key, `signing_key` or `signing_key_file`), else the embedded store.
    match &cfg.postgres {
        Some(url) => {
            let store = PostgresStore::open(url, cfg.postgres_timeouts.options()?)
                .await
                .context("cannot open the PostgreSQL store")?;
            let id = trailkeep_server::checkpoint::LogIdentity::new(&cfg.log_name, seed)
                .map_err(anyhow::Error::msg)?;
            store
                .claim_signing_key(&cfg.log_name, &id.verifier.to_vkey())
                .await?;
            Ok((Arc::new(store), "PostgreSQL store".to_string()))
        }
        None => {
            let dir = cfg.data_dir.clone();
            let opts = EmbeddedOptions {
                accept_rollback: integrity.accept_restored_log,
                ..EmbeddedOptions::default()
            };
            let opened = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, opts))
                .await
                .context("the task opening the store failed")?;
            let store = match opened {
                Ok(s) => s,
                // Already one sentence naming the directory and what to do.
                Err(e @ StoreError::InUse(_)) => return Err(e.into()),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot open the store in {}", cfg.data_dir.display())
                    })
                }
            };
            let id = trailkeep_server::checkpoint::LogIdentity::new(&cfg.log_name, seed)
                .map_err(anyhow::Error::msg)?;
            store.claim_signing_key(&id.verifier.to_vkey(), integrity.rotate_signing_key)?;
            Ok((
                Arc::new(store),
                format!("embedded store in {}", cfg.data_dir.display()),
            ))
        }
    }
}

/// The router behind the listener: the full API once it is set, until then [`starting`].
fn front(full: Arc<std::sync::OnceLock<axum::Router>>) -> axum::Router {
    use tower::ServiceExt;
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let full = full.clone();
        async move {
            match full.get() {
                Some(app) => match app.clone().oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
                None => starting(req.uri().path()),
            }
        }
    })
}

/// Answers while the store opens: the process is alive (`/healthz` 200) but not ready.
fn starting(path: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    if path == "/healthz" {
        return axum::Json(serde_json::json!({"status": "ok"})).into_response();
    }
    let mut e = trailkeep_server::ApiError::unavailable(
        "starting: replaying the log; the API answers once the store is open (watch /readyz)",
    );
    e.code = "starting";
    e.retry_after = Some(1);
    e.into_response()
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
        Ok(text) => {
            warn_if_readable(&path);
            parse(&text, &path.display().to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cfg.signing_key_file.is_none() => {
            let seed: [u8; 32] = rand::random();
            trailkeep_store::embedded::perm::create_dir_private(&cfg.data_dir)?;
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

/// The key viewer tokens are signed with: from `viewer.token_key`, from
/// `viewer.token_key_file`, or from `<data_dir>/viewer-token-key`, created (mode 0600) on first
/// start. It is not the log's signing key: replacing it revokes every viewer token and nothing
/// else (docs/operations.md).
fn viewer_token_key(cfg: &Config) -> Result<[u8; 32]> {
    fn parse(hex_text: &str, from: &str) -> Result<[u8; 32]> {
        let bytes = hex::decode(hex_text.trim())
            .with_context(|| format!("the viewer token key in {from} is not hex"))?;
        bytes.try_into().map_err(|_| {
            anyhow::anyhow!("the viewer token key in {from} must be 32 bytes (64 hex digits)")
        })
    }
    if let Some(k) = &cfg.viewer.token_key {
        return parse(k, "viewer.token_key");
    }
    let path = cfg
        .viewer
        .token_key_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("viewer-token-key"));
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound && cfg.viewer.token_key_file.is_none() =>
        {
            let key: [u8; 32] = rand::random();
            write_secret(&cfg.data_dir, &path, &key)?;
            tracing::info!(path = %path.display(), "created the viewer token key");
            Ok(key)
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot read the viewer token key {}", path.display()))
        }
    }
}

/// Writes a new 32-byte secret as hex to `path` (mode 0600), atomically.
fn write_secret(dir: &std::path::Path, path: &std::path::Path, secret: &[u8; 32]) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        writeln!(f, "{}", hex::encode(secret))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Warns when the signing key file may be read by other users (it is created 0600).
fn warn_if_readable(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "the signing key {} is readable by other users (mode {mode:o}): anyone who reads it can sign checkpoints for this log; restrict it with `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
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
