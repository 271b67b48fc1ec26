//! Several gateways on one fleet through a real 3-node NATS cluster: the cluster's subject
//! mapping puts each pen in one of 3 partitions, each gateway reads one partition into its own
//! journal, and together they hold exactly the simulator's ground truth, each pen in one
//! journal only — also after one of them is killed -9 and restarted mid-run.

mod nats_common;
mod oracle;

use std::path::Path;
use std::time::Duration;

use nats_common::{assert_rebuilt_equal, journal_samples, simulate, write_policy};
use oracle::assert_journals_hold;
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
    wait_for(
        "every valid message journaled",
        Duration::from_secs(60),
        || total() >= truth.telemetry_valid,
    );
    for g in &mut gateways {
        assert!(
            g.terminate().expect("terminate"),
            "clean exit:\n{}",
            g.log()
        );
    }

    let counts = assert_journals_hold(&journals, &truth);
    assert!(
        counts.iter().filter(|c| **c > 0).count() >= 2,
        "the pens are spread over the partitions ({counts:?})"
    );
    let compared: usize = journals
        .iter()
        .enumerate()
        .map(|(p, journal)| {
            let config = dirs[p].path().join("gateway.toml").display().to_string();
            assert_rebuilt_equal(&cluster, &config, &policy, journal, &truth)
        })
        .sum();
    assert_eq!(compared, truth.sessions.len(), "every session compared");
}
