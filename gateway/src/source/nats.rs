//! JetStream stream source: pens publish over MQTT to a NATS cluster (its MQTT listener on
//! every node), and the gateway reads their messages from a replicated stream instead of
//! subscribing.
//!
//! Why a stream sourced from `$MQTT_msgs`: the server acknowledges a pen's QoS 1 publish once
//! the message is stored in its own MQTT message stream (`$MQTT_msgs`, replicated), and a
//! stream *sourced* from it holds each message there until copied; a stream capturing the
//! subjects directly is fed without that guarantee (with 2 of 3 nodes killed, 998 acknowledged
//! messages were missing from one; see docs/scale-out.md). `$MQTT_msgs` and its
//! `$MQTT.msgs.<subject>` subjects are server internals: pin the server version.
//!
//! Exactly once: the committer stores the highest stream sequence of each batch in the same
//! transaction as the batch ([`crate::pipeline::Receipt::Stream`]), and this source reads
//! from the position after it with an ordered consumer (in stream order, no acknowledgements,
//! recreated by the client after a gap or a lost node). A gateway killed after a commit
//! resumes after what it committed; nothing is applied twice, nothing skipped.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{NatsConfig, inflight};
use crate::decode::Limits;
use crate::metrics::Metrics;
use crate::pipeline::{Inflight, Receipt};
use crate::policy::PolicyHandle;

/// The server's stream of MQTT QoS 1 messages, and the subject prefix of its messages.
const MQTT_MSGS: &str = "$MQTT_msgs";
const MQTT_MSGS_PREFIX: &str = "$MQTT.msgs.";

/// The subject prefix under which the cluster's subject mapping puts a partition's pens:
/// `pw.<partition>.clinics.…` (README "Scaling out").
const PARTITION_PREFIX: &str = "pw";

/// How long each pull request of the ordered consumer waits; the server's idle heartbeat is
/// half of it, and two missed heartbeats make the client recreate the consumer. With the
/// client's default (30 s) a consumer whose node was killed stalled reading for ~35 s
/// (measured in `tests/tests/nats_stream.rs`).
const PULL_EXPIRES: Duration = Duration::from_secs(3);

/// Longest wait between reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Reads the stream after the journal's position and hands each message to the committer.
pub struct StreamSource {
    config: NatsConfig,
    position: u64,
    max_payload_bytes: usize,
    policy: PolicyHandle,
    metrics: Arc<Metrics>,
}

/// Why reading the stream stopped (it is retried).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Lost(String);

