//! `penwatch`: the command line over the gateway's gRPC API.

mod chains;
mod commands;
mod ctx;
mod feed;
mod output;
mod report;
mod review;
mod verify_export;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use penwatch_proto::client::{self, ClientError, DEFAULT_GATEWAY, Fleet, GatewayError, NO_TOKEN};
use penwatch_proto::text::escape_controls;
use penwatch_proto::v1 as pb;
use tonic::{Code, Status};

use output::Out;

/// PenWatch command line: fleet, sessions, violations, cartridges, operators, quarantine,
/// policy and its history, depth-log export, audit-chain verification and review signatures,
/// from a running gateway's gRPC API.
///
/// Several gateways (--gateway a,b,c), each owning part of the fleet, are read as one: lists
/// merged, each gateway's chain verified, exported and reported on its own; a gateway that
/// does not answer fails the command, naming it.
///
/// Output is a table for people, or JSON with --json (one object per line for --follow).
/// Times are RFC 3339 (2026-11-20T08:00:00Z), a date (2026-11-20, UTC), or a duration
/// back from now (24h, 7d, 30m).
///
/// Exit codes: 0 ok; 1 the chain is broken, the policy is invalid, or the gateway reported
/// an error; 2 usage error; 3 token missing, unknown, or not allowed this; 4 gateway
/// unreachable.
#[derive(Parser)]
#[command(version, name = "penwatch")]
struct Cli {
    /// Gateway API address, http:// or https://; several separated by commas (or the flag
    /// repeated) to read a fleet spread over gateways as one.
    #[arg(long, env = "PENWATCH_GATEWAY", default_value = DEFAULT_GATEWAY, global = true)]
    gateway: Vec<String>,
    /// Bearer token from the gateway's [[api.tokens]].
    #[arg(long, env = "PENWATCH_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// PEM CA certificate to trust for an https:// gateway [default: the web PKI roots].
    #[arg(long, env = "PENWATCH_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Which rows: empty options do not filter.
#[derive(Args, Clone, Default)]
struct FilterArgs {
    /// Clinic id (repeat for several).
    #[arg(long = "clinic")]
    clinics: Vec<String>,
    /// Pen serial (repeat for several).
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Operator staff id (repeat for several).
    #[arg(long = "operator")]
    operators: Vec<String>,
    /// Device class: home, salon or medical (repeat for several).
    #[arg(long = "class")]
    classes: Vec<String>,
    /// Sessions started at or after this time.
    #[arg(long, alias = "from", value_parser = parse_time)]
    since: Option<i64>,
    /// Sessions started before this time.
    #[arg(long, alias = "to", value_parser = parse_time)]
    until: Option<i64>,
    /// Only sessions that exceeded their permitted depth.
    #[arg(long)]
    exceeded: bool,
}

impl FilterArgs {
    fn filter(&self) -> pb::Filter {
        pb::Filter {
            clinic_ids: self.clinics.clone(),
            device_ids: self.devices.clone(),
            operator_ids: self.operators.clone(),
            device_classes: self.classes.clone(),
            from_ms: self.since.unwrap_or_default(),
            to_ms: self.until.unwrap_or_default(),
            only_exceeded: self.exceeded,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Who the token is: name, role and clinics.
    Whoami,
    /// Pens with their live state.
    Fleet {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Sessions, newest first.
    Sessions {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most sessions shown.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One session with its depth timeline.
    Session {
        /// Pen serial.
        device: String,
        /// Session id.
        session: String,
        /// Most timeline points (each keeps its stretch's deepest sample; 0 = all).
        #[arg(long, default_value_t = 60)]
        points: u32,
    },
    /// Violations, newest first; --follow streams new ones as they happen.
    Violations {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most violations listed.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Keep watching: each violation once when raised (NEW) and once when its session
        /// closes (FINAL); Ctrl-C to stop.
        #[arg(long, short)]
        follow: bool,
        /// With --follow, also every update between (the evidence growing).
        #[arg(long, requires = "follow")]
        updates: bool,
    },
    /// Cartridge wear, aggregates by model and firmware, and reuse events.
    Cartridges {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most cartridges and reuse events listed.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Operators with their session and violation counts.
    Operators {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Recently quarantined messages and why, newest first.
    Quarantine {
        /// Most messages listed (at most 200 a page).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Page on: only messages with an id below this (the previous page prints it).
        #[arg(long, default_value_t = 0)]
        before: i64,
    },
    /// Who read what through the API, and who was refused, newest first (reviewer, admin).
    AccessLog {
        /// Most entries listed (at most 1000 a page).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Page on: only entries with an id below this (the previous page prints it).
        #[arg(long, default_value_t = 0)]
        before: i64,
    },
    /// The policy in force; every version ever in force with --history; or check a
    /// candidate file with --validate (exit 1 if invalid).
    Policy {
        /// Policy file to validate without applying it (admin).
        #[arg(long, value_name = "FILE", conflicts_with = "history")]
        validate: Option<PathBuf>,
        /// Every version that was in force, with when it came into and went out of force.
        #[arg(long)]
        history: bool,
        /// With --history, each version's full text (reviewer, admin).
        #[arg(long, requires = "history")]
        text: bool,
    },
    /// Review signatures (21 CFR 11.50): sign a clinic's records for a period, or list them.
    Review {
        #[command(subcommand)]
        command: review::ReviewCommand,
    },
    /// Depth log (sessions, violations, optionally samples) to stdout, checked against the
    /// audit chain; the chain head goes to stderr. Exit 1 if the chain does not verify.
    /// Several gateways need --out-dir: one file per gateway, each with its own chain.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        /// csv or jsonl.
        #[arg(long, default_value = "csv", value_parser = ["csv", "jsonl"])]
        format: String,
        /// Include every sample of the exported sessions.
        #[arg(long)]
        samples: bool,
        /// Write one file per gateway into this directory (HOST_PORT.csv or .jsonl) instead
        /// of stdout.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Recompute the audit chain and session digests; exit 1 if broken. Several gateways:
    /// one line per gateway (address, entries, head, verified or BROKEN).
    Verify,
    /// One clinic's period as a self-contained HTML page to stdout (print it to PDF): its
    /// sessions, violations with their evidence and depth charts, operators, policy versions,
    /// the chain head it was verified against and the review signatures. Exit 1 if the chain
    /// does not verify (the page says so too).
    Report {
        /// Clinic id.
        #[arg(long)]
        clinic: String,
        /// Sessions started at or after this time.
        #[arg(long, value_parser = parse_time)]
        from: i64,
        /// Sessions started before this time.
        #[arg(long, value_parser = parse_time)]
        until: i64,
    },
    /// Check a `export --format jsonl` file offline (no gateway): every record against the
    /// chain entries it carries, up to its head; exit 1 naming each failing line.
    VerifyExport {
        /// The JSONL export.
        file: PathBuf,
    },
}

/// Why the command failed, with its exit code.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Failed(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Auth(_) => 3,
            Failure::Unreachable(_) => 4,
        }
    }

    /// A gateway's failure: as it is when it is the only gateway, naming it among several.
    fn from_gateway(e: GatewayError, several: bool) -> Self {
        if !several {
            return Failure::from(e.status);
        }
        let named = e.to_string();
        match Failure::from(e.status) {
            Failure::Auth(m) if m == NO_TOKEN => Failure::Auth(m),
            Failure::Usage(_) => Failure::Usage(named),
            Failure::Auth(_) => Failure::Auth(named),
            Failure::Unreachable(_) => Failure::Unreachable(named),
            Failure::Failed(_) => Failure::Failed(named),
        }
    }
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        if s.code() == Code::Unauthenticated && s.message() == NO_TOKEN {
            return Failure::Auth(NO_TOKEN.to_owned());
        }
        let msg = format!("gateway: {} ({:?})", s.message(), s.code());
        match s.code() {
            Code::Unauthenticated | Code::PermissionDenied => Failure::Auth(msg),
            Code::Unavailable => Failure::Unreachable(msg),
            Code::InvalidArgument => Failure::Usage(msg),
            _ => Failure::Failed(msg),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        if e.is_usage() {
            Failure::Usage(e.to_string())
        } else {
            Failure::Unreachable(e.to_string())
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Failed(e.to_string())
    }
}

fn parse_time(s: &str) -> Result<i64, String> {
    let to_ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .map_err(|_| format!("{s:?} is before 1970"))
    };
    if let Ok(d) = humantime::parse_duration(s) {
        return to_ms(SystemTime::now() - d);
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    match humantime::parse_rfc3339_weak(&full) {
        Ok(t) => to_ms(t),
        Err(_) => Err(format!(
            "{s:?} is not a time: use RFC 3339 (2026-11-20T08:00:00Z), a date (2026-11-20) \
             or a duration back from now (24h, 7d)"
        )),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // Offline: no connection is made.
    if let Command::VerifyExport { file } = &cli.command {
        return verify_offline(file, cli.json);
    }
    let gateways = client::gateway_list(&cli.gateway)?;
    let connectors = client::connectors(&gateways, cli.token.as_deref(), cli.ca_cert.as_deref())?;
    let ctx = ctx::Ctx {
        fleet: Fleet::connect(&connectors).await?,
        out: Out::new(cli.json),
    };
    commands::run(&ctx, cli.command).await
}

/// `verify-export`: the file checked by itself.
fn verify_offline(file: &std::path::Path, json: bool) -> Result<(), Failure> {
    if verify_export::run(file, json)? {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "{} does not verify",
            escape_controls(&file.display().to_string())
        )))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {f}");
            ExitCode::from(f.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_accept_rfc3339_dates_and_durations() {
        assert_eq!(
            parse_time("2026-11-20T08:00:00Z"),
            Ok(1_795_132_800_000 + 8 * 3_600_000)
        );
        assert_eq!(parse_time("2026-11-20"), Ok(1_795_132_800_000));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let day_ago = parse_time("24h").unwrap_or_default();
        assert!((now - 86_400_000 - day_ago).abs() < 5_000);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        assert_eq!(Failure::from(Status::unauthenticated("x")).code(), 3);
        assert_eq!(Failure::from(Status::permission_denied("x")).code(), 3);
        assert_eq!(Failure::from(Status::unavailable("x")).code(), 4);
        assert_eq!(Failure::from(Status::invalid_argument("x")).code(), 2);
        assert_eq!(Failure::from(Status::internal("x")).code(), 1);
        let no_token = Failure::from(Status::unauthenticated(NO_TOKEN));
        assert_eq!(
            (no_token.code(), no_token.to_string()),
            (3, NO_TOKEN.to_owned())
        );
    }

    #[test]
    fn a_gateways_failure_is_named_among_several_and_as_before_alone() {
        let e = |status: Status| GatewayError {
            gateway: "http://gw-2:50051".into(),
            status,
        };
        let alone = Failure::from_gateway(e(Status::unavailable("refused")), false);
        assert_eq!(
            (alone.code(), alone.to_string()),
            (4, "gateway: refused (Unavailable)".to_owned())
        );
        let named = Failure::from_gateway(e(Status::unavailable("refused")), true);
        assert_eq!(
            (named.code(), named.to_string()),
            (
                4,
                "gateway http://gw-2:50051: refused (Unavailable)".to_owned()
            )
        );
        let denied = Failure::from_gateway(e(Status::permission_denied("scope")), true);
        assert_eq!(denied.code(), 3);
        assert!(denied.to_string().contains("http://gw-2:50051"));
    }

    #[test]
    fn several_gateways_are_given_with_commas_or_repeated() {
        let cli = Cli::try_parse_from([
            "penwatch",
            "--gateway",
            "http://a:1,http://b:2",
            "--gateway",
            "http://c:3",
            "sessions",
        ])
        .expect("parses");
        let list = client::gateway_list(&cli.gateway).expect("addresses");
        assert_eq!(list, ["http://a:1", "http://b:2", "http://c:3"]);
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "penwatch",
            "sessions",
            "--exceeded",
            "--clinic",
            "c01",
            "--since",
            "24h",
            "--json",
        ])
        .expect("parses");
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Sessions { ref filter, .. } if filter.exceeded));
    }
}
