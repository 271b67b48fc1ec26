//! The simulator's configuration: command-line flags, usable from code too.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::error::SimError;
use penwatch_proto::broker::{BrokerUrl, DEFAULT_BROKER};

/// A behaviour of the fleet (`--scenario a,b,...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Scenario {
    /// Every session stays within its permitted depth.
    Normal,
    /// Some sessions exceed the permitted depth by 0.25–0.5 mm for a run of samples.
    OverDepth,
    /// Some sessions reuse the previous session's cartridge without inserting a new one.
    CartridgeReuse,
    /// Some sessions are run by an operator the policy does not list.
    UnknownOperator,
    /// Some pens lose the network mid-session, buffer, reconnect and replay.
    OfflineBuffer,
    /// Some telemetry messages are published twice.
    Duplicates,
    /// Some pens' clocks are off by minutes to hours, either way.
    ClockSkew,
    /// Some pens occasionally publish an invalid message.
    Malformed,
}

impl Scenario {
    /// The `--scenario` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::OverDepth => "over-depth",
            Self::CartridgeReuse => "cartridge-reuse",
            Self::UnknownOperator => "unknown-operator",
            Self::OfflineBuffer => "offline-buffer",
            Self::Duplicates => "duplicates",
            Self::ClockSkew => "clock-skew",
            Self::Malformed => "malformed",
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Simulator settings. Derives clap [`Args`]; [`SimConfig::default`] gives the same values
/// as the command line without flags (credentials aside, which only the CLI reads from the
/// environment).
#[derive(Debug, Clone, Args)]
pub struct SimConfig {
    /// Broker URL: mqtt://HOST:PORT or mqtts://HOST:PORT (TLS).
    #[arg(long, default_value = DEFAULT_BROKER, value_name = "URL")]
    pub broker: BrokerUrl,
    /// MQTT user name.
    #[arg(long, env = "PENWATCH_MQTT_USERNAME")]
    pub username: Option<String>,
    /// MQTT password.
    #[arg(long, env = "PENWATCH_MQTT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Per-pen broker credentials, `device_id:password` lines (what `scripts/provision-pen`
    /// prints): each pen connects as itself, with its device id as user name.
    #[arg(long, value_name = "PATH")]
    pub credentials: Option<PathBuf>,
    /// PEM CA certificate for mqtts:// (default: the system's trust store).
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Number of clinics (c01, c02, ...).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=999))]
    pub clinics: u32,
    /// Pens per clinic (pen-c01-01, ...).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=999))]
    pub pens_per_clinic: u32,
    /// Seed of the fleet and of everything the pens do.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scenarios, comma separated or repeated.
    #[arg(
        long = "scenario",
        value_enum,
        value_delimiter = ',',
        default_value = "normal"
    )]
    pub scenarios: Vec<Scenario>,
    /// Publish JSON instead of protobuf.
    #[arg(long)]
    pub json: bool,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Simulated milliseconds between samples during treatment.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub sample_interval_ms: u64,
    /// Device clock at the start, Unix epoch ms (default: now).
    #[arg(long)]
    pub start_ms: Option<i64>,
    /// Shortest session, simulated time.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub session_min: Duration,
    /// Longest session, simulated time.
    #[arg(long, default_value = "8m", value_parser = parse_duration)]
    pub session_max: Duration,
    /// Shortest idle gap before a session, simulated time.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_min: Duration,
    /// Longest idle gap before a session, simulated time.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub idle_max: Duration,
    /// Each pen runs this many sessions, then goes offline (a finite clinic day).
    #[arg(long)]
    pub sessions_per_pen: Option<u32>,
    /// Stop after this much real time.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Load mode: target aggregate samples per second across all pens; sessions stay open.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Load mode only: share this many MQTT connections among the pens (no per-pen last will).
    #[arg(long)]
    pub connections: Option<usize>,
    /// How many connections are being opened at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Write the ground truth as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub summary: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            broker: BrokerUrl::default(),
            username: None,
            password: None,
            credentials: None,
            ca_file: None,
            clinics: 2,
            pens_per_clinic: 3,
            seed: 1,
            scenarios: vec![Scenario::Normal],
            json: false,
            speed: 1.0,
            sample_interval_ms: 1000,
            start_ms: None,
            session_min: Duration::from_secs(180),
            session_max: Duration::from_secs(480),
            idle_min: Duration::from_secs(30),
            idle_max: Duration::from_secs(180),
            sessions_per_pen: None,
            duration: None,
            rate: None,
            connections: None,
            connect_concurrency: 64,
            summary: None,
        }
    }
}