impl StreamSource {
    /// A source that resumes after stream sequence `position` (the journal's, 0 for none).
    pub fn new(
        config: &NatsConfig,
        position: u64,
        max_payload_bytes: usize,
        policy: PolicyHandle,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config: config.clone(),
            position,
            max_payload_bytes,
            policy,
            metrics,
        }
    }

    /// Reads until `stop` is cancelled, then stops handing messages on (the committer drains
    /// what it has). A lost connection or stream is retried with a growing wait.
    pub async fn run(mut self, tx: flume::Sender<Inflight>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let started = self.position;
            match self.read(&tx, &stop).await {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.mqtt_connected.set(0);
                    if self.position > started {
                        backoff = Duration::from_millis(100);
                    }
                    tracing::warn!(
                        error = %e,
                        position = self.position,
                        retry_in = ?backoff,
                        "reading the stream failed; retrying"
                    );
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
            }
        }
        self.metrics.mqtt_connected.set(0);
    }

    /// One connection: the stream (created if absent), an ordered consumer after the
    /// position, and its messages until `stop` or an error.
    async fn read(
        &mut self,
        tx: &flume::Sender<Inflight>,
        stop: &CancellationToken,
    ) -> Result<(), Lost> {
        let lost = |what: &str, e: &dyn std::fmt::Display| Lost(format!("{what}: {e}"));
        let mut options = async_nats::ConnectOptions::new().name("penwatch-gateway");
        if let Some((user, password)) = self.credentials()? {
            options = options.user_and_password(user, password);
        }
        let client = options
            .connect(self.config.urls.as_slice())
            .await
            .map_err(|e| lost("connecting to the cluster", &e))?;
        let js = jetstream::new(client);
        self.await_mqtt_stream(&js).await?;
        let mut stream = js
            .get_or_create_stream(self.stream_config())
            .await
            .map_err(|e| lost("creating the stream", &e))?;
        let info = await_source(&mut stream).await?;
        let wanted = pen_subjects(self.config.partition);
        let sourced = info
            .config
            .sources
            .iter()
            .flatten()
            .find(|s| s.name == MQTT_MSGS)
            .and_then(|s| s.filter_subject.clone())
            .unwrap_or_default();
        if sourced != wanted {
            return Err(Lost(format!(
                "the stream {} already exists and takes {sourced:?}, not {wanted:?} as \
                 nats.partition says: give each partition its own nats.stream",
                self.config.stream
            )));
        }
        let first = info.state.first_sequence;
        if info.state.messages > 0 && first > self.position + 1 {
            self.metrics
                .stream_expired
                .inc_by(first - self.position - 1);
            tracing::error!(
                stream = %self.config.stream,
                from = self.position + 1,
                until = first - 1,
                "messages expired from the stream before this gateway read them \
                 (nats.max_age_days is shorter than the gateway was away): they are lost"
            );
            // Counted once: reading goes on from the stream's first message.
            self.position = first - 1;
        }
        let deliver_policy = match self.position {
            0 => consumer::DeliverPolicy::All,
            p => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: p + 1,
            },
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy,
                max_expires: PULL_EXPIRES,
                ..Default::default()
            })
            .await
            .map_err(|e| lost("creating the consumer", &e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| lost("reading the stream", &e))?;
        self.metrics.mqtt_connected.set(1);
        tracing::info!(
            stream = %self.config.stream,
            subjects = %wanted,
            after = self.position,
            "reading the stream"
        );
        let name: Arc<str> = self.config.stream.as_str().into();
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let m = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(lost("reading the stream", &e)),
                None => return Err(Lost("the stream's consumer ended".into())),
            };
            let seq = m
                .info()
                .map_err(|e| lost("a message without stream metadata", &e))?
                .stream_sequence;
            if seq <= self.position {
                continue;
            }
            let limits = Limits {
                max_payload_bytes: self.max_payload_bytes,
                mechanical_max_mm: self.policy.current().mechanical_max_mm(),
            };
            let receipt = Receipt::Stream {
                stream: name.clone(),
                seq,
            };
            let topic = mqtt_topic(&m.message.subject, self.config.partition);
            let payload = m.message.payload.clone();
            if tx
                .send_async(inflight(topic, payload, receipt, &limits))
                .await
                .is_err()
            {
                return Ok(());
            }
            self.position = seq;
        }
    }

    /// The gateway's user and password on the cluster (the file is read at each connection,
    /// so a changed password is taken up on the next one).
    fn credentials(&self) -> Result<Option<(String, String)>, Lost> {
        self.config
            .credentials()
            .map_err(|e| Lost(format!("{}: {}", e.key, e.problem)))
    }

    /// Waits until the server's MQTT message stream exists, having it made (by one MQTT
    /// connection to `nats.mqtt`) on a new cluster: a source on a missing stream is not
    /// retried promptly, and pens' messages are kept only once the gateway's stream sources
    /// them.
    async fn await_mqtt_stream(&self, js: &jetstream::Context) -> Result<(), Lost> {
        if js.get_stream(MQTT_MSGS).await.is_ok() {
            return Ok(());
        }
        let Some(url) = &self.config.mqtt else {
            return Err(Lost(
                "the cluster has no MQTT message stream yet: the server makes it when the                  first MQTT client connects (set nats.mqtt to a node's MQTT listener to have                  the gateway connect once)"
                    .into(),
            ));
        };
        let broker = penwatch_proto::broker::BrokerUrl::parse(url)
            .map_err(|e| Lost(format!("nats.mqtt: {e}")))?;
        // The cluster's users are the same for NATS and MQTT.
        let credentials = self.credentials()?;
        let options = broker.mqtt_options(
            "penwatch-gateway-setup",
            credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            Duration::from_secs(30),
            None,
        );
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 4);
        let connected = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Lost(format!("connecting to nats.mqtt {url}: {e}"))),
            Err(_) => return Err(Lost(format!("connecting to nats.mqtt {url}: no answer"))),
        }
        for _ in 0..50 {
            if js.get_stream(MQTT_MSGS).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Lost(
            "the cluster made no MQTT message stream after an MQTT connection".into(),
        ))
    }

    /// The gateway's stream: pens' messages sourced from the server's MQTT message stream.
    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.config.stream.clone(),
            description: Some("PenWatch: pens' MQTT telemetry and status".into()),
            sources: Some(vec![stream::Source {
                name: MQTT_MSGS.into(),
                filter_subject: Some(pen_subjects(self.config.partition)),
                ..Default::default()
            }]),
            num_replicas: self.config.replicas,
            max_age: self.config.max_age(),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            allow_direct: true,
            ..Default::default()
        }
    }
}

