//! Fleet state: what the gateway knows of each pen right now (pure logic).

use serde::{Deserialize, Serialize};

use crate::decode::Reading;
use crate::sessions::Verdict;

/// One pen as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Pen serial.
    pub device_id: String,
    /// Clinic.
    pub clinic_id: String,
    /// Effective class (short name).
    pub device_class: String,
    /// Model.
    pub model: String,
    /// Firmware version.
    pub firmware: String,
    /// From the retained status topic: `Some(true)` online, `Some(false)` offline.
    pub online: Option<bool>,
    /// Gateway time of the last status change, Unix ms.
    pub status_ms: i64,
    /// Gateway time of the last telemetry, Unix ms.
    pub last_seen_ms: i64,
    /// Device time of the newest telemetry, Unix ms.
    pub last_event_ms: i64,
    /// Battery, %.
    pub battery_pct: f64,
    /// Open session ("" when idle).
    pub session_id: String,
    /// Operator of the open session.
    pub operator_id: String,
    /// Cartridge inserted.
    pub cartridge_id: String,
    /// Latest depth, mm.
    pub depth_mm: f64,
    /// Permitted depth at the latest sample, mm.
    pub permitted_mm: f64,
    /// Registered in the policy.
    pub registered: bool,
    /// Claimed class differs from the registered one.
    pub class_mismatch: bool,
    /// Device clock minus gateway clock at the latest telemetry, ms.
    pub clock_offset_ms: i64,
    /// Highest `seq` seen (since the last reset).
    pub last_seq: u64,
    /// Messages that reused a journaled `seq` with different content.
    #[serde(default)]
    pub conflicts: u64,
    /// Times the pen's `seq` went back while its clock went forward (a counter reset).
    #[serde(default)]
    pub seq_resets: u64,
    /// Gateway time of the last conflict or reset, Unix ms (0: never).
    #[serde(default)]
    pub last_anomaly_ms: i64,
}

impl Device {
    /// A pen first heard of on its status topic.
    pub fn new(clinic_id: &str, device_id: &str) -> Self {
        Self {
            device_id: device_id.to_owned(),
            clinic_id: clinic_id.to_owned(),
            device_class: String::new(),
            model: String::new(),
            firmware: String::new(),
            online: None,
            status_ms: 0,
            last_seen_ms: 0,
            last_event_ms: 0,
            battery_pct: 0.0,
            session_id: String::new(),
            operator_id: String::new(),
            cartridge_id: String::new(),
            depth_mm: 0.0,
            permitted_mm: 0.0,
            registered: false,
            class_mismatch: false,
            clock_offset_ms: 0,
            last_seq: 0,
            conflicts: 0,
            seq_resets: 0,
            last_anomaly_ms: 0,
        }
    }

    /// Folds a status message in.
    pub fn set_status(&mut self, online: bool, received_ms: i64) {
        self.online = Some(online);
        self.status_ms = received_ms;
    }

    /// Folds a judged telemetry reading in; `true` when it shows the pen's `seq` was reset.
    /// Only the newest reading sets the live fields, so a replayed offline buffer does not
    /// move the pen back in time; a `seq` that goes back while the device time goes forward
    /// is a reset, and the reading counts as the newest.
    pub fn observe(&mut self, r: &Reading, v: &Verdict, received_ms: i64) -> bool {
        self.last_seen_ms = self.last_seen_ms.max(received_ms);
        self.device_class.clone_from(&v.device_class);
        self.registered = !v.unregistered_device;
        self.class_mismatch = v.class_mismatch;
        let reset = r.seq < self.last_seq && r.timestamp_ms > self.last_event_ms;
        if reset {
            self.seq_resets += 1;
            self.last_anomaly_ms = received_ms;
        } else if r.seq < self.last_seq {
            return false;
        }
        self.last_seq = r.seq;
        self.last_event_ms = r.timestamp_ms;
        self.clock_offset_ms = r.timestamp_ms - received_ms;
        self.model.clone_from(&r.model);
        self.firmware.clone_from(&r.firmware);
        self.battery_pct = r.battery_pct;
        self.session_id.clone_from(&r.session_id);
        self.operator_id.clone_from(&r.operator_id);
        self.cartridge_id.clone_from(&r.cartridge_id);
        self.depth_mm = r.depth_mm;
        self.permitted_mm = v.permitted_mm;
        if r.event == penwatch_proto::v1::Event::SessionEnd {
            self.session_id.clear();
            self.depth_mm = 0.0;
        }
        reset
    }

    /// Counts a message that reused a journaled `seq` with different content.
    pub fn conflicted(&mut self, received_ms: i64) {
        self.conflicts += 1;
        self.last_anomaly_ms = received_ms;
    }
}
