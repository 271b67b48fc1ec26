//! A journal whose disk fills up: the gateway stops acknowledging, keeps serving the API, says
//! why, and resumes by itself with nothing lost once the disk has room again.
//!
//! The disk is a real one: a small tmpfs mounted for the test, which needs root (as CI runs);
//! without it the test says so and passes without running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use penwatch_gateway::journal::Reader;
use penwatch_proto::v1 as pb;
use penwatch_proto::v1::pen_watch_client::PenWatchClient;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry};
use penwatch_tests::{Gateway, Mosquitto};
use prost::Message;
use rumqttc::QoS;

/// Messages published while the disk is full.
const MESSAGES: u64 = 3000;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the disk refuses more; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
    path
}

fn telemetry(seq: u64) -> Telemetry {
    Telemetry {
        device_id: "pen-full".into(),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Salon.into(),
        model: "SalonPen".into(),
        firmware: "2.0.0".into(),
        operator_id: "op-1".into(),
        session_id: "s-full".into(),
        cartridge_id: "cart-full".into(),
        cartridge_model: "N12".into(),
        seq,
        timestamp_ms: 1_790_000_000_000 + seq as i64 * 100,
        event: if seq == 1 {
            Event::SessionStart
        } else {
            Event::Sample
        }
        .into(),
        depth_mm: 0.5,
        session_strokes: seq * 10,
        cartridge_strokes: seq * 10,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: pb::Zone::Cheek.into(),
    }
}

fn wait_for(what: &str, gateway: &Gateway, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_holds_acknowledgements_and_ingest_resumes_with_nothing_lost() {
    let Some(disk) = Tmpfs::mount("32m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let broker = Mosquitto::start().expect("broker");
    let mut gateway = Gateway::start(&broker.url(), disk.path(), &[]).expect("gateway");
    let filler = fill(disk.path());

    let client = penwatch_tests::publisher(broker.port(), "pen-full");
    for seq in 1..=MESSAGES {
        client
            .publish(
                "clinics/c01/pens/pen-full/telemetry",
                QoS::AtLeastOnce,
                false,
                telemetry(seq).encode_to_vec(),
            )
            .await
            .expect("publish");
    }

    wait_for("the write alarm", &gateway, || {
        gateway.metric("penwatch_journal_write_failing") == 1.0
    });
    assert!(
        gateway
            .log()
            .contains("the disk holding the journal is full"),
        "the log names the cause:\n{}",
        gateway.log()
    );
    let mut api = PenWatchClient::connect(format!("http://127.0.0.1:{}", gateway.api_port()))
        .await
        .expect("the API still accepts connections");
    // It answers (here it asks for the token this test does not configure).
    let answer = api.list_devices(pb::ListDevicesRequest::default()).await;
    assert_eq!(
        answer.err().map(|s| s.code()),
        Some(tonic::Code::Unauthenticated),
        "the API still answers"
    );
    assert!(
        gateway.metric("penwatch_messages_accepted_total") < MESSAGES as f64,
        "not everything was committed while the disk was full"
    );

    std::fs::remove_file(filler).expect("room again");
    wait_for("every message committed", &gateway, || {
        gateway.metric("penwatch_journal_write_failing") == 0.0
            && gateway.metric("penwatch_messages_accepted_total") >= MESSAGES as f64
    });
    assert!(
        gateway.terminate().expect("terminate"),
        "clean exit; log:\n{}",
        gateway.log()
    );
    let journal = Reader::open(&gateway.journal_path()).expect("journal");
    assert_eq!(journal.counts().expect("counts").samples, MESSAGES);
    assert!(journal.verify().expect("verify").ok());
}
