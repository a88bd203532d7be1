//! `trailkeep key create|list|revoke`: key management straight on the store, so the first key
//! can be made before any server runs (and while one runs: the server picks changes up).

use crate::StoreArgs;
use anyhow::{bail, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use trailkeep_store::embedded::EmbeddedStore;
use trailkeep_store::keys::generate_secret;
use trailkeep_store::NewKey;

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

fn open(store: &StoreArgs) -> Result<trailkeep_store::embedded::KeysOnly> {
    if store.postgres.is_some() {
        bail!("the PostgreSQL backend is not part of this build yet; use --data-dir");
    }
    let dir = store
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./trailkeep-data"));
    Ok(EmbeddedStore::open_keys(&dir)?)
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
