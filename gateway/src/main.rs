//! `penwatch-gateway`: runs the gateway, checks its configuration, or verifies the journal.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use penwatch_gateway::alerts::{self, deliver::Deliverer};
use penwatch_gateway::config::Config;
use penwatch_gateway::failover;
use penwatch_gateway::journal;
use penwatch_gateway::metrics::{self, Metrics};
use penwatch_gateway::pipeline::{self, Pipeline, Settings};
use penwatch_gateway::policy::{Policy, PolicyHandle};
use penwatch_gateway::reload;
use penwatch_gateway::retention;
use penwatch_gateway::sink::Forwarder;
use penwatch_gateway::source::{MqttSource, StreamSource};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: messages are decoded on the runtime's threads
/// and freed on the committer's, a pattern that left glibc's per-thread arenas holding
/// hundreds of MiB after a burst (measured in the ingest benchmark), and allocation was a
/// seventh of the committer's profile. It is built without transparent huge pages
/// (`no_thp`): asking the kernel for them, its arenas kept about 50 MiB more resident in the
/// 1,000,000-message benchmark with the InfluxDB sink, for no measurable gain in speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// PenWatch gateway: MQTT telemetry in, durable journal, depth policy, sessions, metrics.
///
/// Settings come from the TOML file given with --config (see gateway.example.toml), then
/// environment variables, then flags; later ones win.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, env = "PENWATCH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object per
    /// line, for log shippers).
    #[arg(
        long,
        env = "PENWATCH_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    log_format: LogFormat,
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Settings that flags and environment variables override.
#[derive(clap::Args)]
struct Overrides {
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
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the configuration and the policy file, then exit.
    CheckConfig,
    /// Recompute the journal's audit chain and session digests; exit 1 if broken.
    Verify,
}

impl Overrides {
    fn apply(self, c: &mut Config) {
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
            .block_on(run(config, policy))?),
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
    println!("audit chain: {} entries, head {}", v.entries, v.head);
    if v.digests_unchecked > 0 {
        println!(
            "{} sessions' samples were pruned by retention; their digests were not recomputed",
            v.digests_unchecked
        );
    }
    match v.first_broken {
        None => {
            println!("verified: no entry was altered");
            Ok(())
        }
        Some((seq, why)) => {
            println!(
                "BROKEN at entry {seq}: {}",
                penwatch_proto::text::escape_controls(&why)
            );
            std::process::exit(1);
        }
    }
}

/// Runs the gateway until a shutdown signal: waits for the journal as `[failover]` says,
/// serves it, and, as a standby, hands it back and waits again when its home gateway asks.
/// The metrics endpoint serves throughout, standing by included.
async fn run(config: Config, policy: Policy) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    tracing::info!(
        broker = %match &config.nats {
            Some(n) => format!("stream {} on {}", n.stream, n.urls.join(",")),
            None => config.mqtt.broker.clone(),
        },
        journal = %config.journal.path.display(),
        policy = policy.version(),
        "gateway starting"
    );
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    let endpoint = match config.metrics.addr()? {
        Some(addr) => {
            let stopped = shutdown.clone();
            let server = metrics::serve(
                addr,
                metrics.clone(),
                async move { stopped.cancelled().await },
            );
            Some(tokio::spawn(async move {
                if let Err(e) = server.await {
                    tracing::error!(error = %e, %addr, "metrics endpoint failed");
                }
            }))
        }
        None => None,
    };
    let handle = PolicyHandle::new(policy);
    let role = config.failover.map(|f| f.role);
    let result = async {
        while let Some(lock) =
            failover::acquire(&config.journal.path, role, &metrics, &shutdown).await?
        {
            let outcome = serve(&config, handle.clone(), metrics.clone(), &shutdown, role).await;
            metrics.mqtt_connected.set(0);
            drop(lock);
            if !outcome? {
                break;
            }
            tracing::info!("handed the journal back to its home gateway; standing by");
        }
        anyhow::Ok(())
    }
    .await;
    shutdown.cancel();
    signals.abort();
    if let Some(task) = endpoint
        && tokio::time::timeout(SERVICE_STOP, task).await.is_err()
    {
        tracing::warn!(
            task = "metrics endpoint",
            "did not stop in time; leaving it"
        );
    }
    if result.is_ok() {
        tracing::info!("stopped cleanly");
    }
    result
}

