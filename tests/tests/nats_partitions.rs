//! Several gateways on one fleet through a real 3-node NATS cluster: the cluster's subject
//! mapping puts each pen in one of 3 partitions, each gateway reads one partition into its own
//! journal, and together they hold exactly the simulator's ground truth, each pen in one
//! journal only — also after one of them is killed -9 and restarted mid-run.

mod nats_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nats_common::{journal_samples, simulate, write_policy};
use penwatch_gateway::journal::Reader;
use penwatch_tests::nats::NatsCluster;
use penwatch_tests::{Gateway, wait_for};

const PARTITIONS: u32 = 3;

/// Starts the gateway of `partition` with its journal in `dir`.
fn gateway(cluster: &NatsCluster, dir: &Path, policy: &str, partition: u32) -> Gateway {
    let config = cluster
        .gateway_config(
            dir,
            &format!("stream = \"PENWATCH_{partition}\"\npartition = {partition}\n"),
        )
        .expect("write config");
    Gateway::start(
        &cluster.mqtt_url(0),
        dir,
        &["--config", &config, "--policy", policy],
    )
    .expect("gateway")
}

/// Three gateways, one per partition: every valid message in exactly one journal, once;
/// every pen's samples and sessions in one journal only; every session with the simulator's
/// samples, strokes and verdict; every journal's chain verifies.
#[tokio::test(flavor = "multi_thread")]
async fn three_gateways_on_three_partitions_hold_each_pen_once_and_exactly() {
    let seed = 37;
    let cluster =
        NatsCluster::start_with(3, &NatsCluster::partition_mapping(PARTITIONS)).expect("cluster");
    let dirs: Vec<tempfile::TempDir> = (0..PARTITIONS)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let policy = write_policy(dirs[0].path(), seed);
    let mut gateways: Vec<Gateway> = (0..PARTITIONS)
        .map(|p| gateway(&cluster, dirs[p as usize].path(), &policy, p))
        .collect();
    let journals: Vec<_> = gateways.iter().map(Gateway::journal_path).collect();
    let total = || journals.iter().map(|j| journal_samples(j)).sum::<u64>();
    let sim = simulate(&cluster, seed);
    wait_for("progress before the kill", Duration::from_secs(30), || {
        total() > 300
    });
    gateways[1].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateways[1].restart().expect("restart");
    let truth = sim.await.expect("join").expect("sim");
    let deadline = Instant::now() + Duration::from_secs(60);
    while total() < truth.telemetry_valid {
        assert!(
            Instant::now() < deadline,
            "after 60 s the journals hold {} of {} valid messages",
            total(),
            truth.telemetry_valid
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for g in &mut gateways {
        assert!(
            g.terminate().expect("terminate"),
            "clean exit:\n{}",
            g.log()
        );
    }

    let readers: Vec<Reader> = journals
        .iter()
        .map(|j| Reader::open(j).expect("journal"))
        .collect();
    let counts: Vec<u64> = readers
        .iter()
        .map(|r| r.counts().expect("counts").samples)
        .collect();
    assert_eq!(
        counts.iter().sum::<u64>(),
        truth.telemetry_valid,
        "every valid message exactly once across the journals ({counts:?})"
    );
    assert!(
        counts.iter().filter(|c| **c > 0).count() >= 2,
        "the pens are spread over the partitions ({counts:?})"
    );
    let mut home: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in readers.iter().enumerate() {
        for d in r.devices().expect("devices") {
            let previous = home.insert(d.device_id.clone(), i);
            assert!(
                previous.is_none(),
                "{} is in journals {previous:?} and {i}",
                d.device_id
            );
        }
    }
    for t in &truth.sessions {
        let i = home[&t.device_id];
        let (s, _) = readers[i]
            .session(&t.device_id, &t.session_id)
            .expect("query")
            .unwrap_or_else(|| panic!("session {} missing from journal {i}", t.session_id));
        assert_eq!(
            (s.strokes, s.samples, s.exceeded()),
            (t.strokes, t.samples, t.exceeded),
            "{}",
            t.session_id
        );
    }
    let sessions: usize = readers
        .iter()
        .map(|r| r.sessions().expect("sessions").len())
        .sum();
    assert_eq!(
        sessions,
        truth.sessions.len(),
        "no session split or doubled"
    );
    for r in &readers {
        assert!(r.verify().expect("verify").ok());
    }
}
