//! `trailkeep key create|list|revoke`: key management straight on the store, so the first key
//! can be made before any server runs (and while one runs: the server sees a new key at once),
//! or through a running server's key API with `--url`.
//!
//! A command on the store refuses a data directory that holds no store unless `--init` is
//! given: a key made in a directory no server reads would never be accepted.

use crate::StoreArgs;
use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use trailkeep_store::embedded::EmbeddedStore;
use trailkeep_store::keys::generate_secret;
use trailkeep_store::postgres::{PostgresOptions, PostgresStore};
use trailkeep_store::{KeyRecord, NewKey, Store};

/// Shown by `key create|list|revoke --help`.
const TARGET_HELP: &str = "\
Where the keys are: --data-dir DIR (default ./trailkeep-data) or --postgres URL manage them in the
store itself (a running server sees the change at once); --url URL goes through that server's key
API with an admin key (--key, TRAILKEEP_KEY, else TRAILKEEP_ADMIN_KEY). Flags win over
environment variables; with only variables set, TRAILKEEP_DATA_DIR and TRAILKEEP_POSTGRES_URL win
over TRAILKEEP_URL, and --init always means the store. A data directory without a store is
refused unless --init is given.";

/// Where a key command works.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KeyTarget {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Manage keys through the running server at this base URL (its key API) instead of in the
    /// store; needs an admin key.
    #[arg(long, env = "TRAILKEEP_URL")]
    pub url: Option<String>,
    /// Admin API key for --url (default: TRAILKEEP_KEY, else TRAILKEEP_ADMIN_KEY).
    #[arg(long, env = "TRAILKEEP_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Create a new, empty store in the data directory if it holds none (without it, such a
    /// directory is refused).
    #[arg(long)]
    pub init: bool,
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Create a key; prints only the key on stdout.
    #[command(after_help = TARGET_HELP)]
    Create {
        /// admin, ingest, reader, auditor or approver.
        #[arg(long)]
        role: String,
        /// Bind the key to one tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime such as 30d or 12h (auditor keys default to 30d).
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        target: KeyTarget,
    },
    /// List keys (never their secrets), one JSON object a line.
    #[command(after_help = TARGET_HELP)]
    List {
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Revoke a key by id.
    #[command(after_help = TARGET_HELP)]
    Revoke {
        /// The key's id, as `key create` and `key list` show it.
        id: String,
        #[command(flatten)]
        target: KeyTarget,
    },
}

/// The key store of the embedded data directory or of a PostgreSQL database.
enum Keys {
    Embedded(trailkeep_store::embedded::KeysOnly),
    Postgres(tokio::runtime::Runtime, PostgresStore),
}

impl Keys {
    fn create(&self, key: NewKey) -> Result<KeyRecord> {
        Ok(match self {
            Keys::Embedded(k) => k.create(key)?,
            Keys::Postgres(rt, s) => rt.block_on(s.create_key(key))?,
        })
    }
    fn list(&self) -> Result<Vec<KeyRecord>> {
        Ok(match self {
            Keys::Embedded(k) => k.list()?,
            Keys::Postgres(rt, s) => rt.block_on(s.list_keys())?,
        })
    }
    fn revoke(&self, id: &str) -> Result<bool> {
        Ok(match self {
            Keys::Embedded(k) => k.revoke(id)?,
            Keys::Postgres(rt, s) => rt.block_on(s.revoke_key(id))?,
        })
    }
}

