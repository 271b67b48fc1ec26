//! The gRPC API as a manufacturer, over a real socket against a real broker and gateway: the
//! whole fleet with operator pseudonyms, but no operators, no export and no operator filter.

use penwatch_proto::v1 as pb;
use penwatch_tests::api::{MAKER, Setup, code, export_req, req, sessions_req};
use tonic::Code;

/// Manufacturer: the whole fleet, operator pseudonyms only, no operators, no export.
#[tokio::test(flavor = "multi_thread")]
async fn a_manufacturer_sees_the_whole_fleet_under_operator_pseudonyms() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    let mut c = setup.client().await;

    let get = |device: &str, session: &str| pb::GetSessionRequest {
        device_id: device.into(),
        session_id: session.into(),
        max_points: 2,
    };
    let sessions = c
        .list_sessions(req(sessions_req(None), MAKER))
        .await
        .expect("sessions")
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 4);
    for s in &sessions {
        assert!(
            s.operator_id.starts_with("op-") && s.operator_id.len() == 13,
            "{}",
            s.operator_id
        );
        assert!(!["op-c01-1", "op-c02-1"].contains(&s.operator_id.as_str()));
    }
    let devices = c
        .list_devices(req(pb::ListDevicesRequest::default(), MAKER))
        .await
        .expect("devices")
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 2);
    let violations = c
        .list_violations(req(pb::ListViolationsRequest::default(), MAKER))
        .await
        .expect("violations")
        .into_inner()
        .violations;
    assert_eq!(violations.len(), 2);
    assert!(violations.iter().all(|v| !v.operator_id.contains("c0")));
    let detail = c
        .get_session(req(get("pen-b", "s-b1"), MAKER))
        .await
        .expect("session")
        .into_inner();
    assert_ne!(detail.session.expect("session").operator_id, "op-c02-1");
    let cartridges = c
        .list_cartridges(req(pb::ListCartridgesRequest::default(), MAKER))
        .await
        .expect("cartridges")
        .into_inner();
    assert_eq!(cartridges.cartridges.len(), 4);
    assert_eq!(cartridges.by_model_firmware.len(), 1);
    assert_eq!(cartridges.by_model_firmware[0].cartridges, 4);
    assert_eq!(
        code(c.list_operators(req(pb::ListOperatorsRequest::default(), MAKER))).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(c.export_depth_log(req(export_req(None, "csv", false), MAKER))).await,
        Code::PermissionDenied
    );
    let by_op = pb::Filter {
        operator_ids: vec!["op-c01-1".into()],
        ..pb::Filter::default()
    };
    assert_eq!(
        code(c.list_sessions(req(sessions_req(Some(by_op)), MAKER))).await,
        Code::PermissionDenied
    );
}
