//! `trailkeep alerts test CHANNEL`: sends one test alert through a configured channel, the
//! way the server would, and says what the receiver answered.

use crate::config::Config;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use trailkeep_deliver::alerts::channel::Channel;
use trailkeep_deliver::alerts::rate::Limits;
use trailkeep_deliver::alerts::Attempt;

#[derive(clap::Subcommand)]
pub enum AlertsCmd {
    /// Send a test alert through a channel of the configuration file (one attempt, no
    /// retries); exit 0 only if the receiver took it.
    Test {
        /// The channel's name (`[[alerts.channels]] name`).
        channel: String,
        /// TOML configuration file holding the channel (docs/configuration.md).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn run(cmd: AlertsCmd) -> Result<ExitCode> {
    let AlertsCmd::Test { channel, config } = cmd;
    let cfg = Config::load(config.as_deref())?;
    let checked = cfg.alerts.check()?;
    let public_url = crate::config::public_url(cfg.public_url.as_deref())?;
    let Some(c) = checked.channels.iter().find(|c| c.name == channel) else {
        let names: Vec<&str> = checked.channels.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "no alert channel is named {channel:?} in {}; configured: {}",
            config
                .as_deref()
                .map_or("the configuration".to_string(), |p| p.display().to_string()),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .user_agent(concat!("trailkeep/", env!("CARGO_PKG_VERSION")))
            // A redirect would turn the POST into a GET (an alert lost as "delivered") or
            // send the signed body elsewhere: a 3xx is an answer like any other (refused).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        let ch = Channel::new(c, public_url.as_deref(), http, &Limits::new())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let target = format!("{} channel {} ({})", ch.kind().as_str(), ch.name(), ch.redacted_url());
        match ch.send_test().await {
            Attempt::Delivered { status } => {
                eprintln!("sent a test alert to the {target}: HTTP {status}");
                Ok(ExitCode::SUCCESS)
            }
            Attempt::Retry { error, .. } => {
                eprintln!("error: the {target} did not take the test alert (the server would retry): {error}");
                Ok(ExitCode::from(1))
            }
            Attempt::Refused { error, .. } => {
                eprintln!("error: the {target} refused the test alert (the server would give up after a few tries): {error}");
                Ok(ExitCode::from(1))
            }
        }
    })
}
