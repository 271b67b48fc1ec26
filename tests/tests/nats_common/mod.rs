//! What the NATS gateway tests share: the fleet's policy, the simulator's run against a
//! cluster, a journal's sample count, and a journal rebuilt from the stream to compare with.

use std::path::Path;
use std::time::Duration;

use penwatch_gateway::journal::Reader;
use penwatch_sim::fleet::Fleet;
use penwatch_sim::{GroundTruth, Scenario, SimConfig, SimError};
use penwatch_tests::nats::NatsCluster;
use penwatch_tests::{Gateway, wait_for};

/// Writes the policy of the simulator's 3 × 3 fleet of `seed` into `dir`; returns its path.
pub fn write_policy(dir: &Path, seed: u64) -> String {
    let policy = dir.join("policy.toml");
    let fleet = Fleet::generate(seed, 3, 3);
    std::fs::write(&policy, penwatch_sim::policy::policy_toml(&fleet)).expect("write policy");
    policy.display().to_string()
}

/// Runs that fleet (two sessions per pen, some over depth, some duplicates) against node 1's
/// MQTT listener in the background.
pub fn simulate(
    cluster: &NatsCluster,
    seed: u64,
) -> tokio::task::JoinHandle<Result<GroundTruth, SimError>> {
    tokio::spawn(penwatch_sim::run(
        SimConfig {
            broker: cluster.mqtt_url(1).parse().expect("broker url"),
            clinics: 3,
            pens_per_clinic: 3,
            seed,
            scenarios: vec![Scenario::Normal, Scenario::OverDepth, Scenario::Duplicates],
            speed: 200.0,
            sessions_per_pen: Some(2),
            ..SimConfig::default()
        },
        std::future::pending::<()>(),
    ))
}

/// Samples in the journal at `path` (0 while it cannot be read).
pub fn journal_samples(path: &Path) -> u64 {
    Reader::open(path)
        .and_then(|j| j.counts())
        .map_or(0, |c| c.samples)
}

/// What a gateway that never failed produces from the same traffic: starts one with an empty
/// journal on `config` (its partition's stream), lets it rebuild from the stream, and asserts
/// that it holds the messages of `original` and every session of `truth` that `original` holds,
/// equal — record, verdict, evidence, digest — and that its chain verifies. Returns how many
/// sessions it compared.
pub fn assert_rebuilt_equal(
    cluster: &NatsCluster,
    config: &str,
    policy: &str,
    original: &Path,
    truth: &GroundTruth,
) -> usize {
    let original = Reader::open(original).expect("journal");
    let expected = original.counts().expect("counts").samples;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rebuilt = Gateway::start(
        &cluster.mqtt_url(0),
        dir.path(),
        &["--config", config, "--policy", policy],
    )
    .expect("gateway on an empty journal");
    let path = rebuilt.journal_path();
    wait_for("the rebuilt journal", Duration::from_secs(60), || {
        journal_samples(&path) >= expected
    });
    assert!(rebuilt.terminate().expect("terminate"), "{}", rebuilt.log());
    let again = Reader::open(&path).expect("rebuilt journal");
    assert_eq!(again.counts().expect("counts").samples, expected);
    let mut compared = 0;
    for t in &truth.sessions {
        let stored = |r: &Reader| {
            r.stored_session(&t.device_id, &t.session_id)
                .expect("query")
        };
        if let Some(session) = stored(&original) {
            assert_eq!(stored(&again), Some(session), "{}", t.session_id);
            compared += 1;
        }
    }
    assert!(again.verify().expect("verify").ok());
    compared
}
