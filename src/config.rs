//! Configuration: the TOML file of docs/configuration.md, overridden by `TRAILKEEP_*` environment variables
//! (`__` between levels), overridden by flags.
//!
//! Sections that later features read (`alerts`, `approvals`, `impersonation`, `sinks`) are
//! accepted now so a full configuration file loads; unknown top-level keys are refused so that
//! typos surface at start instead of being silently ignored.

use anyhow::Result;
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

/// `TRAILKEEP_*` variables that are not settings of the configuration file: the admin key and
/// the log filter read by `serve` itself, and the variables of the project's test and benchmark
/// scripts. Every variable a command-line flag reads (`TRAILKEEP_URL`, `TRAILKEEP_KEY`,
/// `TRAILKEEP_DATA_DIR`…) is added from the CLI definition, see [`not_config`].
const NOT_CONFIG: &[&str] = &[
    "ADMIN_KEY",
    "LOG",
    "TEST_POSTGRES",
    "SHARED",
    "TEST_OPEN_DELAY_MS",
    "FAULT_ROUNDS",
];

/// The names (without `TRAILKEEP_`) of the variables that are not configuration settings.
fn not_config() -> Vec<String> {
    fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if let Some(name) = arg.get_env().and_then(|e| e.to_str()) {
                if let Some(rest) = name.strip_prefix("TRAILKEEP_") {
                    out.push(rest.to_string());
                }
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out: Vec<String> = NOT_CONFIG.iter().map(|s| s.to_string()).collect();
    walk(&<crate::Cli as clap::CommandFactory>::command(), &mut out);
    out.sort();
    out.dedup();
    out
}

impl Config {
    /// Loads the configuration: defaults < `file` < `TRAILKEEP_*` variables. Errors name their
    /// source: the file (its path as given, made absolute) or the environment variable.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let file = file.map(|f| std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf()));
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = &file {
            if !f.is_file() {
                anyhow::bail!(
                    "config file {} does not exist (or is not a file); pass the path of a TOML file to --config",
                    f.display()
                );
            }
            fig = fig.merge(Toml::file_exact(f));
        }
        let ignore = not_config();
        let ignore: Vec<&str> = ignore.iter().map(String::as_str).collect();
        fig = fig.merge(Env::prefixed("TRAILKEEP_").ignore(&ignore).split("__"));
        // The two store variables the CLI also reads as flags.
        if let Ok(d) = std::env::var("TRAILKEEP_DATA_DIR") {
            fig = fig.merge(Serialized::default("data_dir", d));
        }
        if let Ok(p) = std::env::var("TRAILKEEP_POSTGRES_URL") {
            fig = fig.merge(Serialized::default("postgres", p));
        }
        fig.extract().map_err(|e| {
            let lines: Vec<String> = e
                .into_iter()
                .map(|e| describe(&e, file.as_deref()))
                .collect();
            anyhow::anyhow!("{}", lines.join("\n"))
        })
    }
}

/// Top-level keys that hold tables (their variables name a key inside: `TRAILKEEP_LIMITS__BURST`).
const TABLES: &[&str] = &[
    "retention",
    "limits",
    "alerts",
    "approvals",
    "impersonation",
    "sinks",
];

