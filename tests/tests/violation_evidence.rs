//! A violation's evidence against a real broker and gateway, through the API and the
//! `penwatch` command line: one excursion per rule and limit, never a peak from one set
//! against a limit from another; and a Scottish clinic's specified-procedure rule.

use std::collections::BTreeMap;

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::{DeviceClass, Zone};
use penwatch_tests::api::{REVIEWER, Setup, req};

/// Every violation the API lists, by session id.
async fn violations(setup: &Setup) -> BTreeMap<String, pb::Evidence> {
    let mut c = setup.client().await;
    c.list_violations(req(pb::ListViolationsRequest::default(), REVIEWER))
        .await
        .expect("list violations")
        .into_inner()
        .violations
        .into_iter()
        .map(|v| (v.session_id, v.evidence.expect("evidence")))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread")]
async fn two_excursions_under_different_rules_give_the_worse_one_and_list_the_other() {
    let mut setup = Setup::start_with_policy(
        r#"
[[operators]]
id = "op-c02-1"
clinic = "c02"
qualification = "aesthetic_practitioner"

[zones.c02]
periorbital = 0.5
"#,
    )
    .await;
    // 0.7 mm periorbital (zone limit 0.5, 0.2 over), then 1.1 mm on the cheek (operator limit
    // 1.0, 0.1 over).
    setup
        .session_in_zones(
            "c02",
            "pen-b",
            DeviceClass::Medical,
            "op-c02-1",
            "s-1",
            &[
                (0.5, Zone::Periorbital),
                (0.7, Zone::Periorbital),
                (1.0, Zone::Cheek),
                (1.1, Zone::Cheek),
                (0.5, Zone::Cheek),
            ],
        )
        .await;
    setup.wait_committed();

    let listed = violations(&setup).await;
    let e = listed.get("s-1").expect("s-1 exceeded");
    assert_eq!(
        (e.peak_depth_mm, e.limit_mm, e.binding_rule.as_str()),
        (0.7, 0.5, "zone")
    );
    assert!(close(e.excess_mm, 0.2), "excess {}", e.excess_mm);
    assert_eq!((e.samples_above, e.strokes_above), (1, 120));
    assert_eq!(e.other_excursions.len(), 1, "{:?}", e.other_excursions);
    let other = &e.other_excursions[0];
    assert_eq!(
        (
            other.peak_depth_mm,
            other.limit_mm,
            other.binding_rule.as_str()
        ),
        (1.1, 1.0, "operator")
    );
    assert!(close(other.excess_mm, 0.1), "excess {}", other.excess_mm);
    assert!(other.first_above_ms > e.last_above_ms);

    let mut c = setup.client().await;
    let session = c
        .get_session(req(
            pb::GetSessionRequest {
                device_id: "pen-b".into(),
                session_id: "s-1".into(),
                max_points: 0,
            },
            REVIEWER,
        ))
        .await
        .expect("get session")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(
        session.evidence.as_ref(),
        Some(e),
        "one evidence everywhere"
    );

    let json: serde_json::Value =
        serde_json::from_str(&setup.penwatch_ok(REVIEWER, &["violations", "--json"]))
            .expect("JSON");
    let cli = &json[0]["evidence"];
    assert_eq!(cli["peak_depth_mm"], 0.7);
    assert_eq!(cli["limit_mm"], 0.5);
    assert_eq!(cli["binding_rule"], "zone");
    assert_eq!(cli["other_excursions"][0]["binding_rule"], "operator");
    assert_eq!(cli["other_excursions"][0]["peak_depth_mm"], 1.1);

    let export = setup.penwatch_ok(REVIEWER, &["export", "--format", "jsonl"]);
    let exported: serde_json::Value = export
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .find(|r| r["record"] == "violation")
        .expect("the violation is exported");
    assert_eq!(exported["peak_depth_mm"], 0.7);
    assert_eq!(exported["binding_rule"], "zone");
    assert!(close(exported["excess_mm"].as_f64().expect("excess"), 0.2));
    assert_eq!(exported["other_excursions"][0]["limit_mm"], 1.0);
    assert_eq!(exported["other_excursions"][0]["binding_rule"], "operator");

    let text = setup.penwatch_ok(REVIEWER, &["session", "pen-b", "s-1"]);
    assert!(
        text.contains("worst excursion: peak 0.70 mm over a 0.50 mm limit (zone), 0.20 mm over"),
        "{text}"
    );
    assert!(
        text.contains(
            "other excursion: peak 1.10 mm over a 1.00 mm limit (operator), 0.10 mm over"
        ),
        "{text}"
    );
    assert!(!text.contains("1.10 mm over a 0.50"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scottish_clinic_flags_1_5_mm_without_a_healthcare_professional_in_registered_premises() {
    let mut setup = Setup::start_with_policy(
        r#"
[[operators]]
id = "op-nurse"
clinic = "c03"
qualification = "clinician"
healthcare_professional = true

[[operators]]
id = "op-aesthetic"
clinic = "c03"
qualification = "clinician"

[[operators]]
id = "op-nurse"
clinic = "c04"
qualification = "clinician"
healthcare_professional = true

[clinics.c03]
jurisdiction = "scotland"
registered_premises = true

[clinics.c04]
jurisdiction = "scotland"
"#,
    )
    .await;
    let medical = DeviceClass::Medical;
    // Registered premises, an operator who is not a healthcare professional: 1.5 mm reached.
    setup
        .session(
            "c03",
            "pen-s",
            medical,
            "op-aesthetic",
            "s-1",
            &[1.0, 1.5, 1.25],
        )
        .await;
    // Registered premises, a healthcare professional: only class and qualification apply.
    setup
        .session("c03", "pen-s", medical, "op-nurse", "s-2", &[1.0, 1.5, 2.0])
        .await;
    // A healthcare professional, premises not registered.
    setup
        .session("c04", "pen-t", medical, "op-nurse", "s-3", &[1.25, 1.75])
        .await;
    setup.wait_committed();

    let listed = violations(&setup).await;
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        ["s-1", "s-3"]
    );
    let s1 = &listed["s-1"];
    assert_eq!(
        (s1.peak_depth_mm, s1.limit_mm, s1.binding_rule.as_str()),
        (1.5, 1.5, "scotland_2026")
    );
    assert!(close(s1.excess_mm, 0.0));
    assert_eq!(s1.samples_above, 1);
    let s3 = &listed["s-3"];
    assert_eq!(
        (s3.peak_depth_mm, s3.limit_mm, s3.binding_rule.as_str()),
        (1.75, 1.5, "scotland_2026")
    );
    assert!(close(s3.excess_mm, 0.25));

    let text = setup.penwatch_ok(REVIEWER, &["violations"]);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("scotland_2026"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
}
