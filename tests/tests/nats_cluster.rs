//! The harness's NATS cluster, through its MQTT listeners: QoS 1 messages published on one
//! node reach a persistent session on another, none lost while a third node is killed and
//! restarted; a subject mapping given at the start applies to MQTT publishes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use penwatch_tests::nats::NatsCluster;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// How long a test waits for messages to arrive.
const WAIT: Duration = Duration::from_secs(60);

const TOPIC: &str = "clinics/c01/pens/pen-1/telemetry";

/// Messages published in each phase (before the kill, while the node is down, after its restart).
const PER_PHASE: u32 = 100;

/// An MQTT client with a persistent session on a node's listener, polled in the background
/// (and reconnected after an error, resuming its session), recording what it receives.
struct Session {
    client: AsyncClient,
    subscribed: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<(String, u32)>>>,
}

impl Session {
    fn connect(port: u16, client_id: &str) -> Self {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_clean_session(false);
        options.set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let subscribed = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (sub, rec) = (subscribed.clone(), received.clone());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => sub.store(true, Ordering::SeqCst),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let n = std::str::from_utf8(&p.payload)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .expect("payload is a message number");
                        rec.lock().expect("lock").push((p.topic, n));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self {
            client,
            subscribed,
            received,
        }
    }

    /// Subscribes to `filter` with QoS 1 and waits for the SUBACK.
    async fn subscribe(&self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        wait_until("the SUBACK", || self.subscribed.load(Ordering::SeqCst)).await;
    }

    /// Publishes the message numbers `range` on `topic` with QoS 1.
    async fn publish(&self, topic: &str, range: std::ops::Range<u32>) {
        for n in range {
            self.client
                .publish(topic, QoS::AtLeastOnce, false, n.to_string())
                .await
                .expect("publish");
        }
    }

    /// The distinct message numbers received so far.
    fn numbers(&self) -> BTreeSet<u32> {
        let received = self.received.lock().expect("lock");
        received.iter().map(|(_, n)| *n).collect()
    }

    /// Waits until every message number in `0..count` has been received.
    async fn wait_for_numbers(&self, count: u32) {
        wait_until(&format!("messages 0..{count}"), || {
            self.numbers().range(..count).count() == count as usize
        })
        .await;
    }
}

/// Polls `done` every 50 ms; panics naming `what` after [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_node_cluster_keeps_mqtt_messages_through_a_node_kill_and_restart() {
    let mut cluster = NatsCluster::start(3).expect("NATS cluster");
    let subscriber = Session::connect(cluster.mqtt_port(1), "penwatch-subscriber");
    subscriber.subscribe("clinics/+/pens/+/telemetry").await;
    let pen = Session::connect(cluster.mqtt_port(0), "pen-1");

    pen.publish(TOPIC, 0..PER_PHASE).await;
    subscriber.wait_for_numbers(PER_PHASE).await;

    tokio::task::block_in_place(|| cluster.kill(2));
    pen.publish(TOPIC, PER_PHASE..2 * PER_PHASE).await;
    subscriber.wait_for_numbers(2 * PER_PHASE).await;

    tokio::task::block_in_place(|| cluster.restart(2)).expect("node 2 restarts");
    pen.publish(TOPIC, 2 * PER_PHASE..3 * PER_PHASE).await;
    subscriber.wait_for_numbers(3 * PER_PHASE).await;

    assert_eq!(
        subscriber.numbers(),
        (0..3 * PER_PHASE).collect::<BTreeSet<_>>(),
        "exactly the published messages arrive"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapping_given_at_the_start_moves_a_pens_mqtt_telemetry_to_its_partition() {
    let cluster = NatsCluster::start_with(
        3,
        "mappings = {\n  \"clinics.*.pens.*.telemetry\": \
         \"pw.{{partition(6,2)}}.clinics.{{wildcard(1)}}.pens.{{wildcard(2)}}.telemetry\"\n}",
    )
    .expect("NATS cluster");
    let subscriber = Session::connect(cluster.mqtt_port(1), "penwatch-subscriber");
    subscriber
        .subscribe("pw/+/clinics/+/pens/+/telemetry")
        .await;
    let pen = Session::connect(cluster.mqtt_port(0), "pen-1");

    pen.publish(TOPIC, 0..2).await;
    subscriber.wait_for_numbers(2).await;

    let topics: BTreeSet<String> = subscriber
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|(topic, _)| topic.clone())
        .collect();
    assert_eq!(topics.len(), 1, "one partition per pen: {topics:?}");
    let topic = topics.first().expect("a topic");
    let partition = topic
        .strip_prefix("pw/")
        .and_then(|rest| rest.strip_suffix("/clinics/c01/pens/pen-1/telemetry"))
        .and_then(|p| p.parse::<u32>().ok());
    assert!(
        partition.is_some_and(|p| p < 6),
        "mapped to one of 6 partitions: {topic}"
    );
}
