//! Signed reviews (21 CFR 11.50/11.70) and the policy history, against a real broker and
//! gateway: only reviewers and admins sign, within their clinics; a signature shows the
//! printed name, time and meaning, is bound to the chain head, verified, listed and exported;
//! every policy version that was in force is kept with its text and its time in force.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use penwatch_proto::v1 as pb;
use penwatch_tests::api::{
    ADMIN, MAKER, MANAGER, POLICY, REVIEWER, Setup, export, export_req, filter, req,
};
use tonic::Code;

/// A reviewer scoped to clinic c02.
const REVIEWER_C02: &str = "token-reviewer-c02-0123456789";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Runs `penwatch` against the setup's gateway with `token`; asserts success.
fn penwatch(setup: &Setup, token: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(penwatch_tests::binary("penwatch").expect("built"))
        .args(args)
        .env("PENWATCH_GATEWAY", &setup.api)
        .env("PENWATCH_TOKEN", token)
        .output()
        .expect("run penwatch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn sign(clinic: &str, meaning: &str, from_ms: i64, until_ms: i64) -> pb::SignReviewRequest {
    pb::SignReviewRequest {
        clinic_id: clinic.into(),
        from_ms,
        until_ms,
        meaning: meaning.into(),
        signer: "Dr Ann Example".into(),
        head_hash: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_signs_a_period_and_the_signature_is_listed_verified_and_exported() {
    let mut setup = Setup::start_with(&format!(
        "[[api.tokens]]\nname = \"reviewer-c02\"\ntoken = \"{REVIEWER_C02}\"\n\
         role = \"reviewer\"\nclinics = [\"c02\"]\n"
    ))
    .await;
    setup.publish_fixture().await;
    let mut c = setup.client().await;
    let (from, until) = (now_ms() - 2 * 3_600_000, now_ms() + 60_000);

    let before = c
        .verify_audit_chain(req(pb::VerifyRequest {}, REVIEWER))
        .await
        .expect("verify")
        .into_inner();
    let signed = c
        .sign_review(req(sign("c01", "approved", from, until), REVIEWER))
        .await
        .expect("a reviewer signs")
        .into_inner();
    assert_eq!(
        (
            signed.signer.as_str(),
            signed.meaning.as_str(),
            signed.token_name.as_str(),
            signed.role.as_str(),
            signed.clinic_id.as_str(),
            signed.from_ms,
            signed.until_ms
        ),
        (
            "Dr Ann Example",
            "approved",
            "reviewer",
            "reviewer",
            "c01",
            from,
            until
        )
    );
    assert!(
        signed.head_seq >= before.entries as i64 && signed.head_hash.len() == 64,
        "bound to the head at signing: {signed:?}, before {before:?}"
    );
    assert!((signed.signed_ms - now_ms()).abs() < 10_000);

    // Bound to a head the reviewer verified: the head as it stood then.
    let at_head = c
        .sign_review(req(
            pb::SignReviewRequest {
                head_hash: before.head.clone(),
                ..sign("c02", "reviewed", from, until)
            },
            REVIEWER_C02,
        ))
        .await
        .expect("the c02 reviewer signs for c02")
        .into_inner();
    assert_eq!(
        (at_head.head_seq, at_head.head_hash.as_str()),
        (before.entries as i64, before.head.as_str())
    );

    for (who, request, expected, says) in [
        (
            MANAGER,
            sign("c01", "approved", from, until),
            Code::PermissionDenied,
            "reviewer or admin",
        ),
        (
            MAKER,
            sign("c01", "approved", from, until),
            Code::PermissionDenied,
            "reviewer or admin",
        ),
        (
            REVIEWER_C02,
            sign("c01", "approved", from, until),
            Code::PermissionDenied,
            "outside the scope",
        ),
        (
            REVIEWER,
            sign("c01", "looked at it", from, until),
            Code::InvalidArgument,
            "\"reviewed\", \"approved\", \"responsibility\"",
        ),
        (
            REVIEWER,
            sign("c01", "approved", until, from),
            Code::InvalidArgument,
            "must be before until",
        ),
        (
            REVIEWER,
            sign("c01", "approved", from, from),
            Code::InvalidArgument,
            "must be before until",
        ),
        (
            ADMIN,
            sign("c99", "approved", from, until),
            Code::InvalidArgument,
            "unknown",
        ),
        (
            REVIEWER,
            pb::SignReviewRequest {
                head_hash: "ab".repeat(32),
                ..sign("c01", "approved", from, until)
            },
            Code::FailedPrecondition,
            "not an entry of the audit chain",
        ),
    ] {
        let status = c
            .sign_review(req(request.clone(), who))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), expected, "{request:?}: {status:?}");
        assert!(status.message().contains(says), "{status:?}");
    }

    let list = |token: &'static str, clinics: &[&str]| {
        let mut c = c.clone();
        let clinic_ids = clinics.iter().map(|c| (*c).to_owned()).collect();
        async move {
            c.list_reviews(req(
                pb::ListReviewsRequest {
                    clinic_ids,
                    ..pb::ListReviewsRequest::default()
                },
                token,
            ))
            .await
            .map(|r| r.into_inner().reviews)
        }
    };
    let all = list(REVIEWER, &[]).await.expect("list");
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        [at_head.id, signed.id],
        "newest first"
    );
    let scoped = list(REVIEWER_C02, &[]).await.expect("scoped list");
    assert_eq!(scoped, std::slice::from_ref(&at_head));
    let manager = list(MANAGER, &[]).await.expect("manager list");
    assert_eq!(
        manager,
        std::slice::from_ref(&signed),
        "a clinic manager sees their clinic's"
    );
    assert_eq!(
        list(MAKER, &[]).await.expect_err("maker").code(),
        Code::PermissionDenied
    );
    assert_eq!(
        list(MANAGER, &["c02"])
            .await
            .expect_err("other clinic")
            .code(),
        Code::PermissionDenied
    );

    let verify = c
        .verify_audit_chain(req(pb::VerifyRequest {}, REVIEWER))
        .await
        .expect("verify")
        .into_inner();
    assert!(verify.ok, "{verify:?}");

    let (jsonl, _) = export(
        &mut c,
        req(
            export_req(filter(&["c01"], false), "jsonl", false),
            REVIEWER,
        ),
    )
    .await;
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let reviews: Vec<_> = records.iter().filter(|r| r["record"] == "review").collect();
    assert_eq!(reviews.len(), 1, "only c01's signature: {reviews:?}");
    assert_eq!(reviews[0]["signer"], "Dr Ann Example");
    assert_eq!(reviews[0]["meaning"], "approved");
    assert_eq!(reviews[0]["head_hash"], signed.head_hash.as_str());
    assert_eq!(
        records
            .iter()
            .rfind(|r| r["record"] != "chain" && r["record"] != "head")
            .map(|r| r["record"].clone()),
        Some("review".into()),
        "signatures trail the records they sign, before the chain entries"
    );
    assert!(
        reviews[0]["chain_seq"].as_i64().is_some(),
        "a signature is its chain entry"
    );
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &jsonl).expect("write export");
    let verified = penwatch(
        &setup,
        REVIEWER,
        &["verify-export", &file.path().display().to_string()],
    );
    assert!(
        verified.starts_with("OK: ") && verified.contains(", 1 review signatures against"),
        "{verified}"
    );
    let forged = jsonl.replace("Dr Ann Example", "Dr Someone Else");
    std::fs::write(file.path(), forged).expect("write forged export");
    let out = std::process::Command::new(penwatch_tests::binary("penwatch").expect("built"))
        .args(["verify-export", &file.path().display().to_string()])
        .output()
        .expect("run penwatch");
    assert!(!out.status.success(), "a changed signer is caught");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("review record does not match chain entry"),
        "{text}"
    );
    let policies: Vec<_> = records
        .iter()
        .filter(|r| r["record"] == "policy_version")
        .collect();
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(policies[0]["policy_text"], POLICY);
    let (csv, _) = export(
        &mut c,
        req(export_req(filter(&["c02"], false), "csv", false), REVIEWER),
    )
    .await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().expect("header").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let review = rows
        .iter()
        .find(|r| &r[column("record")] == "review")
        .expect("a review row in the CSV");
    assert_eq!(&review[column("signer")], "Dr Ann Example");
    assert_eq!(&review[column("meaning")], "reviewed");
    assert!(review[column("signed")].ends_with('Z'));

    let table = penwatch(&setup, REVIEWER, &["review", "list", "--clinic", "c01"]);
    assert!(table.contains("PRINTED NAME"), "{table}");
    let row = table.lines().nth(1).expect("a row");
    for shown in [
        "Dr Ann Example",
        "approved",
        "c01",
        signed.head_hash.as_str(),
    ] {
        assert!(row.contains(shown), "{shown} in {row}");
    }
    assert!(
        !table.contains("reviewed"),
        "c02's signature is not listed: {table}"
    );
    let out = penwatch(
        &setup,
        ADMIN,
        &[
            "review",
            "sign",
            "--clinic",
            "c02",
            "--from",
            "2026-11-01",
            "--until",
            "2026-12-01",
            "--meaning",
            "responsibility",
            "--signer",
            "Bo Admin",
        ],
    );
    assert!(
        out.contains("Bo Admin (responsibility)") && out.contains("2026-11-01T00:00:00Z"),
        "{out}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = c
            .list_access_log(req(pb::ListAccessLogRequest::default(), REVIEWER))
            .await
            .expect("access log")
            .into_inner()
            .entries;
        let signs = |outcome: &str| {
            log.iter()
                .filter(|e| e.rpc == "SignReview" && e.outcome.starts_with(outcome))
                .count()
        };
        let listed = log.iter().any(|e| e.rpc == "ListReviews");
        if signs("ok") == 3
            && signs("PermissionDenied") == 3
            && signs("InvalidArgument") == 4
            && listed
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SignReview calls not all recorded: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The history as (version, from, until, text) once it has `n` versions.
async fn history(setup: &Setup, token: &str, n: usize) -> Vec<pb::PolicyVersion> {
    let mut c = setup.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let versions = c
            .list_policy_versions(req(pb::ListPolicyVersionsRequest {}, token))
            .await
            .expect("history")
            .into_inner()
            .versions;
        if versions.len() >= n {
            return versions;
        }
        assert!(
            Instant::now() < deadline,
            "{n} versions expected: {versions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_policy_version_in_force_is_kept_with_its_text_and_its_time_in_force() {
    let mut setup = Setup::start().await;
    let first = history(&setup, ADMIN, 1).await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].text.as_str(), first[0].in_force_until_ms),
        (POLICY, 0),
        "in force now, with its full text"
    );

    let second_text = format!(
        "{POLICY}\n[[operators]]\nid = \"op-c01-2\"\nclinic = \"c01\"\nqualification = \"clinician\"\n"
    );
    std::fs::write(setup.policy_path(), &second_text).expect("policy");
    setup.gateway().signal("HUP").expect("HUP");
    let two = history(&setup, ADMIN, 2).await;
    assert_eq!(two.len(), 2, "{two:?}");
    assert_eq!(two[0].in_force_until_ms, two[1].in_force_from_ms);
    assert!(two[0].in_force_from_ms < two[1].in_force_from_ms);
    assert_eq!(
        (two[1].text.as_str(), two[1].in_force_until_ms),
        (second_text.as_str(), 0)
    );
    let current = setup
        .client()
        .await
        .get_policy(req(pb::GetPolicyRequest {}, ADMIN))
        .await
        .expect("policy")
        .into_inner();
    assert_eq!(
        (current.version.as_str(), current.loaded_ms),
        (two[1].version.as_str(), two[1].in_force_from_ms)
    );
    let for_manager = history(&setup, MANAGER, 2).await;
    assert!(
        for_manager.iter().all(|p| p.text.is_empty()) && for_manager[1].version == two[1].version,
        "versions and times, no texts: {for_manager:?}"
    );

    // A restart with the same file is no new version; with a changed one it is.
    setup.gateway_mut().restart().expect("restart");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(history(&setup, ADMIN, 2).await, two);
    std::fs::write(setup.policy_path(), POLICY).expect("policy");
    setup.gateway_mut().restart().expect("restart");
    let three = history(&setup, ADMIN, 3).await;
    assert_eq!(three.len(), 3, "{three:?}");
    assert_eq!(three[..1], two[..1]);
    assert_eq!(three[1].in_force_until_ms, three[2].in_force_from_ms);
    assert_eq!(
        (three[2].version.as_str(), three[2].text.as_str()),
        (two[0].version.as_str(), POLICY),
        "the first version, in force again"
    );

    let mut c = setup.client().await;
    let (jsonl, _) = export(&mut c, req(export_req(None, "jsonl", false), REVIEWER)).await;
    let exported: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .filter(|r| r["record"] == "policy_version")
        .collect();
    assert_eq!(exported.len(), 3, "{exported:?}");
    assert_eq!(exported[1]["policy_text"], second_text.as_str());

    let table = penwatch(&setup, REVIEWER, &["policy", "--history", "--text"]);
    assert!(table.contains("in force now"), "{table}");
    assert!(table.contains("op-c01-2"), "the texts: {table}");
    assert_eq!(table.matches("--- policy version").count(), 3, "{table}");
}
