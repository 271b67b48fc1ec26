//! The benchmarks' load: a fleet of pens in sessions that open and close, each message in the
//! proto3 JSON mapping the pens speak (about 400 bytes). `penwatch-bench` publishes it; the
//! committer benchmark decodes it as the gateway does and commits it directly.

use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};

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
    /// The `n`th message of the whole load (messages go round robin over the pens), as
    /// published: its topic and JSON payload.
    pub fn message(&self, n: u64) -> (String, Vec<u8>) {
        let t = self.telemetry(n);
        (
            penwatch_proto::topic::telemetry(&t.clinic_id, &t.device_id),
            penwatch_proto::json::encode(&t),
        )
    }

    /// The `n`th message of the whole load.
    pub fn telemetry(&self, n: u64) -> Telemetry {
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
        Telemetry {
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
        }
    }

    /// Sessions that close inside the load.
    pub fn sessions_closed(&self) -> u64 {
        let per_pen = self.messages / u64::from(self.pens);
        per_pen / (u64::from(self.session_samples) + 2) * u64::from(self.pens)
    }
}
