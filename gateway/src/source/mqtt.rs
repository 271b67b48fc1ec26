//! MQTT source: a persistent session (fixed client id, clean session off) with manual
//! acknowledgements. This task polls the connection, decodes and validates each publish
//! (off the committer's thread, which is the ingest path's one serial stage) and hands it on;
//! the committer hands back the packet ids of what it made durable, and this task writes
//! their PUBACKs.
//!
//! Acknowledgements are written here, in bulk, straight into the connection: rumqttc's own
//! request channel takes one request per poll and flushes the socket for each, which under a
//! burst sent about one acknowledgement per ten messages read, so unacknowledged messages
//! (and the memory holding them) piled up in the gateway.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Packet, PubAck, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{MqttConfig, inflight};
use crate::decode::Limits;
use crate::invalid::Invalid;
use crate::metrics::Metrics;
use crate::pipeline::{Inflight, Receipt};
use crate::policy::PolicyHandle;

/// Capacity of rumqttc's request channel (subscriptions and the disconnect only).
const REQUEST_CAPACITY: usize = 16;

/// Longest wait for the broker's CONNACK (and for each network operation), seconds.
const CONNECT_TIMEOUT_S: u64 = 60;

/// Most acknowledgements written before one flush.
const ACK_BURST: usize = 4096;

/// The connection, its client handle and the current connection generation.
pub struct MqttSource {
    client: AsyncClient,
    eventloop: EventLoop,
    topics: Vec<String>,
    generation: u64,
    reconnect_max: Duration,
    max_payload_bytes: usize,
    policy: PolicyHandle,
    metrics: Arc<Metrics>,
    acks_tx: mpsc::UnboundedSender<(u64, u16)>,
    acks: mpsc::UnboundedReceiver<(u64, u16)>,
}

/// Hands committed messages back to the connection task to be acknowledged.
#[derive(Clone)]
pub struct Acker {
    tx: mpsc::UnboundedSender<(u64, u16)>,
}

impl Acker {
    /// Queues the acknowledgement of a committed message; never waits. The queue holds at
    /// most the broker's in-flight window. A message that arrived on an earlier connection
    /// is not acknowledged (the broker redelivers it; the journal recognises it and it is
    /// acknowledged then).
    pub fn ack(&self, m: &Inflight) {
        if let Receipt::Mqtt {
            generation,
            pkid: Some(pkid),
        } = m.receipt
        {
            let _ = self.tx.send((generation, pkid));
        }
    }
}