impl SimConfig {
    /// Checks the settings that clap cannot check alone.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return bad(format!(
                "--speed must be a positive number, got {}",
                self.speed
            ));
        }
        if self.sample_interval_ms == 0 {
            return bad("--sample-interval-ms must be at least 1".into());
        }
        if self.clinics == 0 || self.pens_per_clinic == 0 {
            return bad("--clinics and --pens-per-clinic must be at least 1".into());
        }
        if self.session_min.is_zero() || self.session_min > self.session_max {
            return bad("--session-min must be positive and at most --session-max".into());
        }
        if self.idle_min > self.idle_max {
            return bad("--idle-min must be at most --idle-max".into());
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return bad(format!("--rate must be a positive number, got {rate}"));
            }
        }
        if let Some(k) = self.connections {
            if self.rate.is_none() {
                return bad("--connections is for load mode: give --rate too".into());
            }
            if k == 0 {
                return bad("--connections must be at least 1".into());
            }
        }
        if self.credentials.is_some() {
            if self.username.is_some() || self.password.is_some() {
                return bad(
                    "--credentials gives each pen its own identity: drop --username and --password"
                        .into(),
                );
            }
            if self.connections.is_some() {
                return bad(
                    "--connections shares a connection among pens, which then cannot each \
                     authenticate as themselves: drop --connections or --credentials"
                        .into(),
                );
            }
        }
        if self.connect_concurrency == 0 {
            return bad("--connect-concurrency must be at least 1".into());
        }
        if self.sessions_per_pen == Some(0) {
            return bad("--sessions-per-pen must be at least 1".into());
        }
        Ok(())
    }

    /// Whether a scenario is enabled.
    pub fn has(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }

    #[test]
    fn cli_defaults_match_default() {
        let cli = Cli::parse_from(["penwatch-sim"]);
        let d = SimConfig::default();
        assert_eq!(cli.sim.broker, d.broker);
        assert_eq!(cli.sim.scenarios, d.scenarios);
        assert_eq!(
            (
                cli.sim.session_min,
                cli.sim.session_max,
                cli.sim.idle_min,
                cli.sim.idle_max
            ),
            (d.session_min, d.session_max, d.idle_min, d.idle_max)
        );
        assert_eq!(
            (cli.sim.clinics, cli.sim.pens_per_clinic, cli.sim.seed),
            (2, 3, 1)
        );
    }

    #[test]
    fn scenarios_comma_separated_and_repeated() {
        let cli = Cli::parse_from([
            "penwatch-sim",
            "--scenario",
            "normal,over-depth",
            "--scenario=malformed",
            "--duration",
            "30s",
        ]);
        assert_eq!(
            cli.sim.scenarios,
            [Scenario::Normal, Scenario::OverDepth, Scenario::Malformed]
        );
        assert_eq!(cli.sim.duration, Some(Duration::from_secs(30)));
        assert!(Cli::try_parse_from(["penwatch-sim", "--broker", "localhost"]).is_err());
    }

    #[test]
    fn validation_names_the_flag() {
        let c = SimConfig {
            speed: 0.0,
            ..SimConfig::default()
        };
        assert!(
            c.validate()
                .expect_err("invalid")
                .to_string()
                .contains("--speed")
        );
        let c = SimConfig {
            connections: Some(4),
            ..SimConfig::default()
        };
        assert!(
            c.validate()
                .expect_err("invalid")
                .to_string()
                .contains("--rate")
        );
        let c = SimConfig {
            credentials: Some("pens.credentials".into()),
            username: Some("shared".into()),
            ..SimConfig::default()
        };
        assert!(
            c.validate()
                .expect_err("invalid")
                .to_string()
                .contains("drop --username")
        );
    }
}