fn open(store: &StoreArgs, init: bool) -> Result<Keys> {
    if let Some(url) = &store.postgres {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let s = rt
            .block_on(PostgresStore::open(
                url,
                PostgresOptions {
                    max_connections: 1,
                    committers: 1,
                    ..PostgresOptions::default()
                },
            ))
            .context("cannot open the PostgreSQL store")?;
        return Ok(Keys::Postgres(rt, s));
    }
    let dir = store
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./trailkeep-data"));
    if !EmbeddedStore::exists(&dir) {
        if !init {
            bail!(
                "no store at {}; pass --data-dir (the directory the server uses), --postgres, --url (a running server), or --init to create a new one",
                absolute(&dir).display()
            );
        }
        EmbeddedStore::init(&dir)?;
        eprintln!("created a new store in {}", absolute(&dir).display());
    }
    Ok(Keys::Embedded(EmbeddedStore::open_keys(&dir)?))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Whether to use the server at `--url` rather than the store: a flag on the command line wins
/// over environment variables; among variables only, the store's win; `--init` means the store.
fn use_url(target: &KeyTarget, matches: Option<&ArgMatches>) -> Result<bool> {
    let source = |id: &str| matches.and_then(|m| m.value_source(id));
    let url_cl = source("url") == Some(ValueSource::CommandLine);
    let store_cl = source("data_dir") == Some(ValueSource::CommandLine)
        || source("postgres") == Some(ValueSource::CommandLine);
    if url_cl && store_cl {
        bail!("pass either --url (through a running server) or --data-dir/--postgres (straight on the store), not both");
    }
    if target.init && url_cl {
        bail!("--init creates a store in a data directory; it does not go with --url");
    }
    // --init asks for the store, so it beats TRAILKEEP_URL too.
    Ok(target.url.is_some()
        && (url_cl
            || (!store_cl
                && !target.init
                && target.store.data_dir.is_none()
                && target.store.postgres.is_none())))
}

pub fn run(cmd: KeyCmd, matches: Option<&ArgMatches>) -> Result<ExitCode> {
    let target = match &cmd {
        KeyCmd::Create { target, .. } | KeyCmd::List { target } | KeyCmd::Revoke { target, .. } => {
            target.clone()
        }
    };
    if use_url(&target, matches)? {
        let api = Api::new(&target)?;
        return api.run(cmd);
    }
    match cmd {
        KeyCmd::Create {
            role,
            tenant,
            ttl,
            target,
        } => {
            // The auditor bound of the configuration `serve` reads from the environment.
            let max_auditor = crate::config::Config::load(None)?
                .limits
                .max_auditor_ttl_secs()?;
            let (role, ttl) = trailkeep_server::keys::check_new_key(
                &role,
                tenant.as_deref(),
                ttl.as_deref(),
                max_auditor,
            )
            .map_err(anyhow::Error::msg)?;
            let keys = open(&target.store, target.init)?;
            let (secret, hash) = generate_secret();
            let rec = keys.create(NewKey {
                role,
                tenant_id: tenant,
                ttl_seconds: ttl,
                secret_hash: hash,
            })?;
            eprintln!(
                "created {} key {}{}",
                rec.role.as_str(),
                rec.id,
                rec.expires_at
                    .map(|e| format!(", expires {e}"))
                    .unwrap_or_default()
            );
            println!("{secret}");
        }
        KeyCmd::List { target } => {
            for k in open(&target.store, target.init)?.list()? {
                println!("{}", serde_json::to_string(&k.view())?);
            }
        }
        KeyCmd::Revoke { id, target } => {
            if !open(&target.store, target.init)?.revoke(&id)? {
                bail!("no key with id {id}");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The key API of a running server (`POST /v1/keys`, `GET /v1/keys`, `DELETE /v1/keys/{id}`).
struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn new(target: &KeyTarget) -> Result<Api> {
        let base = target
            .url
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let key = target
            .key
            .clone()
            .or_else(|| std::env::var("TRAILKEEP_ADMIN_KEY").ok())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                anyhow!("managing keys through {base} needs an admin key: pass --key or set TRAILKEEP_KEY")
            })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Api {
            base,
            key,
            http,
            rt,
        })
    }

    /// Sends one request; a refusal becomes an error with the server's message.
    fn send(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, Vec<u8>)> {
        self.rt.block_on(async {
            let mut req = self.http.request(method, url).bearer_auth(&self.key);
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&b)?);
            }
            let resp = req.send().await.map_err(|e| {
                anyhow!(
                    "cannot reach the trailkeep server at {}: {e}; is it running (trailkeep serve), and is the URL right?",
                    self.base
                )
            })?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await?.to_vec();
            Ok((status, bytes))
        })
    }

    fn url(&self, segments: &[&str]) -> Result<reqwest::Url> {
        let mut u = reqwest::Url::parse(&format!("{}/", self.base))
            .with_context(|| format!("invalid server URL {:?}", self.base))?;
        {
            let mut p = u
                .path_segments_mut()
                .map_err(|_| anyhow!("invalid server URL {:?}", self.base))?;
            p.pop_if_empty();
            for s in segments {
                p.push(s);
            }
        }
        Ok(u)
    }

    /// The error for a refused request: status and the server's message.
    fn refused(&self, status: u16, body: &[u8]) -> anyhow::Error {
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let hint = match status {
            401 => "; pass an admin key with --key or TRAILKEEP_KEY",
            403 => "; key management needs an admin key",
            _ => "",
        };
        anyhow!(
            "the server at {} refused ({status}): {message}{hint}",
            self.base
        )
    }

    fn run(&self, cmd: KeyCmd) -> Result<ExitCode> {
        match cmd {
            KeyCmd::Create {
                role, tenant, ttl, ..
            } => {
                // The same checks as the server, so a typo is refused before any request (the
                // auditor bound is the server's to apply: its configuration is not known here).
                trailkeep_server::keys::check_new_key(
                    &role,
                    tenant.as_deref(),
                    ttl.as_deref(),
                    trailkeep_store::keys::MAX_KEY_TTL_SECS,
                )
                .map_err(anyhow::Error::msg)?;
                let mut body = serde_json::json!({ "role": role });
                if let Some(t) = tenant {
                    body["tenant_id"] = t.into();
                }
                if let Some(t) = ttl {
                    body["ttl"] = t.into();
                }
                let (status, bytes) = self.send(
                    reqwest::Method::POST,
                    self.url(&["v1", "keys"])?,
                    Some(body),
                )?;
                if status != 201 && status != 200 {
                    return Err(self.refused(status, &bytes));
                }
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .context("the server's answer to POST /v1/keys is not JSON")?;
                let secret = v["key"]
                    .as_str()
                    .ok_or_else(|| anyhow!("the server's answer to POST /v1/keys holds no key"))?;
                eprintln!(
                    "created {} key {}{}",
                    v["role"].as_str().unwrap_or("?"),
                    v["id"].as_str().unwrap_or("?"),
                    v["expires_at"]
                        .as_str()
                        .map(|e| format!(", expires {e}"))
                        .unwrap_or_default()
                );
                println!("{secret}");
            }
            KeyCmd::List { .. } => {
                let (status, bytes) =
                    self.send(reqwest::Method::GET, self.url(&["v1", "keys"])?, None)?;
                if status != 200 {
                    return Err(self.refused(status, &bytes));
                }
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .context("the server's answer to GET /v1/keys is not JSON")?;
                let keys = v["keys"]
                    .as_array()
                    .ok_or_else(|| anyhow!("the server's answer to GET /v1/keys holds no keys"))?;
                for k in keys {
                    println!("{}", serde_json::to_string(k)?);
                }
            }
            KeyCmd::Revoke { id, .. } => {
                let (status, bytes) = self.send(
                    reqwest::Method::DELETE,
                    self.url(&["v1", "keys", &id])?,
                    None,
                )?;
                match status {
                    200 | 204 => eprintln!("revoked {id}"),
                    404 if String::from_utf8_lossy(&bytes).contains("no key") => {
                        bail!("no key with id {id}")
                    }
                    _ => return Err(self.refused(status, &bytes)),
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
