//! The load: a fleet of pens in sessions that open and close, published over a few MQTT
//! connections at QoS 1, as fast as the broker acknowledges (burst) or at a fixed rate (paced).
//!
//! Every pen's messages go through one connection in `seq` order. Payloads are the proto3
//! JSON mapping the pens speak (about 350 bytes each), encoded as they are published.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use rumqttc::{AsyncClient, Event as MqttEvent, Incoming, MqttOptions, Outgoing, QoS};

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Messages in all.
    pub messages: u64,
    /// Pens (100 per clinic).
    pub pens: u32,
    /// Samples per session (a session also has its start and end events).
    pub session_samples: u32,
    /// MQTT connections the pens share.
    pub connections: u32,
    /// Messages per second across all connections; `None` publishes as fast as acknowledged.
    pub rate: Option<f64>,
    /// Device time of the first message, Unix ms.
    pub start_ms: i64,
}

impl Plan {
    /// The `n`th message of the whole load (messages go round robin over the pens).
    pub fn message(&self, n: u64) -> (String, Vec<u8>) {
        let pen = (n % u64::from(self.pens)) as u32;
        let k = n / u64::from(self.pens);
        let per_session = u64::from(self.session_samples) + 2;
        let (session, step) = (k / per_session, k % per_session);
        let clinic = format!("c{:02}", pen / 100 + 1);
        let device = format!("pen-{clinic}-{:03}", pen % 100 + 1);
        let event = match step {
            0 => Event::SessionStart,
            s if s == per_session - 1 => Event::SessionEnd,
            _ => Event::Sample,
        };
        let sample = step.saturating_sub(1).min(u64::from(self.session_samples));
        let strokes = sample * 12;
        // One session in ten goes 0.1 mm over the 0.5 mm a class-home pen may reach.
        let over = (session + u64::from(pen)) % 10 == 0 && sample % 50 == 25;
        let depth = match event {
            Event::Sample if over => 0.6,
            Event::Sample => 0.25 + f64::from((sample % 5) as u32) * 0.05,
            _ => 0.0,
        };
        let zones = [Zone::Cheek, Zone::Forehead, Zone::Chin, Zone::Neck];
        let t = Telemetry {
            device_id: device.clone(),
            clinic_id: clinic.clone(),
            device_class: DeviceClass::Home.into(),
            model: "GlowPen Home".into(),
            firmware: "3.2.1".into(),
            operator_id: format!("op-{clinic}-{:02}", pen % 7 + 1),
            session_id: format!("s-{device}-{session:06}"),
            cartridge_id: format!("cart-{device}-{session:06}"),
            cartridge_model: "N12".into(),
            seq: k + 1,
            timestamp_ms: self.start_ms + (k as i64) * 100,
            event: event.into(),
            depth_mm: depth,
            session_strokes: strokes,
            cartridge_strokes: strokes,
            speed_hz: if depth > 0.0 { 120.0 } else { 0.0 },
            battery_pct: 100.0 - (k % 1000) as f64 * 0.05,
            zone: zones[(sample / 50 % 4) as usize].into(),
        };
        (
            penwatch_proto::topic::telemetry(&clinic, &device),
            penwatch_proto::json::encode(&t),
        )
    }

    /// Sessions that close inside the load.
    pub fn sessions_closed(&self) -> u64 {
        let per_pen = self.messages / u64::from(self.pens);
        per_pen / (u64::from(self.session_samples) + 2) * u64::from(self.pens)
    }
}

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