/// Waits until the stream's source on the server's MQTT message stream is active: that
/// stream keeps a message only for the consumers it has when the message arrives, so a pen's
/// message published before the source's consumer exists is not kept (measured: the first
/// 12–90 messages of each pen when pens started with the gateway). Only then is the gateway
/// ready.
async fn await_source(stream: &mut stream::Stream) -> Result<stream::Info, Lost> {
    for _ in 0..300 {
        let info = stream
            .info()
            .await
            .map_err(|e| Lost(format!("reading the stream's state: {e}")))?;
        if info
            .sources
            .iter()
            .any(|s| s.name == MQTT_MSGS && s.active.is_some())
        {
            return Ok(info.clone());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Lost(
        "the stream's source on the server's MQTT message stream did not become active in 30 s"
            .into(),
    ))
}

/// What the gateway's stream takes from the server's MQTT message stream: pens' telemetry and
/// status, all of them or those the cluster's mapping put in `partition`.
fn pen_subjects(partition: Option<u32>) -> String {
    match partition {
        None => format!("{MQTT_MSGS_PREFIX}clinics.>"),
        Some(p) => format!("{MQTT_MSGS_PREFIX}{PARTITION_PREFIX}.{p}.clinics.>"),
    }
}

/// The MQTT topic a pen published to, from its subject in the server's MQTT message stream
/// (less the partition's prefix the cluster's mapping put before it): NATS writes an MQTT `/`
/// as `.` and an MQTT `.` as `//`.
fn mqtt_topic(subject: &str, partition: Option<u32>) -> String {
    let subject = subject.strip_prefix(MQTT_MSGS_PREFIX).unwrap_or(subject);
    let subject = match partition {
        Some(p) => subject
            .strip_prefix(&format!("{PARTITION_PREFIX}.{p}."))
            .unwrap_or(subject),
        None => subject,
    };
    subject
        .split("//")
        .map(|part| part.replace('.', "/"))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_in_the_mqtt_message_stream_gives_back_the_pens_topic() {
        assert_eq!(
            mqtt_topic("$MQTT.msgs.clinics.c01.pens.pen-1.telemetry", None),
            "clinics/c01/pens/pen-1/telemetry"
        );
        assert_eq!(
            mqtt_topic("$MQTT.msgs.clinics.c01.pens.pen//7.status", None),
            "clinics/c01/pens/pen.7/status"
        );
        assert_eq!(
            mqtt_topic("$MQTT.msgs.pw.4.clinics.c01.pens.pen-1.telemetry", Some(4)),
            "clinics/c01/pens/pen-1/telemetry"
        );
        assert_eq!(pen_subjects(Some(4)), "$MQTT.msgs.pw.4.clinics.>");
    }
}
