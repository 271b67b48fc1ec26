//! The gateway's command line: the settings flags and environment variables override, the
//! log format and the subcommands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use penwatch_gateway::config::Config;

/// PenWatch gateway: MQTT telemetry in, durable journal, depth policy, sessions, metrics.
///
/// Settings come from the TOML file given with --config (see gateway.example.toml), then
/// environment variables, then flags; later ones win.
#[derive(Parser)]
#[command(version)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, env = "PENWATCH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object per
    /// line, for log shippers).
    #[arg(
        long,
        env = "PENWATCH_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub overrides: Overrides,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Settings that flags and environment variables override.
#[derive(clap::Args)]
pub struct Overrides {
    /// Broker URL: mqtt://HOST:PORT or mqtts://HOST:PORT.
    #[arg(long, env = "PENWATCH_BROKER", global = true)]
    broker: Option<String>,
    /// MQTT user name.
    #[arg(long, env = "PENWATCH_MQTT_USERNAME", global = true)]
    username: Option<String>,
    /// MQTT password.
    #[arg(
        long,
        env = "PENWATCH_MQTT_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    password: Option<String>,
    /// File holding the MQTT password (its first line).
    #[arg(long, env = "PENWATCH_MQTT_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,
    /// MQTT client id of the persistent session.
    #[arg(long, env = "PENWATCH_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// Topic filter to subscribe to (repeat for several).
    #[arg(
        long = "topic",
        env = "PENWATCH_TOPICS",
        value_delimiter = ',',
        global = true
    )]
    topics: Vec<String>,
    /// Journal database file.
    #[arg(long, env = "PENWATCH_JOURNAL", global = true)]
    journal: Option<PathBuf>,
    /// Policy file.
    #[arg(long, env = "PENWATCH_POLICY", global = true)]
    policy: Option<PathBuf>,
    /// Metrics address (host:port), or "" to disable.
    #[arg(long, env = "PENWATCH_METRICS_LISTEN", global = true)]
    metrics_listen: Option<String>,
    /// gRPC API address (host:port), or "" to disable.
    #[arg(long, env = "PENWATCH_API_LISTEN", global = true)]
    api_listen: Option<String>,
    /// InfluxDB URL (enables the sink with defaults if the file has no [influx] section).
    #[arg(long, env = "PENWATCH_INFLUX_URL", global = true)]
    influx_url: Option<String>,
    /// InfluxDB v2 API token.
    #[arg(
        long,
        env = "PENWATCH_INFLUX_TOKEN",
        global = true,
        hide_env_values = true
    )]
    influx_token: Option<String>,
    /// InfluxDB v1 password.
    #[arg(
        long,
        env = "PENWATCH_INFLUX_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    influx_password: Option<String>,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the configuration and the policy file, then exit.
    CheckConfig,
    /// Recompute the journal's audit chain and session digests; exit 1 if broken.
    Verify,
}

impl Overrides {
    /// Puts the flags and environment variables given over the file's settings.
    pub fn apply(self, c: &mut Config) {
        if let Some(v) = self.broker {
            c.mqtt.broker = v;
        }
        if let Some(v) = self.username {
            c.mqtt.username = Some(v);
        }
        if let Some(v) = self.password {
            c.mqtt.password = Some(v);
            c.mqtt.password_file = None;
        }
        if let Some(v) = self.password_file {
            c.mqtt.password_file = Some(v);
            c.mqtt.password = None;
        }
        if let Some(v) = self.client_id {
            c.mqtt.client_id = v;
        }
        if !self.topics.is_empty() {
            c.mqtt.topics = self.topics;
        }
        if let Some(v) = self.journal {
            c.journal.path = v;
        }
        if let Some(v) = self.policy {
            c.policy.path = Some(v);
        }
        if let Some(v) = self.metrics_listen {
            c.metrics.listen = v;
        }
        if let Some(v) = self.api_listen {
            c.api.listen = v;
        }
        if let Some(v) = self.influx_url {
            c.influx.get_or_insert_with(Default::default).url = v;
        }
        if let Some(influx) = c.influx.as_mut() {
            influx.token = self.influx_token.or(influx.token.take());
            influx.password = self.influx_password.or(influx.password.take());
        }
    }
}
