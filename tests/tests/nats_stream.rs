//! The gateway reading a replicated JetStream stream (`[nats]`) on a real 3-node NATS
//! cluster that pens publish to over MQTT: exactly the simulator's ground truth through a
//! SIGKILL of the gateway and of a cluster node.

mod nats_common;
mod oracle;

use std::time::Duration;

use nats_common::{assert_rebuilt_equal, journal_samples, simulate, write_policy};
use oracle::assert_journals_hold;
use penwatch_gateway::journal::Reader;
use penwatch_tests::nats::NatsCluster;
use penwatch_tests::{Gateway, wait_for};

/// Pens publish to one node while the gateway reads the stream; the gateway is killed -9 and
/// restarted while another node is killed -9 and brought back: afterwards every valid message
/// is in the journal exactly once, every session has the simulator's samples, strokes and
/// verdict, the audit chain verifies, and the journal holds its stream position; and a
/// replacement gateway with an empty journal rebuilds every session — record, evidence,
/// digest — from the stream alone, equal to the original.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_on_a_replicated_stream_is_exact_through_kills_and_rebuilds_from_it() {
    let seed = 31;
    let mut cluster = NatsCluster::start(3).expect("cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(dir.path(), seed);
    let config = cluster
        .gateway_config(dir.path(), "")
        .expect("write config");
    let mut gateway = Gateway::start(
        &cluster.mqtt_url(0),
        dir.path(),
        &["--config", &config, "--policy", &policy],
    )
    .expect("gateway");
    let sim = simulate(&cluster, seed);
    let journal_path = gateway.journal_path();
    wait_for("progress before the kill", Duration::from_secs(30), || {
        journal_samples(&journal_path) > 200
    });
    gateway.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.restart().expect("restart");
    cluster.kill(2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(2).expect("node back");
    let truth = sim.await.expect("join").expect("sim");
    wait_for(
        "every valid message journaled",
        Duration::from_secs(60),
        || journal_samples(&journal_path) >= truth.telemetry_valid,
    );
    assert!(
        gateway.terminate().expect("terminate"),
        "clean exit; log:\n{}",
        gateway.log()
    );

    assert_journals_hold(std::slice::from_ref(&journal_path), &truth);
    let journal = Reader::open(&journal_path).expect("journal");
    assert!(
        journal.stream_position("PENWATCH").expect("position") > 0,
        "the position is journaled"
    );

    // A replacement gateway with an empty journal (its disk lost) rebuilds the same
    // sessions, verdicts, evidence and digests from the stream alone.
    assert_eq!(
        assert_rebuilt_equal(&cluster, &config, &policy, &journal_path, &truth),
        truth.sessions.len()
    );
}
