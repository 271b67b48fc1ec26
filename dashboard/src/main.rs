//! `penwatch-dashboard`: the terminal dashboard over the gateway's gRPC API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use penwatch_dashboard::app::App;
use penwatch_dashboard::client::{self, Settings, now_ms};
use penwatch_dashboard::event_loop;
use penwatch_dashboard::format::Zone;
use penwatch_proto::client::{self as gateways, DEFAULT_GATEWAY};
use serde::Deserialize;
use tokio::sync::mpsc;

/// PenWatch terminal dashboard: the fleet live, flagged sessions, violations, cartridges and
/// operators. Press ? inside for the keys.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Gateway gRPC address, http:// or https:// [default: http://127.0.0.1:50051]; several
    /// separated by commas (or the flag repeated) show a fleet spread over gateways as one.
    #[arg(long, env = "PENWATCH_GATEWAY")]
    gateway: Vec<String>,
    /// API token (as configured in the gateway's [[api.tokens]]).
    #[arg(long, env = "PENWATCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificate to trust for an https:// gateway [default: the web PKI roots].
    #[arg(long, env = "PENWATCH_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// TOML file with `gateway` (an address, or a list), `token`, `ca_cert`, `bell`,
    /// `refresh_secs` and `utc`; flags and environment win.
    #[arg(long, env = "PENWATCH_DASHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Ring the terminal bell when a new violation arrives.
    #[arg(long)]
    bell: bool,
    /// Seconds between list reloads (sessions, violations, cartridges, operators).
    #[arg(long)]
    refresh_secs: Option<u64>,
    /// Show times in UTC instead of the local time zone (`TZ`, else the system's).
    #[arg(long)]
    utc: bool,
}

/// The config file's `gateway`: one address (several separated by commas) or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum GatewaySetting {
    One(String),
    Several(Vec<String>),
}

/// The optional config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    gateway: Option<GatewaySetting>,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
    #[serde(default)]
    bell: bool,
    refresh_secs: Option<u64>,
    #[serde(default)]
    utc: bool,
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", penwatch_proto::report::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => FileConfig::default(),
    };
    let gateway = match (args.gateway, file.gateway) {
        (flags, _) if !flags.is_empty() => flags,
        (_, Some(GatewaySetting::One(g))) => vec![g],
        (_, Some(GatewaySetting::Several(list))) => list,
        (_, None) => vec![DEFAULT_GATEWAY.to_owned()],
    };
    let gateway = gateways::gateway_list(&gateway)?;
    let token = args.token.or(file.token);
    let ca_cert = args.ca_cert.or(file.ca_cert);
    let settings = Settings {
        connectors: gateways::connectors(&gateway, token.as_deref(), ca_cert.as_deref())?,
        refresh: Duration::from_secs(args.refresh_secs.or(file.refresh_secs).unwrap_or(5).max(1)),
    };
    let bell = args.bell || file.bell;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (msg_tx, msg_rx) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    runtime.spawn(client::run(settings, msg_tx, cmd_rx));
    let mut app = App::new(now_ms(), bell);
    if !(args.utc || file.utc) {
        app.zone = Zone::system();
    }
    ratatui::run(|terminal| {
        let events = event_loop::spawn_terminal_events();
        runtime.block_on(event_loop::run(terminal, app, msg_rx, events, cmd_tx))
    })
    .context("terminal error")?;
    runtime.shutdown_timeout(Duration::from_millis(200));
    Ok(())
}
