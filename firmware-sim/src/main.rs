//! `penwatch-sim`: runs a simulated fleet of pens against an MQTT broker and prints the
//! ground truth, or prints the fleet's policy file (`--print-policy`).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use penwatch_sim::fleet::Fleet;
use penwatch_sim::{SimConfig, policy};

/// PenWatch firmware simulator: a fleet of realistic (and faulty) microneedling pens over MQTT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Print the policy TOML of the fleet (--clinics, --pens-per-clinic, --seed) and exit.
    #[arg(long)]
    print_policy: bool,
    #[command(flatten)]
    sim: SimConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", penwatch_proto::report::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.print_policy {
        let fleet = Fleet::generate(cli.sim.seed, cli.sim.clinics, cli.sim.pens_per_clinic);
        print!("{}", policy::policy_toml(&fleet));
        return Ok(());
    }
    let broker = cli.sim.broker.clone();
    let truth = penwatch_sim::run(cli.sim, stop_signal())
        .await
        .with_context(|| format!("simulation against {broker} failed"))?;
    println!("{truth}");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