impl MqttSource {
    /// Builds the connection from the config (nothing is sent before the first poll);
    /// messages are validated against the policy in force when they arrive.
    pub fn new(
        config: &MqttConfig,
        max_payload_bytes: usize,
        policy: PolicyHandle,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Invalid> {
        let broker = config.broker()?;
        let credentials = config.credentials()?;
        let mut options = broker.mqtt_options(
            &config.client_id,
            credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            Duration::from_secs(config.keep_alive_s),
            config.ca_pem()?,
        );
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(config.max_packet_bytes, 64 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        // A broker resuming a persistent session with millions of queued messages can take
        // far longer than rumqttc's default 5 s to answer CONNECT (mosquitto did, measured):
        // waiting less only restarts the resume.
        let mut network = eventloop.network_options();
        network.set_connection_timeout(CONNECT_TIMEOUT_S);
        eventloop.set_network_options(network);
        let (acks_tx, acks) = mpsc::unbounded_channel();
        Ok(Self {
            client,
            eventloop,
            topics: config.topics.clone(),
            generation: 0,
            acks_tx,
            acks,
            reconnect_max: Duration::from_secs(config.reconnect_max_s),
            max_payload_bytes,
            policy,
            metrics,
        })
    }

    /// The handle the committer acknowledges with.
    pub fn acker(&self) -> Acker {
        Acker {
            tx: self.acks_tx.clone(),
        }
    }

    /// Polls until `stop` is cancelled, sending publishes to `tx`. Then stops handing
    /// messages on (they stay unacknowledged: the broker keeps them), and keeps polling
    /// until `committed` is cancelled so the last acknowledgements go out, then disconnects.
    pub async fn run(
        mut self,
        tx: flume::Sender<Inflight>,
        stop: CancellationToken,
        committed: CancellationToken,
    ) {
        let mut tx = Some(tx);
        let mut backoff = Duration::from_millis(100);
        let mut connected = false;
        let mut acks = Vec::with_capacity(ACK_BURST);
        loop {
            let event = tokio::select! {
                biased;
                () = committed.cancelled() => break,
                () = stop.cancelled(), if tx.is_some() => {
                    tx = None;
                    continue;
                }
                _ = self.acks.recv_many(&mut acks, ACK_BURST) => {
                    self.write_acks(&mut acks).await;
                    continue;
                }
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    self.generation += 1;
                    connected = true;
                    backoff = Duration::from_millis(100);
                    tracing::info!(
                        session_present = ack.session_present,
                        "connected to the broker"
                    );
                    let filters = self
                        .topics
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                    if let Err(e) = self.client.try_subscribe_many(filters) {
                        tracing::error!(error = %e, "could not queue the subscription");
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    let Some(sender) = &tx else { continue };
                    let limits = Limits {
                        max_payload_bytes: self.max_payload_bytes,
                        mechanical_max_mm: self.policy.current().mechanical_max_mm(),
                    };
                    let pkid = (publish.qos != QoS::AtMostOnce).then_some(publish.pkid);
                    let m = inflight(
                        publish.topic,
                        publish.payload,
                        Receipt::Mqtt {
                            generation: self.generation,
                            pkid,
                        },
                        &limits,
                    );
                    if sender.send_async(m).await.is_err() {
                        tx = None;
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        tracing::error!(
                            topics = ?self.topics,
                            "the broker refused a subscription: its ACL must let the gateway's \
                             user read these topics"
                        );
                    } else {
                        // Connected means ready to receive: a pen publishing from now on
                        // reaches this gateway even on a session the broker did not keep.
                        self.metrics.mqtt_connected.set(1);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        tracing::warn!(error = %e, "cut off from the broker; reconnecting");
                        self.metrics.mqtt_disconnects.inc();
                        self.metrics.mqtt_connected.set(0);
                        connected = false;
                    } else if let rumqttc::ConnectionError::ConnectionRefused(code) = e {
                        // Refused, not unreachable: retrying helps only once the broker's
                        // password file or ACL is fixed and reloaded, so say what to check.
                        tracing::error!(
                            reason = ?code,
                            retry_in = ?backoff,
                            "the broker refused the connection: check mqtt.username and \
                             mqtt.password / mqtt.password_file (PENWATCH_MQTT_PASSWORD) against \
                             the broker's password file"
                        );
                    } else {
                        tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach the broker");
                    }
                    tokio::select! {
                        () = committed.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.reconnect_max);
                }
            }
        }
        if connected {
            while let Ok(a) = self.acks.try_recv() {
                acks.push(a);
            }
            self.write_acks(&mut acks).await;
            self.flush_and_disconnect().await;
        }
        self.metrics.mqtt_connected.set(0);
    }

    /// Writes the PUBACKs of `acks` that belong to the current connection, then flushes once.
    /// An acknowledgement that cannot be written is dropped: the broker redelivers the
    /// message, which the journal recognises.
    async fn write_acks(&mut self, acks: &mut Vec<(u64, u16)>) {
        let generation = self.generation;
        let Some(network) = self.eventloop.network.as_mut() else {
            acks.clear();
            return;
        };
        for (g, pkid) in acks.drain(..) {
            if g != generation {
                continue;
            }
            if let Err(e) = network.write(Packet::PubAck(PubAck::new(pkid))).await {
                tracing::debug!(error = %e, "acknowledgement not written; the broker will redeliver");
            }
        }
        if let Err(e) = network.flush().await {
            tracing::debug!(error = %e, "acknowledgements not flushed; the broker will redeliver");
        }
    }

    async fn flush_and_disconnect(&mut self) {
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}
