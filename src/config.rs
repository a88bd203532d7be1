//! Configuration: the TOML file of docs/configuration.md, overridden by `TRAILKEEP_*` environment variables
//! (`__` between levels), overridden by flags.
//!
//! The `sinks` section, read by a later feature, is accepted now so a full configuration file
//! loads; unknown top-level keys are refused so that typos surface at start instead of being
//! silently ignored.

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
    /// How long to wait for PostgreSQL (read only with `postgres`).
    #[serde(default)]
    pub postgres_timeouts: PostgresTimeouts,
    #[serde(default)]
    pub viewer: Viewer,
    /// The server's address as users reach it (`https://audit.example.com`), for links in
    /// alerts; unset: alerts carry no link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(default)]
    pub alerts: Alerts,
    #[serde(default)]
    pub approvals: Approvals,
    #[serde(default)]
    pub impersonation: Impersonation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinks: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub default_days: u32,
    pub purge_interval: String,
}

/// Per-key request rate limit (0 turns it off) and bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub requests_per_second: f64,
    pub burst: f64,
    /// Longest lifetime of an auditor key (`90d`).
    pub max_auditor_ttl: String,
    /// Failed authentications allowed per client address (per second; 0 = off) and burst.
    pub failed_auth_per_second: f64,
    pub failed_auth_burst: f64,
    /// Time to receive a request head once its first byte arrived.
    pub header_read_timeout: String,
    /// Time to receive a request body once its head arrived.
    pub body_read_timeout: String,
    /// Time an open connection may stay without a request in progress and without traffic.
    pub idle_timeout: String,
    /// Most connections open at once; more wait until one closes.
    pub max_connections: usize,
    /// Most exports and evidence bundles in progress at once; more get 429.
    pub max_exports: usize,
}

impl Limits {
    /// A duration setting of `[limits]`, checked (more than zero).
    pub fn duration(&self, key: &str, value: &str) -> Result<std::time::Duration> {
        trailkeep_store::keys::parse_duration_secs(value)
            .map(std::time::Duration::from_secs)
            .map_err(|e| anyhow::anyhow!("invalid configuration: limits.{key}: {e}"))
    }

    /// `max_auditor_ttl` in seconds, checked: more than zero, at most the 10-year bound of
    /// every key.
    pub fn max_auditor_ttl_secs(&self) -> Result<u64> {
        use trailkeep_store::keys::{describe_secs, parse_duration_secs, MAX_KEY_TTL_SECS};
        let secs = parse_duration_secs(&self.max_auditor_ttl)
            .map_err(|e| anyhow::anyhow!("invalid configuration: limits.max_auditor_ttl: {e}"))?;
        if secs > MAX_KEY_TTL_SECS {
            anyhow::bail!(
                "invalid configuration: limits.max_auditor_ttl: {:?} is longer than the longest lifetime of any key, {}",
                self.max_auditor_ttl,
                describe_secs(MAX_KEY_TTL_SECS)
            );
        }
        Ok(secs)
    }
}

/// Bounds on every wait for PostgreSQL, as durations (`500ms`, `5s`, `1m`). A request that hits
/// one gets 503 with `Retry-After` instead of hanging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresTimeouts {
    pub connect_timeout: String,
    pub statement_timeout: String,
    pub lock_timeout: String,
    pub pool_wait: String,
}

impl Default for PostgresTimeouts {
    fn default() -> Self {
        PostgresTimeouts {
            connect_timeout: "5s".into(),
            statement_timeout: "10s".into(),
            lock_timeout: "5s".into(),
            pool_wait: "5s".into(),
        }
    }
}

/// `[approvals]`: dual approval (docs/configuration.md#dual-approval).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Approvals {
    /// Event types (exact, or a prefix such as `killswitch.*`) that need dual approval.
    pub required_for: Vec<String>,
    /// Distinct approver keys needed (at least 1).
    pub approvers: u32,
    /// How long a request stays open, and an approval usable (`24h`).
    pub ttl: String,
}

