//! `penwatch-gateway`: runs the gateway, checks its configuration, or verifies the journal.
//!
//! - [`cli`]: flags, environment variables and subcommands;
//! - [`run`]: waiting for the journal, serving it, and the ordered shutdown.

mod cli;
mod run;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command, LogFormat};
use penwatch_gateway::config::Config;
use penwatch_gateway::journal;
use penwatch_gateway::policy::Policy;

/// mimalloc instead of the system allocator: messages are decoded on the runtime's threads
/// and freed on the committer's, a pattern that left glibc's per-thread arenas holding
/// hundreds of MiB after a burst (measured in the ingest benchmark), and allocation was a
/// seventh of the committer's profile. It is built without transparent huge pages
/// (`no_thp`): asking the kernel for them, its arenas kept about 50 MiB more resident in the
/// 1,000,000-message benchmark with the InfluxDB sink, for no measurable gain in speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status of a start refused for its configuration (`EX_CONFIG` of sysexits.h): the
/// systemd unit does not restart on it, since a restart would not fix it.
const EXIT_CONFIG: u8 = 78;

/// Why the gateway stopped: the error and the exit status it gives.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { code: 1, error }
    }
}

/// Marks an error as the configuration's (exit status [`EXIT_CONFIG`]).
fn config_error(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_CONFIG,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    init_logging(format);
    match start(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            let message = penwatch_proto::report::one_line(error.as_ref());
            if format == LogFormat::Json {
                tracing::error!(error = message, "gateway stopped");
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(code)
        }
    }
}

/// Logs to stderr in `format`, with ANSI colours only when stderr is a terminal.
fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,penwatch_gateway=info".into()),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

fn start(cli: Cli) -> Result<(), Failure> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path).map_err(config_error)?,
        None => Config::default(),
    };
    cli.overrides.apply(&mut config);
    config.validate().map_err(config_error)?;
    let policy = load_policy(&config).map_err(config_error)?;
    let command = cli.command.unwrap_or(Command::Run);
    if !matches!(command, Command::Verify) {
        config.journal.check_location().map_err(config_error)?;
    }
    match command {
        Command::CheckConfig => {
            println!(
                "configuration valid; policy version {} ({} operators, {} devices)",
                policy.version(),
                policy.operators().len(),
                policy.devices().len()
            );
            Ok(())
        }
        Command::Verify => Ok(verify(&config)?),
        Command::Run => Ok(tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(run::run(config, policy))?),
    }
}

fn load_policy(config: &Config) -> anyhow::Result<Policy> {
    Ok(match &config.policy.path {
        Some(path) => Policy::load(path)?,
        None => Policy::defaults(),
    })
}

fn verify(config: &Config) -> anyhow::Result<()> {
    let journal = journal::Reader::open(&config.journal.path)
        .with_context(|| format!("opening {}", config.journal.path.display()))?;
    let v = journal.verify()?;
    print!("{v}");
    if !v.ok() {
        std::process::exit(1);
    }
    Ok(())
}
