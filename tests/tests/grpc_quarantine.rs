//! Quarantine is bounded: an oversized payload is kept as its first 4 KiB with its size and
//! SHA-256, and `ListQuarantine` answers in pages a client can always receive.

use std::time::{Duration, Instant};

use penwatch_proto::v1 as pb;
use penwatch_tests::api::{REVIEWER, Setup, req};

const TOPIC: &str = "clinics/c01/pens/pen-a/telemetry";

#[tokio::test(flavor = "multi_thread")]
async fn oversized_payloads_are_kept_as_a_bounded_head_with_size_and_hash_and_listed_in_pages() {
    let mut setup = Setup::start().await;
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..6 {
        setup.publish_raw(TOPIC, big.clone()).await;
    }
    for i in 0..250 {
        setup
            .publish_raw(TOPIC, format!("not telemetry {i}").into_bytes())
            .await;
    }
    let mut client = setup.client().await;
    let list = |before_id: i64| {
        req(
            pb::ListQuarantineRequest {
                limit: 1000,
                before_id,
            },
            REVIEWER,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let page = client
            .list_quarantine(list(0))
            .await
            .expect("a page")
            .into_inner();
        if page.total == 256 {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "quarantined {} of 256",
            page.total
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(first.messages.len(), 200, "a page holds at most 200");
    assert!(first.next_before_id > 0, "there is a next page");
    let second = client
        .list_quarantine(list(first.next_before_id))
        .await
        .expect("the next page")
        .into_inner();
    assert_eq!(second.messages.len(), 56);
    assert_eq!(second.next_before_id, 0, "the last page says so");

    let big_ones: Vec<&pb::QuarantinedMessage> = second
        .messages
        .iter()
        .filter(|q| q.size_bytes == 1_000_000)
        .collect();
    assert_eq!(big_ones.len(), 6, "the oldest six are the big ones");
    let sha = {
        use std::fmt::Write;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&big);
        digest.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    for q in big_ones {
        assert_eq!(q.payload, big[..4096], "the first 4 KiB are kept");
        assert_eq!(q.sha256, sha);
        assert!(q.reason.contains("exceeds"), "{}", q.reason);
    }

    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    let out = std::process::Command::new(&cli)
        .args(["quarantine", "--limit", "300"])
        .env("PENWATCH_GATEWAY", &setup.api)
        .env("PENWATCH_TOKEN", REVIEWER)
        .output()
        .expect("run penwatch");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("256 quarantined in total"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "penwatch quarantine --before {}",
            first.next_before_id
        )),
        "{stdout}"
    );
}
