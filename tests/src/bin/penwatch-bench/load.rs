//! The load ([`Plan`]) published over a few MQTT connections at QoS 1, as fast as the broker
//! acknowledges (burst) or at a fixed rate (paced).
//!
//! Every pen's messages go through one connection in `seq` order, encoded as they are
//! published.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use penwatch_tests::load::Plan;
use rumqttc::{AsyncClient, Event as MqttEvent, Incoming, MqttOptions, Outgoing, QoS};

/// A connected publisher, ready to start.
struct Publisher {
    client: AsyncClient,
    acked: tokio::sync::watch::Receiver<u64>,
}

/// Connects `plan.connections` publishers to the broker on `port` (each waits for its CONNACK).
async fn connect(port: u16, plan: &Plan) -> anyhow::Result<Vec<Publisher>> {
    let mut out = Vec::new();
    for c in 0..plan.connections {
        let mut options = MqttOptions::new(format!("bench-load-{c}"), "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(1000)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        let (tx, acked) = tokio::sync::watch::channel(0u64);
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut n = 0u64;
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Incoming::ConnAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(MqttEvent::Incoming(Incoming::PubAck(_))) => {
                        n += 1;
                        let _ = tx.send(n);
                    }
                    Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("load connection {c}: {e}");
                        return;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .context("load connection: no CONNACK")??;
        out.push(Publisher { client, acked });
    }
    Ok(out)
}

/// When the broker acknowledged the load's last message.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// The broker's last acknowledgement.
    pub last_ack: Instant,
}

/// Publishes the whole plan; `started` receives the instant of the first publish as soon
/// as it is made.
pub async fn publish(
    port: u16,
    plan: Plan,
    started: tokio::sync::oneshot::Sender<Instant>,
) -> anyhow::Result<Published> {
    let publishers = connect(port, &plan).await?;
    let first = Instant::now();
    let _ = started.send(first);
    let conns = u64::from(plan.connections);
    let pens = u64::from(plan.pens);
    let mut tasks = Vec::new();
    for (c, p) in publishers.into_iter().enumerate() {
        let c = c as u64;
        // Connection c carries pens c, c + conns, …: message n belongs to pen n % pens.
        let mine: Vec<u64> = (0..plan.messages)
            .filter(|n| (n % pens) % conns == c)
            .collect();
        let per_conn_rate = plan.rate.map(|r| r / conns as f64);
        tasks.push(tokio::spawn(async move {
            let total = mine.len() as u64;
            for (i, n) in mine.into_iter().enumerate() {
                if let Some(rate) = per_conn_rate {
                    if i % 16 == 0 {
                        let due = first + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
                let (topic, payload) = plan.message(n);
                p.client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await?;
            }
            let mut acked = p.acked;
            acked.wait_for(|n| *n >= total).await?;
            let last = Instant::now();
            let _ = p.client.disconnect().await;
            anyhow::Ok(last)
        }));
    }
    let mut last_ack = first;
    for t in tasks {
        last_ack = last_ack.max(t.await??);
    }
    if last_ack < first {
        bail!("clock went backwards");
    }
    Ok(Published { last_ack })
}
