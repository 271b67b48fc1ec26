//! The gRPC API as a clinic manager, over a real socket against a real broker and gateway:
//! only the manager's clinic, never another's rows, and no audit or policy administration.

use penwatch_proto::v1 as pb;
use penwatch_tests::api::{
    MANAGER, POLICY, Setup, code, csv_sessions, export, export_req, filter, ids, req, sessions_req,
    set,
};
use tokio_stream::StreamExt;
use tonic::Code;

/// Clinic manager of c01: never a c02 row; c02 asked for explicitly is PERMISSION_DENIED.
#[tokio::test(flavor = "multi_thread")]
async fn a_clinic_manager_sees_only_their_clinic_and_is_denied_the_others() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    let mut c = setup.client().await;

    let who = c
        .who_am_i(req(pb::WhoAmIRequest {}, MANAGER))
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(
        (who.role.as_str(), who.clinic_ids.clone()),
        ("clinic-manager", vec!["c01".to_owned()])
    );
    let sessions = c
        .list_sessions(req(sessions_req(None), MANAGER))
        .await
        .expect("sessions")
        .into_inner()
        .sessions;
    assert_eq!(
        ids(sessions.iter().map(|s| s.session_id.as_str())),
        set(&["s-a1", "s-a2"])
    );
    assert!(
        sessions
            .iter()
            .all(|s| s.clinic_id == "c01" && s.operator_id == "op-c01-1")
    );
    assert_eq!(
        code(c.list_sessions(req(sessions_req(filter(&["c02"], false)), MANAGER))).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(c.list_sessions(req(sessions_req(filter(&["c01", "c02"], false)), MANAGER))).await,
        Code::PermissionDenied
    );
    let violations = c
        .list_violations(req(pb::ListViolationsRequest::default(), MANAGER))
        .await
        .expect("violations")
        .into_inner()
        .violations;
    assert_eq!(
        ids(violations.iter().map(|v| v.session_id.as_str())),
        set(&["s-a2"])
    );
    let devices = c
        .list_devices(req(pb::ListDevicesRequest::default(), MANAGER))
        .await
        .expect("devices")
        .into_inner()
        .devices;
    assert_eq!(
        ids(devices.iter().map(|d| d.device_id.as_str())),
        set(&["pen-a"])
    );
    let cartridges = c
        .list_cartridges(req(pb::ListCartridgesRequest::default(), MANAGER))
        .await
        .expect("cartridges")
        .into_inner();
    assert_eq!(
        ids(cartridges
            .cartridges
            .iter()
            .map(|c| c.cartridge_id.as_str())),
        set(&["cart-s-a1", "cart-s-a2"])
    );
    assert!(cartridges.cartridges.iter().all(|c| c.clinic_id == "c01"));
    let operators = c
        .list_operators(req(pb::ListOperatorsRequest::default(), MANAGER))
        .await
        .expect("operators")
        .into_inner()
        .operators;
    assert_eq!(operators.len(), 1);
    assert_eq!(
        (
            operators[0].operator_id.as_str(),
            operators[0].sessions,
            operators[0].violations,
            operators[0].qualification.as_str()
        ),
        ("op-c01-1", 2, 1, "clinician")
    );
    let get = |device: &str, session: &str| pb::GetSessionRequest {
        device_id: device.into(),
        session_id: session.into(),
        max_points: 2,
    };
    assert_eq!(
        code(c.get_session(req(get("pen-b", "s-b1"), MANAGER))).await,
        Code::NotFound,
        "another clinic's session is answered like a missing one"
    );
    let detail = c
        .get_session(req(get("pen-a", "s-a2"), MANAGER))
        .await
        .expect("session")
        .into_inner();
    assert_eq!(detail.timeline.len(), 2, "downsampled to max_points");
    assert!(
        detail
            .timeline
            .iter()
            .any(|p| p.depth_mm == 1.4 && p.exceeded),
        "the deepest point survives"
    );
    let s = detail.session.expect("session");
    assert_eq!(
        (s.state.as_str(), s.close_reason.as_str(), s.exceeded),
        ("closed", "ended", true)
    );
    assert_eq!(s.evidence.expect("evidence").peak_depth_mm, 1.4);
    assert_eq!(
        code(c.get_session(req(get("pen-a", "no-such"), MANAGER))).await,
        Code::NotFound
    );
    let (csv, last) = export(&mut c, req(export_req(None, "csv", true), MANAGER)).await;
    assert!(last.chain_ok);
    assert_eq!(csv_sessions(&csv), set(&["s-a1", "s-a2"]));
    let fields: std::collections::BTreeSet<&str> = csv.lines().flat_map(|l| l.split(',')).collect();
    for other in ["c02", "pen-b", "op-c02-1", "s-b1", "s-b2"] {
        assert!(!fields.contains(other), "{other} in {csv}");
    }
    assert_eq!(
        code(c.export_depth_log(req(
            export_req(filter(&["c02"], false), "csv", false),
            MANAGER
        )))
        .await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(c.verify_audit_chain(req(pb::VerifyRequest {}, MANAGER))).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(c.list_quarantine(req(pb::ListQuarantineRequest::default(), MANAGER))).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(c.validate_policy(req(
            pb::ValidatePolicyRequest {
                text: POLICY.into()
            },
            MANAGER
        )))
        .await,
        Code::PermissionDenied
    );
    let policy = c
        .get_policy(req(pb::GetPolicyRequest {}, MANAGER))
        .await
        .expect("policy")
        .into_inner();
    assert!(
        !policy.version.is_empty() && policy.text.is_empty(),
        "the policy text names other clinics' staff"
    );
    let mut fleet = c
        .watch_fleet(req(pb::WatchFleetRequest::default(), MANAGER))
        .await
        .expect("fleet")
        .into_inner();
    let first = fleet.next().await.expect("current state").expect("ok");
    assert_eq!(
        (first.device_id.as_str(), first.clinic_id.as_str()),
        ("pen-a", "c01")
    );
    drop(fleet);
}
