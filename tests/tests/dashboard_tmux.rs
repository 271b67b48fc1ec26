//! `penwatch-dashboard` in a real terminal (tmux) against a live broker and gateway: an
//! over-depth session shows flagged on the Fleet and Sessions screens, a violation arriving
//! while it runs raises the banner, a gateway crash shows the connection banner with the data
//! kept and reconnects after the restart, and `q` leaves cleanly.

use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use penwatch_tests::{Gateway, Mosquitto, binary};
use prost::Message;
use rumqttc::{AsyncClient, QoS};

const TOKEN: &str = "dashboard-e2e-token-c01-0123456789";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        Self {
            socket: format!("penwatch-e2e-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("tmux is installed (Debian package `tmux`)")
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "dash"]).stdout)
            .into_owned()
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "dash", keys]);
    }

    /// Polls the pane until `done` holds for its text; panics with the pane at the deadline.
    fn wait_for(&self, what: &str, deadline: Instant, done: impl Fn(&str) -> bool) -> String {
        loop {
            let pane = self.capture();
            if done(&pane) {
                return pane;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; pane:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

struct Pen {
    device: &'static str,
    session: &'static str,
    seq: u64,
}

impl Pen {
    fn message(&mut self, event: Event, depth_mm: f64, strokes: u64) -> Vec<u8> {
        self.seq += 1;
        Telemetry {
            device_id: self.device.into(),
            clinic_id: "c01".into(),
            device_class: DeviceClass::Home.into(),
            model: "HomePen".into(),
            firmware: "1.0.0".into(),
            operator_id: "op-e2e".into(),
            session_id: self.session.into(),
            cartridge_id: format!("cart-{}", self.device),
            cartridge_model: "NANO".into(),
            seq: self.seq,
            timestamp_ms: now_ms(),
            event: event.into(),
            depth_mm,
            session_strokes: strokes,
            cartridge_strokes: strokes,
            speed_hz: 120.0,
            battery_pct: 77.0,
            zone: Zone::Cheek.into(),
        }
        .encode_to_vec()
    }

    /// A session start, then samples at `depths` (left open: a live session).
    async fn treat(&mut self, client: &AsyncClient, depths: &[f64]) {
        let topic = format!("clinics/c01/pens/{}/telemetry", self.device);
        let mut payloads = vec![self.message(Event::SessionStart, 0.0, 0)];
        for (i, d) in depths.iter().enumerate() {
            payloads.push(self.message(Event::Sample, *d, 120 * (i as u64 + 1)));
        }
        for p in payloads {
            client
                .publish(&topic, QoS::AtLeastOnce, false, p)
                .await
                .expect("publish");
        }
    }
}

fn line_with<'a>(pane: &'a str, a: &str, b: &str) -> Option<&'a str> {
    pane.lines().find(|l| l.contains(a) && l.contains(b))
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_shows_an_exceeded_session_flagged() {
    let deadline = Instant::now() + Duration::from_secs(25);
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\n[[api.tokens]]\nname = \"e2e-c01\"\ntoken = \"{TOKEN}\"\n\
             role = \"clinic-manager\"\nclinics = [\"c01\"]\n"
        ),
    )
    .expect("config");
    let mut gateway = Gateway::start(
        &broker.url(),
        dir.path(),
        &["--config", &config.display().to_string()],
    )
    .expect("gateway");

    let client = penwatch_tests::publisher(broker.port(), "dashboard-e2e");

    // Over the home class's 0.5 mm before the dashboard starts: loaded from the lists.
    let mut first = Pen {
        device: "pen-e2e-1",
        session: "s-e2e-1",
        seq: 0,
    };
    first.treat(&client, &[0.4, 0.75, 0.9]).await;

    let dashboard = binary("penwatch-dashboard").expect("dashboard built");
    let tmux = Tmux::new();
    let command = format!(
        "TZ=Europe/Berlin {} --gateway http://127.0.0.1:{} --token {TOKEN}; echo DASHBOARD-EXITED $?; sleep 30",
        dashboard.display(),
        gateway.api_port()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "dash",
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ]);
    assert!(started.status.success(), "tmux: {started:?}");

    // The pen's row: flagged, with the peak that earned the flag against its limit; times in
    // local time, the header naming the zone.
    tmux.wait_for("the over-depth pen flagged on Fleet", deadline, |p| {
        p.contains("● live")
            && p.contains("Europe/Berlin")
            && line_with(p, "pen-e2e-1", "▲ EXCEEDED").is_some_and(|l| l.contains("0.90/0.50"))
    });

    tmux.keys("2");
    // The session's row: flagged, peak vs limit, and the binding rule.
    tmux.wait_for("the exceeded session flagged", deadline, |p| {
        p.contains(" Sessions: ")
            && line_with(p, "s-e2e-1", "▲ EXCEEDED")
                .is_some_and(|l| l.contains("0.90 / 0.50") && l.contains("class"))
    });

    // A violation while the dashboard is open: the live stream raises the banner.
    let mut second = Pen {
        device: "pen-e2e-2",
        session: "s-e2e-2",
        seq: 0,
    };
    second.treat(&client, &[0.3, 0.8]).await;
    tmux.wait_for("the new-violation banner", deadline, |p| {
        p.contains("▲ NEW VIOLATION pen-e2e-2") && line_with(p, "s-e2e-2", "▲ EXCEEDED").is_some()
    });

    gateway.kill();
    // The banner, with the data still on screen.
    tmux.wait_for(
        "the connection-lost banner over the kept data",
        deadline,
        |p| p.contains("CONNECTION LOST") && line_with(p, "s-e2e-1", "▲ EXCEEDED").is_some(),
    );
    gateway.restart().expect("gateway restart");
    tmux.wait_for("the reconnect", deadline, |p| {
        p.contains("● live") && !p.contains("CONNECTION LOST")
    });

    tmux.keys("q");
    let after = tmux.wait_for("a clean exit", deadline, |p| p.contains("DASHBOARD-EXITED"));
    assert!(
        after.contains("DASHBOARD-EXITED 0"),
        "exit status 0:\n{after}"
    );
    assert!(
        !after.contains("PenWatch  1 Fleet"),
        "the alternate screen was left:\n{after}"
    );
}
