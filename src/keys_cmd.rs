//! `trailkeep key create|list|revoke`: key management straight on the store, so the first key
//! can be made before any server runs (and while one runs: the server picks changes up).

use crate::StoreArgs;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use trailkeep_store::embedded::EmbeddedStore;
use trailkeep_store::keys::generate_secret;
use trailkeep_store::postgres::{PostgresOptions, PostgresStore};
use trailkeep_store::{KeyRecord, NewKey, Store};

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Create a key; prints only the key on stdout.
    Create {
        /// admin, ingest, reader or auditor.
        #[arg(long)]
        role: String,
        /// Bind the key to one tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime such as 30d or 12h (auditor keys default to 30d).
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by id.
    Revoke {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
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

fn open(store: &StoreArgs) -> Result<Keys> {
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
    Ok(Keys::Embedded(EmbeddedStore::open_keys(&dir)?))
}

pub fn run(cmd: KeyCmd) -> Result<ExitCode> {
    match cmd {
        KeyCmd::Create {
            role,
            tenant,
            ttl,
            store,
        } => {
            let (role, ttl) =
                trailkeep_server::keys::check_new_key(&role, tenant.as_deref(), ttl.as_deref())
                    .map_err(anyhow::Error::msg)?;
            let keys = open(&store)?;
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
        KeyCmd::List { store } => {
            for k in open(&store)?.list()? {
                println!("{}", serde_json::to_string(&k.view())?);
            }
        }
        KeyCmd::Revoke { id, store } => {
            if !open(&store)?.revoke(&id)? {
                bail!("no key with id {id}");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
