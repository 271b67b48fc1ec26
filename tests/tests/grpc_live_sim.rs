//! The simulator's `over-depth` scenario through the real broker and gateway: the violation
//! stream delivers every violation the simulator caused, and the exported CSV lists exactly
//! the sessions it drove over a limit.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::pen_watch_client::PenWatchClient;
use penwatch_sim::fleet::Fleet;
use penwatch_sim::{Scenario, SimConfig};
use penwatch_tests::{Gateway, Mosquitto, fleet_pens};
use tokio_stream::StreamExt;
use tonic::Request;

const REVIEWER: &str = "token-reviewer-0123456789";

fn req<T>(message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {REVIEWER}").parse().expect("ascii"),
    );
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn violation_stream_and_export_match_the_simulator() {
    let seed = 31;
    let broker = Mosquitto::start_authenticated(fleet_pens(seed, 2, 3)).expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        penwatch_sim::policy::policy_toml(&Fleet::generate(seed, 2, 3)),
    )
    .expect("policy");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[api]\n[[api.tokens]]\nname = \"reviewer\"\ntoken = \"{REVIEWER}\"\nrole = \"reviewer\"\n"),
    )
    .expect("config");
    let gateway = Gateway::start_on(
        &broker,
        dir.path(),
        &[
            "--config",
            &config.display().to_string(),
            "--policy",
            &policy.display().to_string(),
        ],
    )
    .expect("gateway");
    let mut client = PenWatchClient::connect(format!("http://127.0.0.1:{}", gateway.api_port()))
        .await
        .expect("connect");
    let mut violations = client
        .watch_violations(req(pb::WatchViolationsRequest { filter: None }))
        .await
        .expect("watch")
        .into_inner();

    let truth = penwatch_sim::run(
        SimConfig {
            broker: broker.url().parse().expect("url"),
            credentials: broker.credentials_file(),
            clinics: 2,
            pens_per_clinic: 3,
            seed,
            scenarios: vec![Scenario::Normal, Scenario::OverDepth],
            speed: 2000.0,
            sessions_per_pen: Some(2),
            ..SimConfig::default()
        },
        std::future::pending::<()>(),
    )
    .await
    .expect("sim");
    let expected: BTreeSet<String> = truth.exceeded().map(|s| s.session_id.clone()).collect();
    assert!(
        !expected.is_empty(),
        "the scenario exceeds in some sessions"
    );

    let mut finals = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while finals != expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = tokio::time::timeout(left, violations.next())
            .await
            .expect("every violation before the deadline")
            .expect("stream open")
            .expect("violation");
        assert!(
            expected.contains(&v.session_id),
            "unexpected violation {v:?}"
        );
        if v.r#final {
            finals.insert(v.session_id);
        }
    }

    let mut export = client
        .export_depth_log(req(pb::ExportRequest {
            filter: Some(pb::Filter {
                only_exceeded: true,
                ..pb::Filter::default()
            }),
            format: "csv".into(),
            include_samples: false,
        }))
        .await
        .expect("export")
        .into_inner();
    let mut csv = Vec::new();
    let mut chain_ok = false;
    while let Some(chunk) = export.next().await {
        let chunk = chunk.expect("chunk");
        csv.extend_from_slice(&chunk.data);
        chain_ok |= chunk.last && chunk.chain_ok;
    }
    assert!(chain_ok, "export checked against a verified chain");
    let csv = String::from_utf8(csv).expect("utf-8");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let (record, session) = (col("record"), col("session_id"));
    let exported: BTreeSet<String> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[record] == "session")
        .map(|f| f[session].to_owned())
        .collect();
    assert_eq!(
        exported, expected,
        "the export lists exactly the simulator's exceeded sessions"
    );
}
