//! Conflicts are evidence, not duplicates: a message that reuses a pen's journaled `seq` with
//! different content is kept beside the first, judged, counted and shown; an exact duplicate
//! stays silent; a pen whose `seq` starts over is flagged as reset.

use std::time::{Duration, Instant};

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry};
use penwatch_tests::api::{REVIEWER, Setup, req};
use prost::Message;

const CLINIC: &str = "c01";
const PEN: &str = "pen-home-1";

fn message(seq: u64, session: &str, event: Event, depth_mm: f64, ts_ms: i64) -> Vec<u8> {
    Telemetry {
        device_id: PEN.into(),
        clinic_id: CLINIC.into(),
        device_class: DeviceClass::Home.into(),
        model: "HomePen".into(),
        firmware: "1.0.0".into(),
        operator_id: "op-c01-1".into(),
        session_id: session.into(),
        cartridge_id: format!("cart-{session}"),
        cartridge_model: "N12".into(),
        seq,
        timestamp_ms: ts_ms,
        event: event.into(),
        depth_mm,
        session_strokes: seq * 10,
        cartridge_strokes: seq * 10,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: pb::Zone::Cheek.into(),
    }
    .encode_to_vec()
}

/// A session on `seq`s 2001–2010: start, eight samples at `depth_mm`, end.
fn session(name: &str, depth_mm: f64, base_ms: i64) -> Vec<Vec<u8>> {
    (2001..=2010)
        .map(|seq| {
            let event = match seq {
                2001 => Event::SessionStart,
                2010 => Event::SessionEnd,
                _ => Event::Sample,
            };
            let depth = if event == Event::Sample {
                depth_mm
            } else {
                0.0
            };
            message(
                seq,
                name,
                event,
                depth,
                base_ms + (seq as i64 - 2000) * 1000,
            )
        })
        .collect()
}

fn topic() -> String {
    format!("clinics/{CLINIC}/pens/{PEN}/telemetry")
}

async fn wait_metric(setup: &Setup, name: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.gateway().metric(name) < at_least {
        assert!(
            Instant::now() < deadline,
            "{name} stayed below {at_least}; log:\n{}",
            setup.gateway().log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_over_depth_session_on_forged_seqs_is_kept_judged_and_flagged_as_conflicting() {
    let mut setup = Setup::start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // Someone publishes harmless depth-0 samples on the pen's next seqs first…
    for m in session("forged", 0.0, now - 600_000) {
        setup.publish_raw(&topic(), m).await;
    }
    wait_metric(&setup, "penwatch_messages_accepted_total", 10.0).await;
    // …then the pen's real session arrives on the same seqs: 2.0 mm on a 0.5 mm home pen.
    let real = session("real", 2.0, now - 300_000);
    for m in &real {
        setup.publish_raw(&topic(), m.clone()).await;
    }
    // An exact redelivery of one of them stays a silent duplicate.
    setup.publish_raw(&topic(), real[3].clone()).await;
    wait_metric(&setup, "penwatch_messages_duplicate_total", 1.0).await;
    wait_metric(&setup, "penwatch_messages_accepted_total", 20.0).await;
    let metrics = setup.gateway().metrics();
    assert!(
        metrics.contains("penwatch_messages_conflicting_total{kind=\"reset\"} 10"),
        "a later device time on a reused seq counts as a reset:\n{metrics}"
    );
    assert!(
        setup
            .gateway()
            .log()
            .contains("reused a journaled (device_id, seq)")
    );

    let mut client = setup.client().await;
    let sessions = client
        .list_sessions(req(pb::ListSessionsRequest::default(), REVIEWER))
        .await
        .expect("sessions")
        .into_inner()
        .sessions;
    let real = sessions
        .iter()
        .find(|s| s.session_id == "real")
        .expect("the real session exists");
    assert!(real.exceeded, "and it is judged: {real:?}");
    assert_eq!(real.conflicting_messages, 10, "flagged as conflicting");
    assert_eq!(real.state, "closed");
    let forged = sessions
        .iter()
        .find(|s| s.session_id == "forged")
        .expect("the first version is kept too");
    assert_eq!(forged.conflicting_messages, 0);

    let violations = client
        .list_violations(req(pb::ListViolationsRequest::default(), REVIEWER))
        .await
        .expect("violations")
        .into_inner()
        .violations;
    let violation = violations
        .iter()
        .find(|v| v.session_id == "real")
        .expect("the real session's violation");
    assert_eq!(
        violation.conflicting_messages, 10,
        "the violation is marked as resting on conflicting evidence"
    );

    let devices = client
        .list_devices(req(pb::ListDevicesRequest::default(), REVIEWER))
        .await
        .expect("devices")
        .into_inner()
        .devices;
    let pen = devices.iter().find(|d| d.device_id == PEN).expect("pen");
    assert_eq!(pen.conflicts, 10, "shown on the device");
    assert!(pen.last_anomaly_ms > 0);

    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    let out = std::process::Command::new(&cli)
        .arg("fleet")
        .env("PENWATCH_GATEWAY", &setup.api)
        .env("PENWATCH_TOKEN", REVIEWER)
        .output()
        .expect("penwatch fleet");
    let fleet = String::from_utf8_lossy(&out.stdout);
    assert!(
        fleet.contains("10 conflicting"),
        "the CLI shows it: {fleet}"
    );

    let verified = client
        .verify_audit_chain(req(pb::VerifyRequest::default(), REVIEWER))
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.ok, "{verified:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seq_that_starts_over_with_a_later_clock_is_flagged_as_a_reset() {
    let mut setup = Setup::start().await;
    let base = 1_790_000_000_000;
    for seq in 100..=105 {
        let m = message(seq, "", Event::Sample, 0.0, base + seq as i64 * 1000);
        setup.publish_raw(&topic(), m).await;
    }
    for seq in 1..=3 {
        let m = message(
            seq,
            "",
            Event::Sample,
            0.0,
            base + 1_000_000 + seq as i64 * 1000,
        );
        setup.publish_raw(&topic(), m).await;
    }
    wait_metric(&setup, "penwatch_seq_resets_total", 1.0).await;
    wait_metric(&setup, "penwatch_messages_accepted_total", 9.0).await;
    assert_eq!(setup.gateway().metric("penwatch_seq_resets_total"), 1.0);
    let mut client = setup.client().await;
    let devices = client
        .list_devices(req(pb::ListDevicesRequest::default(), REVIEWER))
        .await
        .expect("devices")
        .into_inner()
        .devices;
    let pen = devices.iter().find(|d| d.device_id == PEN).expect("pen");
    assert_eq!(pen.seq_resets, 1);
    assert_eq!(pen.conflicts, 0, "no seq was reused");
}
