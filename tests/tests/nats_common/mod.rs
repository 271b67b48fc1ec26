//! What the NATS gateway tests share: the fleet's policy, the simulator's run against a
//! cluster, and a journal's sample count.

use std::path::Path;

use penwatch_gateway::journal::Reader;
use penwatch_sim::fleet::Fleet;
use penwatch_sim::{GroundTruth, Scenario, SimConfig, SimError};
use penwatch_tests::nats::NatsCluster;

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