/// One configuration error as a sentence naming where the bad value came from.
fn describe(e: &figment::Error, file: Option<&Path>) -> String {
    use figment::error::Kind;
    let md = e.metadata.as_ref();
    let from_env = md.is_some_and(|m| m.name.contains("environment"));
    let from_file = md
        .and_then(|m| m.source.as_ref())
        .is_some_and(|s| matches!(s, figment::Source::File(_)));
    let key = e.path.join(".");
    let var = || format!("TRAILKEEP_{}", e.path.join("__").to_ascii_uppercase());
    let parent = &e.path[..e.path.len().saturating_sub(1)];
    let what = match &e.kind {
        Kind::UnknownField(_, expected) if from_env => {
            let names: Vec<String> = expected
                .iter()
                .map(|k| {
                    let mut p: Vec<&str> = parent.iter().map(String::as_str).collect();
                    p.push(k);
                    let name = format!("TRAILKEEP_{}", p.join("__").to_ascii_uppercase());
                    match (parent.is_empty(), *k) {
                        (true, "postgres") => "TRAILKEEP_POSTGRES_URL".to_string(),
                        (true, t) if TABLES.contains(&t) => format!("{name}__…"),
                        _ => name,
                    }
                })
                .collect();
            format!("unknown setting (expected one of: {})", names.join(", "))
        }
        Kind::UnknownField(_, expected) => {
            format!(
                "unknown key \"{key}\" (expected one of: {})",
                expected.join(", ")
            )
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let expected = match expected.as_str() {
                "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
                "f32" | "f64" => "a number",
                other => other,
            };
            format!("expected {expected}, found {}", actual_text(actual))
        }
        Kind::MissingField(f) => format!("missing key \"{f}\""),
        other => other.to_string().replace('`', "\""),
    };
    let with_key = |what: String| {
        if key.is_empty() || matches!(e.kind, Kind::UnknownField(..)) {
            what
        } else {
            format!("{key}: {what}")
        }
    };
    if from_env {
        format!(
            "invalid configuration in environment variable {}: {what}",
            var()
        )
    } else if let (true, Some(f)) = (from_file, file) {
        format!(
            "invalid configuration in {}: {}",
            f.display(),
            with_key(what)
        )
    } else {
        format!("invalid configuration: {}", with_key(what))
    }
}

fn actual_text(a: &figment::error::Actual) -> String {
    use figment::error::Actual;
    match a {
        Actual::Bool(v) => v.to_string(),
        Actual::Unsigned(v) => v.to_string(),
        Actual::Signed(v) => v.to_string(),
        Actual::Float(v) => v.to_string(),
        Actual::Char(c) => format!("{:?}", c.to_string()),
        Actual::Str(s) => format!("{s:?}"),
        Actual::Map => "a table".into(),
        Actual::Seq => "a list".into(),
        other => other.to_string().replace('`', ""),
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

    fn load_error(file: &Path) -> String {
        match Config::load(Some(file)) {
            Ok(_) => panic!("{} loaded", file.display()),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn typo_is_an_error_naming_the_key_and_the_absolute_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "lisen = \"x\"\n").unwrap();
        let msg = load_error(&f);
        assert!(
            msg.starts_with(&format!(
                "invalid configuration in {}: unknown key \"lisen\" (expected one of: listen, data_dir, ",
                f.display()
            )),
            "{msg}"
        );
        // No doubled backticks, no profile name in the key path.
        assert!(!msg.contains('`') && !msg.contains("default."), "{msg}");
    }

    #[test]
    fn nested_typos_and_wrong_types_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "[retention]\ndefault_dayz = 3\n").unwrap();
        assert_eq!(
            load_error(&f),
            format!(
                "invalid configuration in {}: unknown key \"retention.default_dayz\" (expected one of: default_days, purge_interval)",
                f.display()
            )
        );
        std::fs::write(&f, "listen = 5\n").unwrap();
        assert_eq!(
            load_error(&f),
            format!(
                "invalid configuration in {}: listen: expected a string, found 5",
                f.display()
            )
        );
    }

    #[test]
    fn a_relative_file_is_named_by_its_absolute_path() {
        // A path relative to the working directory, as a user types it.
        let dir = tempfile::tempdir_in(".").unwrap();
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let rel = PathBuf::from(&name).join("t.toml");
        std::fs::write(&rel, "lisen = 1\n").unwrap();
        let abs = std::env::current_dir().unwrap().join(&rel);
        let msg = load_error(&rel);
        assert!(
            msg.starts_with(&format!("invalid configuration in {}: ", abs.display())),
            "{msg}"
        );
        let missing = load_error(&PathBuf::from(&name).join("none.toml"));
        assert!(
            missing.contains(&abs.with_file_name("none.toml").display().to_string()),
            "{missing}"
        );
    }
}
