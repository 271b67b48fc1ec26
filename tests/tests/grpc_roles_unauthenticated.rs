//! The gRPC API without a valid token, over a real socket against a real broker and gateway:
//! health and reflection answer anyone; every other rpc refuses a missing or unknown token.

use penwatch_proto::v1 as pb;
use penwatch_tests::api::{Setup, code, export_req, maybe, sessions_req};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

/// Health and reflection answer without a token.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_answer_without_a_token() {
    let setup = Setup::start().await;
    setup.client().await;

    let mut health = tonic_health::pb::health_client::HealthClient::new(
        Channel::from_shared(setup.api.clone())
            .expect("uri")
            .connect()
            .await
            .expect("health channel"),
    );
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "penwatch.v1.PenWatch".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            Channel::from_shared(setup.api.clone())
                .expect("uri")
                .connect()
                .await
                .expect("reflection channel"),
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers.next().await.expect("one answer").expect("ok");
    let listed = format!("{:?}", answer.message_response);
    assert!(listed.contains("penwatch.v1.PenWatch"), "{listed}");
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");

    // Older clients (grpcurl before 1.8.8, IDEs) ask the v1alpha service.
    use tonic_reflection::pb::v1alpha;
    let mut older = v1alpha::server_reflection_client::ServerReflectionClient::new(
        Channel::from_shared(setup.api.clone())
            .expect("uri")
            .connect()
            .await
            .expect("reflection channel"),
    );
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = older
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let answer = answers.next().await.expect("one answer").expect("ok");
    let listed = format!("{:?}", answer.message_response);
    assert!(listed.contains("penwatch.v1.PenWatch"), "{listed}");
}

/// Without a token, or with a wrong one, every rpc is UNAUTHENTICATED.
#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_refuses_a_missing_or_unknown_token() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    let mut c = setup.client().await;

    for token in [None, Some("not-a-configured-token")] {
        let expect = Code::Unauthenticated;
        assert_eq!(
            code(c.who_am_i(maybe(token, pb::WhoAmIRequest {}))).await,
            expect
        );
        assert_eq!(
            code(c.list_devices(maybe(token, pb::ListDevicesRequest::default()))).await,
            expect
        );
        assert_eq!(
            code(c.watch_fleet(maybe(token, pb::WatchFleetRequest::default()))).await,
            expect
        );
        assert_eq!(
            code(c.stream_samples(maybe(token, pb::StreamSamplesRequest::default()))).await,
            expect
        );
        assert_eq!(
            code(c.list_sessions(maybe(token, sessions_req(None)))).await,
            expect
        );
        assert_eq!(
            code(c.get_session(maybe(
                token,
                pb::GetSessionRequest {
                    device_id: "pen-a".into(),
                    session_id: "s-a1".into(),
                    max_points: 0
                }
            )))
            .await,
            expect
        );
        assert_eq!(
            code(c.list_violations(maybe(token, pb::ListViolationsRequest::default()))).await,
            expect
        );
        assert_eq!(
            code(c.watch_violations(maybe(token, pb::WatchViolationsRequest::default()))).await,
            expect
        );
        assert_eq!(
            code(c.list_cartridges(maybe(token, pb::ListCartridgesRequest::default()))).await,
            expect
        );
        assert_eq!(
            code(c.list_operators(maybe(token, pb::ListOperatorsRequest::default()))).await,
            expect
        );
        assert_eq!(
            code(c.list_quarantine(maybe(token, pb::ListQuarantineRequest::default()))).await,
            expect
        );
        assert_eq!(
            code(c.get_policy(maybe(token, pb::GetPolicyRequest {}))).await,
            expect
        );
        assert_eq!(
            code(c.validate_policy(maybe(
                token,
                pb::ValidatePolicyRequest {
                    text: String::new()
                }
            )))
            .await,
            expect
        );
        assert_eq!(
            code(c.export_depth_log(maybe(token, export_req(None, "csv", false)))).await,
            expect
        );
        assert_eq!(
            code(c.verify_audit_chain(maybe(token, pb::VerifyRequest {}))).await,
            expect
        );
        assert_eq!(
            code(c.sign_review(maybe(
                token,
                pb::SignReviewRequest {
                    clinic_id: "c01".into(),
                    from_ms: 1,
                    until_ms: 2,
                    meaning: "approved".into(),
                    signer: "Someone".into(),
                    head_hash: String::new(),
                }
            )))
            .await,
            expect
        );
        assert_eq!(
            code(c.list_reviews(maybe(token, pb::ListReviewsRequest::default()))).await,
            expect
        );
        assert_eq!(
            code(c.list_policy_versions(maybe(token, pb::ListPolicyVersionsRequest {}))).await,
            expect
        );
    }
}
