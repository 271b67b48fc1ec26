//! Running the gateway: waiting for the journal (`[failover]`), serving it with every task
//! it needs, and stopping them in order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
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

/// Runs the gateway until a shutdown signal: waits for the journal as `[failover]` says,
/// serves it, and, as a standby, hands it back and waits again when its home gateway asks.
/// The metrics endpoint serves throughout, standing by included.
pub async fn run(config: Config, policy: Policy) -> anyhow::Result<()> {
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
            let outcome = serve(&config, handle.clone(), metrics.clone(), &shutdown).await;
            metrics.journal_released();
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
        match config.failover.map(|f| f.role) {
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