/// Serves the journal this gateway holds until `shutdown`, the committer stopping, or (for a
/// standby) its home gateway asking for it; returns whether it was handed back. Every task it
/// starts is joined before it returns.
async fn serve(
    config: &Config,
    handle: PolicyHandle,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
    role: Option<failover::Role>,
) -> anyhow::Result<bool> {
    let journal =
        journal::Writer::open(&config.journal.path, config.journal.sync).map_err(|e| {
            let path = config.journal.path.display();
            match e.storage_cause() {
                Some(cause) => anyhow::anyhow!("opening the journal {path}: {cause} ({e})"),
                None => anyhow::anyhow!("opening the journal {path}: {e}"),
            }
        })?;
    let checkpoints = CancellationToken::new();
    let checkpointer =
        penwatch_gateway::journal::checkpoint::spawn(&config.journal.path, checkpoints.clone())?;
    let settings = Settings::new(
        &config.ingest,
        &config.sessions,
        config.alerts.as_ref().map(alerts::Rules::new),
    );
    let live = penwatch_gateway::live::channel();
    let pipeline = Pipeline::open(
        journal,
        handle.clone(),
        metrics.clone(),
        settings,
        live.clone(),
    )?;
    let (tx, rx) = flume::bounded(config.ingest.queue_capacity);
    let source = match &config.nats {
        Some(nats) => Source::Stream(StreamSource::new(
            nats,
            pipeline.stream_position(&nats.stream)?,
            config.ingest.max_payload_bytes,
            handle.clone(),
            metrics.clone(),
        )),
        None => Source::Mqtt(Box::new(MqttSource::new(
            &config.mqtt,
            config.ingest.max_payload_bytes,
            handle.clone(),
            metrics.clone(),
        )?)),
    };
    let acker = match &source {
        Source::Mqtt(s) => Some(s.acker()),
        Source::Stream(_) => None,
    };
    let stop = CancellationToken::new();
    // Every task that serves beside the ingest path, joined at shutdown in this order.
    let mut services: Vec<(&str, tokio::task::JoinHandle<()>)> = Vec::new();
    if let Some(api) = penwatch_gateway::api::start(
        &config.api,
        &config.journal.path,
        handle.clone(),
        live.clone(),
        stop.clone(),
    )
    .await?
    {
        services.push(("gRPC API", api));
    }
    let committed = CancellationToken::new();

    let committer_done = committed.clone();
    let committer = std::thread::Builder::new()
        .name("committer".into())
        .spawn(move || {
            let result = pipeline::run(pipeline, rx, |m| {
                if let Some(a) = &acker {
                    a.ack(m);
                }
            });
            committer_done.cancel();
            result
        })?;
    let source_task = match source {
        Source::Mqtt(s) => tokio::spawn(s.run(tx, stop.clone(), committed.clone())),
        Source::Stream(s) => tokio::spawn(s.run(tx, stop.clone())),
    };
    if let Some(path) = config.policy.path.clone() {
        services.push((
            "policy reload",
            tokio::spawn(reload::watch(path, handle, metrics.clone(), stop.clone())),
        ));
    }
    if let Some(c) = &config.influx {
        services.push((
            "InfluxDB sink",
            tokio::spawn(
                Forwarder::new(c, &config.journal.path, metrics.clone())?.run(stop.clone()),
            ),
        ));
    }
    if let Some(c) = &config.alerts {
        services.push((
            "alert delivery",
            tokio::spawn(
                Deliverer::new(
                    c,
                    &config.journal.path,
                    metrics.clone(),
                    config.influx.is_some(),
                )?
                .run(stop.clone()),
            ),
        ));
    }
    services.push((
        "journal housekeeping",
        tokio::spawn(retention::run(
            config.journal.clone(),
            config.influx.is_some(),
            metrics.clone(),
            stop.clone(),
        )),
    ));

    let home_asks = async {
        match role {
            Some(failover::Role::Standby) => {
                failover::handback_requested(&config.journal.path).await;
            }
            _ => std::future::pending().await,
        }
    };
    let handed_back = tokio::select! {
        () = shutdown.cancelled() => {
            tracing::info!("shutting down: committing what was received");
            false
        }
        () = home_asks => {
            tracing::info!("the home gateway asks for its journal: committing what was received");
            true
        }
        () = committed.cancelled() => {
            tracing::error!("the committer stopped");
            false
        }
    };
    stop.cancel();
    let result = tokio::task::spawn_blocking(move || committer.join()).await?;
    committed.cancel();
    source_task.await?;
    for (name, task) in services {
        match tokio::time::timeout(SERVICE_STOP, task).await {
            Ok(joined) => joined?,
            Err(_) => tracing::warn!(task = name, "did not stop in time; leaving it"),
        }
    }
    checkpoints.cancel();
    let _ = tokio::task::spawn_blocking(move || checkpointer.join()).await?;
    match result {
        Ok(Ok(())) => Ok(handed_back),
        Ok(Err(e)) => bail!("journal failed; nothing of the failed batch was acknowledged: {e}"),
        Err(_) => bail!("the committer panicked; nothing it had not stored was acknowledged"),
    }
}

/// Where messages come from.
enum Source {
    Mqtt(Box<MqttSource>),
    Stream(StreamSource),
}

/// How long a service task may take to stop once asked.
const SERVICE_STOP: Duration = Duration::from_secs(5);

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
