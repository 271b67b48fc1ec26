//! The simulator as the oracle of the journals (shared by the tests that include it): what one or several gateways' journals must
//! hold together after a run, however the run was interrupted.

use std::collections::BTreeMap;
use std::path::PathBuf;

use penwatch_gateway::journal::Reader;
use penwatch_sim::GroundTruth;

/// Asserts that `journals` together hold exactly the run of `truth`: every valid message once,
/// each pen's samples and sessions in one journal only, every session with the simulator's
/// samples, strokes and verdict (none split or doubled), and every chain verified. Returns each
/// journal's sample count.
pub fn assert_journals_hold(journals: &[PathBuf], truth: &GroundTruth) -> Vec<u64> {
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
    for (i, r) in readers.iter().enumerate() {
        assert!(r.verify().expect("verify").ok(), "journal {i}'s chain");
    }
    counts
}
