//! The gRPC API over a real socket, against a real broker and gateway: live violations,
//! samples and fleet changes in each caller's scope; and the `penwatch` command line.
//! What each role may call is in the `grpc_roles_*` tests.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::DeviceClass;
use penwatch_tests::api::{
    ADMIN, MAKER, MANAGER, REVIEWER, Setup, csv_sessions, filter, req, sessions_req, set,
};
use penwatch_tests::{Gateway, Mosquitto, free_port};
use tokio_stream::StreamExt;

async fn next_violation(stream: &mut tonic::Streaming<pb::Violation>) -> pb::Violation {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a violation within 10 s")
        .expect("stream open")
        .expect("ok")
}

#[tokio::test(flavor = "multi_thread")]
async fn live_streams_deliver_violations_and_samples_in_scope() {
    let mut setup = Setup::start().await;
    let mut c = setup.client().await;
    let mut reviewer = c
        .watch_violations(req(pb::WatchViolationsRequest::default(), REVIEWER))
        .await
        .expect("watch")
        .into_inner();
    let mut manager = c
        .watch_violations(req(pb::WatchViolationsRequest::default(), MANAGER))
        .await
        .expect("watch")
        .into_inner();
    let mut samples = c
        .stream_samples(req(pb::StreamSamplesRequest::default(), MAKER))
        .await
        .expect("samples")
        .into_inner();
    let mut fleet = c
        .watch_fleet(req(pb::WatchFleetRequest::default(), MAKER))
        .await
        .expect("fleet")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;

    setup
        .session(
            "c02",
            "pen-b",
            DeviceClass::Medical,
            "op-c02-1",
            "s-b9",
            &[0.5, 1.3],
        )
        .await;
    let v = next_violation(&mut reviewer).await;
    assert_eq!(
        (
            v.session_id.as_str(),
            v.clinic_id.as_str(),
            v.operator_id.as_str()
        ),
        ("s-b9", "c02", "op-c02-1")
    );
    let e = v.evidence.expect("evidence");
    assert_eq!(
        (e.peak_depth_mm, e.limit_mm, e.binding_rule.as_str()),
        (1.3, 1.0, "operator")
    );
    assert!(v.committed_ms > 0);

    setup
        .session(
            "c01",
            "pen-a",
            DeviceClass::Salon,
            "op-c01-1",
            "s-a9",
            &[1.1],
        )
        .await;
    let v = next_violation(&mut manager).await;
    assert_eq!(
        (v.session_id.as_str(), v.clinic_id.as_str()),
        ("s-a9", "c01"),
        "c02's violation never reaches c01's manager"
    );

    let sample = tokio::time::timeout(Duration::from_secs(10), samples.next())
        .await
        .expect("a sample")
        .expect("open")
        .expect("ok");
    let t = sample.telemetry.expect("telemetry");
    assert!(
        t.operator_id.starts_with("op-") && t.operator_id != "op-c02-1",
        "{}",
        t.operator_id
    );
    let device = tokio::time::timeout(Duration::from_secs(10), fleet.next())
        .await
        .expect("a fleet change")
        .expect("open")
        .expect("ok");
    assert!(!device.operator_id.contains("c0"), "{}", device.operator_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_shows_an_open_sessions_start_rule_zones_and_the_peak_that_flagged_it() {
    let mut setup = Setup::start().await;
    let mut c = setup.client().await;
    let mut fleet = c
        .watch_fleet(req(pb::WatchFleetRequest::default(), ADMIN))
        .await
        .expect("fleet")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let samples = [
        (0.5, pb::Zone::Cheek),
        (1.3, pb::Zone::Cheek),
        (0.4, pb::Zone::Forehead),
    ];
    setup
        .open_session_in_zones(
            "c02",
            "pen-b",
            DeviceClass::Medical,
            "op-c02-1",
            "s-open",
            &samples,
        )
        .await;
    setup.wait_committed();
    // Open sessions' counters reach the journal at most once a second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let sessions = c
        .list_sessions(req(sessions_req(filter(&["c02"], false)), ADMIN))
        .await
        .expect("sessions")
        .into_inner()
        .sessions;
    let s = sessions
        .iter()
        .find(|s| s.session_id == "s-open")
        .expect("the open session");
    let e = s.evidence.clone().expect("it exceeded");
    let want = |d: &pb::DeviceState| {
        assert_eq!(d.session_id, "s-open");
        assert!(d.exceeded);
        assert_eq!(d.session_started_ms, s.started_ms);
        assert_eq!(
            (d.session_permitted_mm, d.session_rule.as_str()),
            (s.permitted_mm, s.binding_rule.as_str())
        );
        assert_eq!(d.session_zones, s.zones);
        assert_eq!(
            (
                d.session_peak_mm,
                d.session_peak_limit_mm,
                d.session_peak_rule.as_str()
            ),
            (e.peak_depth_mm, e.limit_mm, e.binding_rule.as_str())
        );
        assert!(
            d.depth_mm < d.permitted_mm,
            "the pen is back within its limit"
        );
    };
    let listed = c
        .list_devices(req(pb::ListDevicesRequest::default(), ADMIN))
        .await
        .expect("devices")
        .into_inner()
        .devices;
    want(
        listed
            .iter()
            .find(|d| d.device_id == "pen-b")
            .expect("pen-b"),
    );
    let mut last = None;
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(500), fleet.next()).await
    {
        if d.device_id == "pen-b" {
            last = Some(d);
        }
    }
    want(&last.expect("pen-b on the fleet stream"));
}

#[tokio::test(flavor = "multi_thread")]
async fn penwatch_cli_lists_exceeded_sessions_and_reports_auth_failures() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    let run = |args: &[&str], token: &str| {
        std::process::Command::new(&cli)
            .args(args)
            .env("PENWATCH_GATEWAY", &setup.api)
            .env("PENWATCH_TOKEN", token)
            .output()
            .expect("run penwatch")
    };
    let out = run(
        &["sessions", "--exceeded", "--since", "24h", "--json"],
        REVIEWER,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sessions: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON array");
    let found: BTreeSet<String> = sessions
        .iter()
        .filter_map(|s| s["session_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(found, set(&["s-a2", "s-b1"]));

    let out = run(&["sessions", "--json"], "wrong-token-wrong-token");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["verify"], MANAGER);
    assert_eq!(
        out.status.code(),
        Some(3),
        "permission denied is an auth failure too"
    );
    let out = run(&["verify"], REVIEWER);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["export", "--exceeded", "--format", "csv"], REVIEWER);
    assert!(out.status.success());
    assert_eq!(
        csv_sessions(&String::from_utf8_lossy(&out.stdout)),
        set(&["s-a2", "s-b1"])
    );
    let out = run(&["sessions", "--since", "last tuesday"], REVIEWER);
    assert_eq!(out.status.code(), Some(2));
    let unreachable = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let out = std::process::Command::new(&cli)
        .args(["--gateway", &unreachable, "fleet"])
        .output()
        .expect("run penwatch");
    assert_eq!(out.status.code(), Some(4));
}

#[tokio::test(flavor = "multi_thread")]
async fn penwatch_cli_reaches_a_tls_gateway_and_names_what_fails() {
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             [[api.tokens]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n",
            tls.join("server.pem").display(),
            tls.join("server.key").display()
        ),
    )
    .expect("config");
    let gateway = Gateway::start(
        &broker.url(),
        dir.path(),
        &["--config", &config.display().to_string()],
    )
    .expect("gateway");
    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    let run = |gateway: &str, token: &str, ca_cert: Option<&Path>| {
        let mut cmd = std::process::Command::new(&cli);
        cmd.args(["whoami", "--json"])
            .env("PENWATCH_GATEWAY", gateway)
            .env("PENWATCH_TOKEN", token)
            .env_remove("PENWATCH_CA_CERT");
        if let Some(ca) = ca_cert {
            cmd.env("PENWATCH_CA_CERT", ca);
        }
        let out = cmd.output().expect("run penwatch");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        )
    };
    let https = format!("https://127.0.0.1:{}", gateway.api_port());
    let ca = tls.join("ca.pem");

    let (code, stdout, stderr) = run(&https, ADMIN, Some(&ca));
    assert_eq!(code, Some(0), "{stderr}");
    let who: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(who["role"], "admin", "{stdout}");

    let (code, _, stderr) = run(&https, ADMIN, None);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("TLS handshake"), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(
        stderr.contains("not signed by a CA this client trusts") && stderr.contains("--ca-cert"),
        "says what the error means and what to do: {stderr}"
    );
    assert!(!stderr.contains("is it running"), "{stderr}");

    let (code, _, stderr) = run(&https, "", Some(&ca));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("no token"), "{stderr}");
}
