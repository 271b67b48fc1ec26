//! Standby gateways on a real 3-node NATS cluster with 3 partitions: each partition's journal
//! has a home gateway and a standby (`[failover]`); when a home gateway is killed -9 its
//! standby takes the partition over, a cluster node is killed and comes back meanwhile, and
//! the home gateway, restarted, takes its partition back — exactly the simulator's ground
//! truth throughout.

mod nats_common;
mod oracle;

use std::path::Path;
use std::time::{Duration, Instant};

use nats_common::{assert_rebuilt_equal, journal_samples, simulate, write_policy};
use oracle::assert_journals_hold;
use penwatch_tests::nats::NatsCluster;
use penwatch_tests::{Gateway, wait_for};

const PARTITIONS: u32 = 3;

/// Starts a gateway of `partition` in `role`, its log in `dir`, on the partition's `journal`.
fn gateway(
    cluster: &NatsCluster,
    dir: &Path,
    journal: &Path,
    policy: &str,
    partition: u32,
    role: &str,
) -> Gateway {
    let config = cluster
        .gateway_config(
            dir,
            &format!(
                "stream = \"PENWATCH_{partition}\"\npartition = {partition}\n\n\
                 [failover]\nrole = \"{role}\"\n"
            ),
        )
        .expect("write config");
    Gateway::start_with_journal(
        &cluster.mqtt_url(0),
        dir,
        journal,
        &["--config", &config, "--policy", policy],
    )
    .expect("gateway")
}

/// Waits for a gateway to be connected (holding its journal) or standing by, and says how
/// long that took.
fn until(gateway: &Gateway, metric: &str, what: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    wait_for(what, limit, || gateway.metric(metric) == 1.0);
    start.elapsed()
}

/// Three partitions, each with a home gateway and a standby on the same journal. Killing a
/// home gateway -9 under load hands its pens to the standby within 10 s (sessions continue,
/// they are not split); a cluster node killed meanwhile changes nothing; the home gateway
/// restarted takes its partition back. Afterwards every valid message is in exactly one
/// journal once, each pen in one journal only, every session has the simulator's samples,
/// strokes and verdict, every chain verifies, and each journal's sessions — record, verdict,
/// evidence, digest — equal those a gateway that never failed rebuilds from the stream.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_a_killed_gateways_partition_and_hands_it_back_exactly() {
    let seed = 41;
    let mut cluster =
        NatsCluster::start_with(3, &NatsCluster::partition_mapping(PARTITIONS)).expect("cluster");
    let shared = tempfile::tempdir().expect("journals' directory");
    let logs: Vec<tempfile::TempDir> = (0..2 * PARTITIONS)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let policy = write_policy(shared.path(), seed);
    let journals: Vec<_> = (0..PARTITIONS)
        .map(|p| shared.path().join(format!("partition-{p}.db")))
        .collect();
    let mut homes: Vec<Gateway> = (0..PARTITIONS)
        .map(|p| {
            let i = p as usize;
            gateway(&cluster, logs[i].path(), &journals[i], &policy, p, "home")
        })
        .collect();
    let mut standbys: Vec<Gateway> = (0..PARTITIONS)
        .map(|p| {
            let i = p as usize;
            gateway(
                &cluster,
                logs[PARTITIONS as usize + i].path(),
                &journals[i],
                &policy,
                p,
                "standby",
            )
        })
        .collect();
    for s in &standbys {
        assert_eq!(s.metric("penwatch_standby"), 1.0, "{}", s.log());
    }
    let total = || journals.iter().map(|j| journal_samples(j)).sum::<u64>();
    let sim = simulate(&cluster, seed);
    wait_for("progress before the kill", Duration::from_secs(30), || {
        total() > 300
    });

    let before = journal_samples(&journals[0]);
    homes[0].kill();
    let takeover = until(
        &standbys[0],
        "penwatch_mqtt_connected",
        "the standby takes partition 0 over",
        Duration::from_secs(10),
    );
    let first_commit = Instant::now();
    wait_for(
        "the standby commits partition 0's messages",
        Duration::from_secs(10),
        || journal_samples(&journals[0]) > before,
    );
    eprintln!(
        "failover: standby active {:.2} s after the kill, committing {:.2} s later",
        takeover.as_secs_f64(),
        first_commit.elapsed().as_secs_f64()
    );
    cluster.kill(2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(2).expect("node back");

    homes[0].restart().expect("home gateway back");
    let handback = until(
        &homes[0],
        "penwatch_mqtt_connected",
        "the home gateway takes partition 0 back",
        Duration::from_secs(20),
    );
    until(
        &standbys[0],
        "penwatch_standby",
        "the standby stands by again",
        Duration::from_secs(5),
    );
    eprintln!(
        "handback: home gateway active {:.2} s after it started",
        handback.as_secs_f64()
    );
    assert!(
        standbys[0]
            .log()
            .contains("handed the journal back to its home gateway"),
        "{}",
        standbys[0].log()
    );

    let truth = sim.await.expect("join").expect("sim");
    wait_for(
        "every valid message journaled",
        Duration::from_secs(60),
        || total() >= truth.telemetry_valid,
    );
    for g in homes.iter_mut().chain(standbys.iter_mut()) {
        assert!(
            g.terminate().expect("terminate"),
            "clean exit:\n{}",
            g.log()
        );
    }

    assert_journals_hold(&journals, &truth);
    let compared: usize = journals
        .iter()
        .enumerate()
        .map(|(p, journal)| {
            let config = logs[p].path().join("gateway.toml").display().to_string();
            assert_rebuilt_equal(&cluster, &config, &policy, journal, &truth)
        })
        .sum();
    assert_eq!(compared, truth.sessions.len(), "every session compared");
}
