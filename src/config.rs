//! Configuration: the TOML file of SPEC §10, overridden by `TRAILKEEP_*` environment variables
//! (`__` between levels), overridden by flags.
//!
//! Sections that later features read (`alerts`, `approvals`, `impersonation`, `sinks`) are
//! accepted now so a full configuration file loads; unknown top-level keys are refused so that
//! typos surface at start instead of being silently ignored.

use anyhow::{Context, Result};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    pub log_name: String,
    /// Ed25519 signing key seed file (64 hex digits); default `<data_dir>/signing-key`, created
    /// on first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// The seed itself (64 hex digits), e.g. from a secret store via `TRAILKEEP_SIGNING_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    pub retention: Retention,
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonation: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinks: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub default_days: u32,
    pub purge_interval: String,
}

/// Per-key request rate limit; 0 turns it off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub requests_per_second: f64,
    pub burst: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7438".into(),
            data_dir: PathBuf::from("./trailkeep-data"),
            postgres: None,
            log_name: "default".into(),
            signing_key_file: None,
            signing_key: None,
            max_body_bytes: 16 * 1024 * 1024,
            retention: Retention {
                default_days: 365,
                purge_interval: "1h".into(),
            },
            limits: Limits {
                requests_per_second: 0.0,
                burst: 0.0,
            },
            alerts: None,
            approvals: None,
            impersonation: None,
            sinks: None,
        }
    }
}

/// Variables that configure clients or secrets, not the config file.
const NOT_CONFIG: &[&str] = &["ADMIN_KEY", "KEY", "URL", "DATA_DIR", "POSTGRES_URL", "LOG"];

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                anyhow::bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("TRAILKEEP_").ignore(NOT_CONFIG).split("__"));
        // The two store variables the CLI also reads as flags.
        if let Ok(d) = std::env::var("TRAILKEEP_DATA_DIR") {
            fig = fig.merge(Serialized::default("data_dir", d));
        }
        if let Ok(p) = std::env::var("TRAILKEEP_POSTGRES_URL") {
            fig = fig.merge(Serialized::default("postgres", p));
        }
        fig.extract().context("invalid configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(
            &f,
            r#"
listen = "127.0.0.1:9999"
data_dir = "/tmp/x"
log_name = "prod"
[retention]
default_days = 400
purge_interval = "1h"
[[alerts.channels]]
name = "ops-chat"
kind = "google_chat"
url = "https://chat.googleapis.com/v1/spaces/AAA/messages"
[[alerts.rules]]
name = "high-risk"
event_types = ["prompt.update"]
channels = ["ops-chat"]
[approvals]
required_for = ["tenant.disable"]
approvers = 2
ttl = "24h"
[impersonation]
max_session = "8h"
[[sinks]]
name = "gcl"
kind = "google_cloud_logging"
project_id = "p"
"#,
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9999");
        assert_eq!(c.retention.default_days, 400);
        assert_eq!(c.log_name, "prod");
    }

    #[test]
    fn typo_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "lisen = \"x\"\n").unwrap();
        assert!(Config::load(Some(&f)).is_err());
    }
}
