//! The gRPC API as a reviewer and as an admin, over a real socket against a real broker and
//! gateway: the reviewer reads and exports everything, paged; only the admin validates policies.

use penwatch_proto::v1 as pb;
use penwatch_tests::api::{
    ADMIN, POLICY, REVIEWER, Setup, code, csv_sessions, export, export_req, filter, ids, req,
    sessions_req, set,
};
use tonic::Code;

/// Reviewer: everything, paged; export of only exceeded sessions lists exactly those.
#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_reads_and_exports_everything_but_cannot_validate_policies() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    let mut c = setup.client().await;

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_sessions(req(
                pb::ListSessionsRequest {
                    filter: None,
                    page_size: 1,
                    page_token,
                },
                REVIEWER,
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.sessions.len() <= 1);
        seen.extend(
            page.sessions
                .into_iter()
                .map(|s| (s.started_ms, s.session_id)),
        );
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 4);
    assert!(
        seen.windows(2).all(|w| w[0].0 >= w[1].0),
        "newest first: {seen:?}"
    );
    assert_eq!(
        code(c.list_sessions(req(
            pb::ListSessionsRequest {
                filter: None,
                page_size: 1,
                page_token: "forged".into()
            },
            REVIEWER
        )))
        .await,
        Code::InvalidArgument
    );
    let exceeded = c
        .list_sessions(req(sessions_req(filter(&[], true)), REVIEWER))
        .await
        .expect("exceeded")
        .into_inner()
        .sessions;
    assert_eq!(
        ids(exceeded.iter().map(|s| s.session_id.as_str())),
        set(&["s-a2", "s-b1"])
    );
    let (csv, last) = export(
        &mut c,
        req(export_req(filter(&[], true), "csv", false), REVIEWER),
    )
    .await;
    assert_eq!(csv_sessions(&csv), set(&["s-a2", "s-b1"]));
    assert!(last.chain_ok && last.chain_head.len() == 64);
    let (jsonl, _) = export(
        &mut c,
        req(export_req(filter(&["c02"], false), "jsonl", true), REVIEWER),
    )
    .await;
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(records.iter().any(|r| r["record"] == "sample"));
    assert!(records.iter().any(|r| r["record"] == "violation"
        && r["session_id"] == "s-b1"
        && r["binding_rule"] == "operator"));
    let verify = c
        .verify_audit_chain(req(pb::VerifyRequest {}, REVIEWER))
        .await
        .expect("verify")
        .into_inner();
    assert!(verify.ok, "{verify:?}");
    assert!(last.chain_ok && !last.chain_head.is_empty(), "{last:?}");
    // The access log's runs are chained too, so the head moves with every recorded call.
    assert!(
        verify.entries >= 7,
        "the chain's scope, four sessions, two violations and the access log's runs: {verify:?}"
    );
    let quarantine = c
        .list_quarantine(req(pb::ListQuarantineRequest::default(), REVIEWER))
        .await
        .expect("quarantine")
        .into_inner();
    assert_eq!(quarantine.total, 0);
    let policy = c
        .get_policy(req(pb::GetPolicyRequest {}, REVIEWER))
        .await
        .expect("policy")
        .into_inner();
    assert_eq!(policy.text, POLICY);
    assert_eq!(
        code(c.validate_policy(req(
            pb::ValidatePolicyRequest {
                text: POLICY.into()
            },
            REVIEWER
        )))
        .await,
        Code::PermissionDenied
    );
    let operators = c
        .list_operators(req(pb::ListOperatorsRequest::default(), REVIEWER))
        .await
        .expect("operators")
        .into_inner()
        .operators;
    assert_eq!(operators.len(), 2);
}

/// Admin: policy validation; a valid text gets the version in force, a bad one its line.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_validates_policies_and_gets_the_line_at_fault() {
    let setup = Setup::start().await;
    let mut c = setup.client().await;

    let policy = c
        .get_policy(req(pb::GetPolicyRequest {}, ADMIN))
        .await
        .expect("policy")
        .into_inner();
    let ok = c
        .validate_policy(req(
            pb::ValidatePolicyRequest {
                text: POLICY.into(),
            },
            ADMIN,
        ))
        .await
        .expect("validate")
        .into_inner();
    assert!(ok.valid && ok.version == policy.version, "{ok:?}");
    let bad = c
        .validate_policy(req(
            pb::ValidatePolicyRequest {
                text: "[classes]\nhome = -1\n".into(),
            },
            ADMIN,
        ))
        .await
        .expect("validate")
        .into_inner();
    assert!(!bad.valid && bad.error.contains("line 2"), "{bad:?}");
}