impl Default for Approvals {
    fn default() -> Self {
        Approvals {
            required_for: Vec::new(),
            approvers: 2,
            ttl: "24h".into(),
        }
    }
}

impl Approvals {
    /// The checked configuration; errors name the setting.
    pub fn config(&self) -> Result<trailkeep_server::ApprovalConfig> {
        let secs = trailkeep_store::keys::parse_duration_secs(&self.ttl)
            .map_err(|e| anyhow::anyhow!("invalid configuration: approvals.ttl: {e}"))?;
        trailkeep_server::ApprovalConfig::new(
            &self.required_for,
            self.approvers,
            std::time::Duration::from_secs(secs),
        )
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }
}

/// `[alerts]`: channels and rules (docs/alerts.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// `[[alerts.channels]]`: where alerts go.
    pub channels: Vec<trailkeep_deliver::alerts::channel::ChannelConfig>,
    /// `[[alerts.rules]]`: which events alert, through which channels; none: every `high`
    /// event of the catalogue through every channel.
    pub rules: Vec<trailkeep_control::rules::RuleConfig>,
    /// How long a delivery that keeps failing (5xx, 429, timeouts) is retried before it is
    /// given up as dead (`24h`).
    pub give_up_after: String,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            channels: Vec::new(),
            rules: Vec::new(),
            give_up_after: "24h".into(),
        }
    }
}

/// `[alerts]` checked: what the engine starts with.
pub struct CheckedAlerts {
    pub channels: Vec<trailkeep_deliver::alerts::channel::ChannelConfig>,
    pub rules: trailkeep_control::rules::RuleSet,
    /// No rule was configured: the default rule is in force.
    pub default_rules: bool,
    pub give_up_after: std::time::Duration,
}

impl Alerts {
    /// Checks channels and rules; errors name the setting (a bad `where` its position).
    pub fn check(&self) -> Result<CheckedAlerts> {
        let bad = |m: String| anyhow::anyhow!("invalid configuration: {m}");
        let mut names: Vec<String> = Vec::with_capacity(self.channels.len());
        for c in &self.channels {
            c.check().map_err(bad)?;
            if names.contains(&c.name) {
                return Err(bad(format!(
                    "alerts.channels: two channels are named {:?}; names must be unique",
                    c.name
                )));
            }
            names.push(c.name.clone());
        }
        for r in &self.rules {
            for ch in &r.channels {
                if !names.contains(ch) {
                    return Err(bad(format!(
                        "alerts.rules[{}].channels: no channel is named {ch:?} (configured: {})",
                        r.name,
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    )));
                }
            }
        }
        let rules = trailkeep_control::rules::RuleSet::compile(self.rules.clone(), &names)
            .map_err(|e| bad(format!("alerts.rules: {e}")))?;
        let secs = trailkeep_store::keys::parse_duration_secs(&self.give_up_after)
            .map_err(|e| bad(format!("alerts.give_up_after: {e}")))?;
        if secs == 0 {
            return Err(bad("alerts.give_up_after must be longer than 0s".into()));
        }
        Ok(CheckedAlerts {
            channels: self.channels.clone(),
            rules,
            default_rules: self.rules.is_empty(),
            give_up_after: std::time::Duration::from_secs(secs),
        })
    }
}

/// `[impersonation]`: the session limit (docs/alerts.md#overdue-impersonation-sessions).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Impersonation {
    /// A session open longer than this raises one alert (`8h`).
    pub max_session: String,
}

impl Default for Impersonation {
    fn default() -> Self {
        Impersonation {
            max_session: "8h".into(),
        }
    }
}

impl Impersonation {
    pub fn max_session(&self) -> Result<std::time::Duration> {
        let secs = trailkeep_store::keys::parse_duration_secs(&self.max_session).map_err(|e| {
            anyhow::anyhow!("invalid configuration: impersonation.max_session: {e}")
        })?;
        if secs == 0 {
            anyhow::bail!(
                "invalid configuration: impersonation.max_session must be longer than 0s"
            );
        }
        Ok(std::time::Duration::from_secs(secs))
    }
}

