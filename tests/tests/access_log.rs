//! The access log: every call that returns operator or session data (the policy's text names
//! operators), every policy validation, export and verify, and every refused call is recorded in the journal, listable by reviewers and admins, and
//! covered by `verify`.

use std::time::{Duration, Instant};

use penwatch_proto::v1 as pb;
use penwatch_tests::api::{ADMIN, MANAGER, REVIEWER, Setup, code, export, export_req, req};
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn reads_exports_verifies_and_refusals_are_recorded_and_listed_for_reviewers() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    setup.wait_committed();
    let mut client = setup.client().await;

    let sessions = client
        .list_sessions(req(pb::ListSessionsRequest::default(), MANAGER))
        .await
        .expect("sessions")
        .into_inner()
        .sessions;
    let _ = export(&mut client, req(export_req(None, "jsonl", false), REVIEWER)).await;
    let cartridges = client
        .list_cartridges(req(pb::ListCartridgesRequest::default(), REVIEWER))
        .await
        .expect("cartridges")
        .into_inner();
    client
        .verify_audit_chain(req(pb::VerifyRequest::default(), ADMIN))
        .await
        .expect("verify");
    client
        .get_policy(req(pb::GetPolicyRequest::default(), REVIEWER))
        .await
        .expect("the policy");
    let candidate = pb::ValidatePolicyRequest {
        text: "version = \"candidate\"\n".into(),
    };
    client
        .validate_policy(req(candidate, ADMIN))
        .await
        .expect("a validation");
    assert_eq!(
        code(client.list_operators(req(
            pb::ListOperatorsRequest::default(),
            "no-such-token-0123456789"
        )))
        .await,
        Code::Unauthenticated
    );
    assert_eq!(
        code(client.list_access_log(req(pb::ListAccessLogRequest::default(), MANAGER))).await,
        Code::PermissionDenied,
        "a clinic manager may not read the access log"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let entries = client
            .list_access_log(req(pb::ListAccessLogRequest::default(), REVIEWER))
            .await
            .expect("the access log")
            .into_inner()
            .entries;
        if entries
            .iter()
            .any(|e| e.outcome.contains("PermissionDenied"))
        {
            break entries;
        }
        assert!(Instant::now() < deadline, "not recorded: {entries:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |rpc: &str, token: &str| {
        entries
            .iter()
            .find(|e| e.rpc == rpc && e.token_name == token)
            .unwrap_or_else(|| panic!("{rpc} by {token} in {entries:#?}"))
    };
    let listed = find("ListSessions", "mgr-c01");
    assert_eq!(listed.role, "clinic-manager");
    assert_eq!(listed.rows, sessions.len() as u64);
    assert_eq!(listed.outcome, "ok");
    assert_eq!(
        find("ListCartridges", "reviewer").rows,
        (cartridges.cartridges.len() + cartridges.reuse_events.len()) as u64
    );
    find("ExportDepthLog", "reviewer");
    find("VerifyAuditChain", "admin");
    assert_eq!(
        find("GetPolicy", "reviewer").rows,
        1,
        "its text was returned"
    );
    let validated = find("ValidatePolicy", "admin");
    assert!(
        validated.filter.ends_with(" bytes") && !validated.filter.contains("candidate"),
        "the candidate's size, not its text: {validated:?}"
    );
    let refused = find("ListOperators", "-");
    assert!(
        refused.outcome.starts_with("Unauthenticated"),
        "{refused:?}"
    );
    assert!(
        find("ListAccessLog", "mgr-c01")
            .outcome
            .starts_with("PermissionDenied")
    );

    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    let out = std::process::Command::new(&cli)
        .arg("access-log")
        .env("PENWATCH_GATEWAY", &setup.api)
        .env("PENWATCH_TOKEN", REVIEWER)
        .output()
        .expect("penwatch access-log");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("ListSessions") && table.contains("mgr-c01"),
        "{table}"
    );

    let verified = client
        .verify_audit_chain(req(pb::VerifyRequest::default(), REVIEWER))
        .await
        .expect("verify")
        .into_inner();
    assert!(
        verified.ok,
        "the access log is covered by the chain: {verified:?}"
    );
}