/// `public_url` checked: an http(s) URL without a query, trailing slash removed.
pub fn public_url(url: Option<&str>) -> Result<Option<String>> {
    let Some(u) = url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let ok = (u.starts_with("https://") || u.starts_with("http://"))
        && !u.contains('?')
        && !u.contains('#')
        && u.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
    if !ok {
        anyhow::bail!(
            "invalid configuration: public_url = {u:?}: expected an http or https URL without a query, e.g. \"https://audit.example.com\""
        );
    }
    Ok(Some(u.trim_end_matches('/').to_string()))
}

/// `[viewer]`: viewer tokens and the embeddable page (docs/configuration.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Viewer {
    /// Longest lifetime a viewer token may be minted with (`15m`, `1h`, `1d`…).
    pub max_ttl: String,
    /// Origins allowed to embed `/viewer` in a frame; empty: none.
    pub frame_ancestors: Vec<String>,
    /// The token key file (64 hex digits); default `<data_dir>/viewer-token-key`, created on
    /// first start. Replacing it (and restarting) revokes every viewer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_key_file: Option<PathBuf>,
    /// The token key itself (64 hex digits), e.g. from `TRAILKEEP_VIEWER__TOKEN_KEY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_key: Option<String>,
}

impl Default for Viewer {
    fn default() -> Self {
        Viewer {
            max_ttl: "1h".into(),
            frame_ancestors: Vec::new(),
            token_key_file: None,
            token_key: None,
        }
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h` (a whole number and a unit) into a non-zero duration.
fn parse_timeout(key: &str, s: &str) -> Result<std::time::Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("postgres_timeouts.{key} = {s:?} is not a duration: write a whole number greater than zero and a unit, e.g. \"5s\" or \"500ms\"")
    })?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => anyhow::bail!(
            "postgres_timeouts.{key} = {s:?} has an unknown unit {other:?}: use ms, s, m or h, e.g. \"5s\""
        ),
    }
    .with_context(|| format!("postgres_timeouts.{key} = {s:?} is too long"))?;
    Ok(std::time::Duration::from_millis(ms))
}

impl PostgresTimeouts {
    /// The PostgreSQL store's options with these timeouts (the rest at their defaults).
    pub fn options(&self) -> Result<trailkeep_store::postgres::PostgresOptions> {
        Ok(trailkeep_store::postgres::PostgresOptions {
            connect_timeout: parse_timeout("connect_timeout", &self.connect_timeout)?,
            statement_timeout: parse_timeout("statement_timeout", &self.statement_timeout)?,
            lock_timeout: parse_timeout("lock_timeout", &self.lock_timeout)?,
            pool_wait: parse_timeout("pool_wait", &self.pool_wait)?,
            ..Default::default()
        })
    }
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
                requests_per_second: trailkeep_server::DEFAULT_RATE_LIMIT_RPS,
                burst: trailkeep_server::DEFAULT_RATE_LIMIT_BURST,
                max_auditor_ttl: "90d".into(),
                failed_auth_per_second: trailkeep_server::DEFAULT_FAILED_AUTH_RPS,
                failed_auth_burst: trailkeep_server::DEFAULT_FAILED_AUTH_BURST,
                header_read_timeout: "30s".into(),
                body_read_timeout: "60s".into(),
                idle_timeout: "60s".into(),
                max_connections: 4096,
                max_exports: 4,
            },
            postgres_timeouts: PostgresTimeouts::default(),
            viewer: Viewer::default(),
            public_url: None,
            alerts: Alerts::default(),
            approvals: Approvals::default(),
            impersonation: Impersonation::default(),
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
    "viewer",
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
        let a = c.approvals.config().unwrap();
        assert!(a.requires("tenant.disable") && !a.requires("tenant.enable"));
        assert_eq!((a.approvers, a.ttl.as_secs()), (2, 24 * 3600));
    }

    #[test]
    fn approvals_section_defaults_and_refuses_bad_values_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "").unwrap();
        let a = Config::load(Some(&f)).unwrap().approvals.config().unwrap();
        assert_eq!((a.approvers, a.ttl.as_secs()), (2, 24 * 3600));
        assert!(a.required_for.is_empty());
        std::fs::write(
            &f,
            "[approvals]\nrequired_for = [\"killswitch.*\"]\napprovers = 1\nttl = \"15m\"\n",
        )
        .unwrap();
        let a = Config::load(Some(&f)).unwrap().approvals.config().unwrap();
        assert!(a.requires("killswitch.embed.disable"));
        assert_eq!((a.approvers, a.ttl.as_secs()), (1, 900));
        for (body, key) in [
            ("approvers = 0", "approvals.approvers"),
            ("ttl = \"soon\"", "approvals.ttl"),
            ("ttl = \"0s\"", "approvals.ttl"),
            ("required_for = [\"Not A Type\"]", "approvals.required_for"),
        ] {
            std::fs::write(&f, format!("[approvals]\n{body}\n")).unwrap();
            let e = match Config::load(Some(&f)).and_then(|c| c.approvals.config()) {
                Ok(_) => panic!("{body} accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(e.contains(key), "{body}: {e}");
        }
        for body in ["approvers = -1", "approverz = 2"] {
            std::fs::write(&f, format!("[approvals]\n{body}\n")).unwrap();
            assert!(load_error(&f).contains("approvals.approver"), "{body}");
        }
    }

    #[test]
    fn viewer_section_loads_with_defaults_and_refuses_typos() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "").unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.viewer.max_ttl, "1h");
        assert!(c.viewer.frame_ancestors.is_empty());
        std::fs::write(
            &f,
            "[viewer]\nmax_ttl = \"2h\"\nframe_ancestors = [\"https://app.example\"]\ntoken_key_file = \"/k\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.viewer.max_ttl, "2h");
        assert_eq!(c.viewer.frame_ancestors, ["https://app.example"]);
        assert_eq!(c.viewer.token_key_file, Some(PathBuf::from("/k")));
        std::fs::write(&f, "[viewer]\nmax_tll = \"2h\"\n").unwrap();
        assert!(load_error(&f).contains("unknown key \"viewer.max_tll\""));
    }

    fn load_error(file: &Path) -> String {
        match Config::load(Some(file)) {
            Ok(_) => panic!("{} loaded", file.display()),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn postgres_timeouts_load_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(
            &f,
            "[postgres_timeouts]\nconnect_timeout = \"2s\"\nlock_timeout = \"750ms\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        let o = c.postgres_timeouts.options().unwrap();
        assert_eq!(o.connect_timeout, std::time::Duration::from_secs(2));
        assert_eq!(o.lock_timeout, std::time::Duration::from_millis(750));
        // Unset keys keep their defaults.
        assert_eq!(o.statement_timeout, std::time::Duration::from_secs(10));
        assert_eq!(o.pool_wait, std::time::Duration::from_secs(5));
        let d = Config::default().postgres_timeouts.options().unwrap();
        let s = trailkeep_store::postgres::PostgresOptions::default();
        assert_eq!(
            (
                d.connect_timeout,
                d.statement_timeout,
                d.lock_timeout,
                d.pool_wait
            ),
            (
                s.connect_timeout,
                s.statement_timeout,
                s.lock_timeout,
                s.pool_wait
            )
        );
        for bad in ["5", "0s", "5 sec", "s", "-1s", "1.5s"] {
            let t = PostgresTimeouts {
                pool_wait: bad.into(),
                ..Default::default()
            };
            let e = t.options().unwrap_err().to_string();
            assert!(e.contains("postgres_timeouts.pool_wait"), "{bad}: {e}");
        }
        std::fs::write(&f, "[postgres_timeouts]\nconect_timeout = \"2s\"\n").unwrap();
        assert!(Config::load(Some(&f)).is_err());
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
