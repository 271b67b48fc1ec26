//! The gRPC API over a real socket, against a real broker and gateway: every rpc with and
//! without the right token and scope, pseudonyms for manufacturers, live violations, the
//! compliance export, health and reflection; and the `penwatch` command line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::pen_watch_client::PenWatchClient;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry};
use penwatch_tests::{Gateway, Mosquitto, free_port};
use prost::Message;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request};

const MANAGER: &str = "token-manager-c01-0123456789";
const MAKER: &str = "token-manufacturer-0123456789";
const REVIEWER: &str = "token-reviewer-0123456789";
const ADMIN: &str = "token-admin-0123456789";

const POLICY: &str = r#"
[[operators]]
id = "op-c01-1"
clinic = "c01"
qualification = "clinician"

[[operators]]
id = "op-c02-1"
clinic = "c02"
qualification = "aesthetic_practitioner"

[[devices]]
id = "pen-b"
clinic = "c02"
class = "medical"
"#;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

struct Setup {
    _broker: Mosquitto,
    gateway: Gateway,
    _dir: tempfile::TempDir,
    api: String,
    mqtt: AsyncClient,
    base_ms: i64,
    seq: std::collections::HashMap<String, u64>,
    published: usize,
}

fn write_config(dir: &Path) -> (PathBuf, PathBuf) {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\npseudonym_key = \"test-pseudonym-key-0123\"\n\
             [[api.tokens]]\nname = \"mgr-c01\"\ntoken = \"{MANAGER}\"\nrole = \"clinic-manager\"\nclinics = [\"c01\"]\n\
             [[api.tokens]]\nname = \"maker\"\ntoken = \"{MAKER}\"\nrole = \"manufacturer\"\n\
             [[api.tokens]]\nname = \"reviewer\"\ntoken = \"{REVIEWER}\"\nrole = \"reviewer\"\n\
             [[api.tokens]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n"
        ),
    )
    .expect("config");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).expect("policy");
    (config, policy)
}

impl Setup {
    async fn start() -> Self {
        let broker = Mosquitto::start().expect("broker");
        let dir = tempfile::tempdir().expect("temp dir");
        let (config, policy) = write_config(dir.path());
        let gateway = Gateway::start(
            &broker.url(),
            dir.path(),
            &[
                "--config",
                &config.display().to_string(),
                "--policy",
                &policy.display().to_string(),
            ],
        )
        .expect("gateway");
        let mut options = MqttOptions::new("grpc-test-pub", "127.0.0.1", broker.port());
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (mqtt, mut eventloop) = AsyncClient::new(options, 100);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        let api = format!("http://127.0.0.1:{}", gateway.api_port());
        Self {
            _broker: broker,
            gateway,
            _dir: dir,
            api,
            mqtt,
            base_ms: now_ms() - 3_600_000,
            seq: Default::default(),
            published: 0,
        }
    }

    /// Publishes one session: start, the given depths, end.
    async fn session(
        &mut self,
        clinic: &str,
        device: &str,
        class: DeviceClass,
        operator: &str,
        session: &str,
        depths: &[f64],
    ) {
        let mut events = vec![(Event::SessionStart, 0.0)];
        events.extend(depths.iter().map(|d| (Event::Sample, *d)));
        events.push((Event::SessionEnd, 0.0));
        let mut strokes = 0;
        for (event, depth) in events {
            let seq = self.seq.entry(device.to_owned()).or_insert(0);
            *seq += 1;
            if event == Event::Sample {
                strokes += 120;
            }
            let t = Telemetry {
                device_id: device.into(),
                clinic_id: clinic.into(),
                device_class: class.into(),
                model: "Pen-X".into(),
                firmware: "2.1.0".into(),
                operator_id: operator.into(),
                session_id: session.into(),
                cartridge_id: format!("cart-{session}"),
                cartridge_model: "N12".into(),
                seq: *seq,
                timestamp_ms: self.base_ms + *seq as i64 * 1000,
                event: event.into(),
                depth_mm: depth,
                session_strokes: strokes,
                cartridge_strokes: strokes,
                speed_hz: 120.0,
                battery_pct: 80.0,
                zone: pb::Zone::Cheek.into(),
            };
            self.mqtt
                .publish(
                    format!("clinics/{clinic}/pens/{device}/telemetry"),
                    QoS::AtLeastOnce,
                    false,
                    t.encode_to_vec(),
                )
                .await
                .expect("publish");
            self.published += 1;
        }
    }

    fn wait_committed(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.gateway.metric("penwatch_messages_received_total") < self.published as f64 {
            assert!(
                Instant::now() < deadline,
                "gateway did not commit; log:\n{}",
                self.gateway.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn client(&self) -> PenWatchClient<Channel> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match PenWatchClient::connect(self.api.clone()).await {
                Ok(c) => return c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "API not reachable: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The fixed data set: c01 one good and one exceeded session, c02 the same.
    async fn publish_fixture(&mut self) {
        self.session(
            "c01",
            "pen-a",
            DeviceClass::Salon,
            "op-c01-1",
            "s-a1",
            &[0.5, 0.8],
        )
        .await;
        self.session(
            "c01",
            "pen-a",
            DeviceClass::Salon,
            "op-c01-1",
            "s-a2",
            &[0.5, 1.4, 0.5],
        )
        .await;
        self.session(
            "c02",
            "pen-b",
            DeviceClass::Medical,
            "op-c02-1",
            "s-b1",
            &[0.75, 1.2],
        )
        .await;
        self.session(
            "c02",
            "pen-b",
            DeviceClass::Medical,
            "op-c02-1",
            "s-b2",
            &[0.5],
        )
        .await;
        self.wait_committed();
    }
}

fn req<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

fn maybe<T>(token: Option<&str>, message: T) -> Request<T> {
    match token {
        Some(t) => req(message, t),
        None => Request::new(message),
    }
}

fn filter(clinics: &[&str], only_exceeded: bool) -> Option<pb::Filter> {
    Some(pb::Filter {
        clinic_ids: clinics.iter().map(|c| (*c).to_owned()).collect(),
        only_exceeded,
        ..pb::Filter::default()
    })
}

fn sessions_req(f: Option<pb::Filter>) -> pb::ListSessionsRequest {
    pb::ListSessionsRequest {
        filter: f,
        page_size: 0,
        page_token: String::new(),
    }
}

fn export_req(f: Option<pb::Filter>, format: &str, samples: bool) -> pb::ExportRequest {
    pb::ExportRequest {
        filter: f,
        format: format.into(),
        include_samples: samples,
    }
}

async fn export(
    c: &mut PenWatchClient<Channel>,
    r: Request<pb::ExportRequest>,
) -> (String, pb::ExportChunk) {
    let mut stream = c.export_depth_log(r).await.expect("export").into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        data.extend_from_slice(&chunk.data);
        if chunk.last {
            return (String::from_utf8(data).expect("utf-8"), chunk);
        }
    }
    panic!("export ended without its last chunk");
}

/// Session ids of the `record=session` rows of a CSV export.
fn csv_sessions(csv: &str) -> BTreeSet<String> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let (record, session) = (col("record"), col("session_id"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[record] == "session")
        .map(|f| f[session].to_owned())
        .collect()
}

fn ids<'a>(it: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    it.map(str::to_owned).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

macro_rules! code {
    ($call:expr) => {
        match $call.await {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        }
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_checks_token_role_and_scope() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    let mut c = setup.client().await;

    // Health and reflection answer without a token.
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

    // Without a token, or with a wrong one, every rpc is UNAUTHENTICATED.
    for token in [None, Some("not-a-configured-token")] {
        let expect = Code::Unauthenticated;
        assert_eq!(
            code!(c.who_am_i(maybe(token, pb::WhoAmIRequest {}))),
            expect
        );
        assert_eq!(
            code!(c.list_devices(maybe(token, pb::ListDevicesRequest::default()))),
            expect
        );
        assert_eq!(
            code!(c.watch_fleet(maybe(token, pb::WatchFleetRequest::default()))),
            expect
        );
        assert_eq!(
            code!(c.stream_samples(maybe(token, pb::StreamSamplesRequest::default()))),
            expect
        );
        assert_eq!(
            code!(c.list_sessions(maybe(token, sessions_req(None)))),
            expect
        );
        assert_eq!(
            code!(c.get_session(maybe(
                token,
                pb::GetSessionRequest {
                    device_id: "pen-a".into(),
                    session_id: "s-a1".into(),
                    max_points: 0
                }
            ))),
            expect
        );
        assert_eq!(
            code!(c.list_violations(maybe(token, pb::ListViolationsRequest::default()))),
            expect
        );
        assert_eq!(
            code!(c.watch_violations(maybe(token, pb::WatchViolationsRequest::default()))),
            expect
        );
        assert_eq!(
            code!(c.list_cartridges(maybe(token, pb::ListCartridgesRequest::default()))),
            expect
        );
        assert_eq!(
            code!(c.list_operators(maybe(token, pb::ListOperatorsRequest::default()))),
            expect
        );
        assert_eq!(
            code!(c.list_quarantine(maybe(token, pb::ListQuarantineRequest::default()))),
            expect
        );
        assert_eq!(
            code!(c.get_policy(maybe(token, pb::GetPolicyRequest {}))),
            expect
        );
        assert_eq!(
            code!(c.validate_policy(maybe(
                token,
                pb::ValidatePolicyRequest {
                    text: String::new()
                }
            ))),
            expect
        );
        assert_eq!(
            code!(c.export_depth_log(maybe(token, export_req(None, "csv", false)))),
            expect
        );
        assert_eq!(
            code!(c.verify_audit_chain(maybe(token, pb::VerifyRequest {}))),
            expect
        );
    }

    // Clinic manager of c01: never a c02 row; c02 asked for explicitly is PERMISSION_DENIED.
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
        code!(c.list_sessions(req(sessions_req(filter(&["c02"], false)), MANAGER))),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(c.list_sessions(req(sessions_req(filter(&["c01", "c02"], false)), MANAGER))),
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
        code!(c.get_session(req(get("pen-b", "s-b1"), MANAGER))),
        Code::PermissionDenied
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
        code!(c.get_session(req(get("pen-a", "no-such"), MANAGER))),
        Code::NotFound
    );
    let (csv, last) = export(&mut c, req(export_req(None, "csv", true), MANAGER)).await;
    assert!(last.chain_ok);
    assert_eq!(csv_sessions(&csv), set(&["s-a1", "s-a2"]));
    assert!(!csv.contains("c02"), "{csv}");
    assert_eq!(
        code!(c.export_depth_log(req(
            export_req(filter(&["c02"], false), "csv", false),
            MANAGER
        ))),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(c.verify_audit_chain(req(pb::VerifyRequest {}, MANAGER))),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(c.list_quarantine(req(pb::ListQuarantineRequest::default(), MANAGER))),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(c.validate_policy(req(
            pb::ValidatePolicyRequest {
                text: POLICY.into()
            },
            MANAGER
        ))),
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

    // Manufacturer: the whole fleet, operator pseudonyms only, no operators, no export.
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
        code!(c.list_operators(req(pb::ListOperatorsRequest::default(), MAKER))),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(c.export_depth_log(req(export_req(None, "csv", false), MAKER))),
        Code::PermissionDenied
    );
    let by_op = pb::Filter {
        operator_ids: vec!["op-c01-1".into()],
        ..pb::Filter::default()
    };
    assert_eq!(
        code!(c.list_sessions(req(sessions_req(Some(by_op)), MAKER))),
        Code::PermissionDenied
    );

    // Reviewer: everything, paged; export of only exceeded sessions lists exactly those.
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
        code!(c.list_sessions(req(
            pb::ListSessionsRequest {
                filter: None,
                page_size: 1,
                page_token: "forged".into()
            },
            REVIEWER
        ))),
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
    assert_eq!(verify.head, last.chain_head);
    assert_eq!(verify.entries, 6, "four sessions and two violations");
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
        code!(c.validate_policy(req(
            pb::ValidatePolicyRequest {
                text: POLICY.into()
            },
            REVIEWER
        ))),
        Code::PermissionDenied
    );
    let operators = c
        .list_operators(req(pb::ListOperatorsRequest::default(), REVIEWER))
        .await
        .expect("operators")
        .into_inner()
        .operators;
    assert_eq!(operators.len(), 2);

    // Admin: policy validation.
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

async fn next_violation(stream: &mut tonic::Streaming<pb::Violation>) -> pb::Violation {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a violation within 10 s")
        .expect("stream open")
        .expect("ok")
}

#[tokio::test(flavor = "multi_thread")]
async fn live_streams_deliver_violations_and_samples_in_scope() {
    let mut setup = Setup::start().await;
    let mut c = setup.client().await;
    let mut reviewer = c
        .watch_violations(req(pb::WatchViolationsRequest::default(), REVIEWER))
        .await
        .expect("watch")
        .into_inner();
    let mut manager = c
        .watch_violations(req(pb::WatchViolationsRequest::default(), MANAGER))
        .await
        .expect("watch")
        .into_inner();
    let mut samples = c
        .stream_samples(req(pb::StreamSamplesRequest::default(), MAKER))
        .await
        .expect("samples")
        .into_inner();
    let mut fleet = c
        .watch_fleet(req(pb::WatchFleetRequest::default(), MAKER))
        .await
        .expect("fleet")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;

    setup
        .session(
            "c02",
            "pen-b",
            DeviceClass::Medical,
            "op-c02-1",
            "s-b9",
            &[0.5, 1.3],
        )
        .await;
    let v = next_violation(&mut reviewer).await;
    assert_eq!(
        (
            v.session_id.as_str(),
            v.clinic_id.as_str(),
            v.operator_id.as_str()
        ),
        ("s-b9", "c02", "op-c02-1")
    );
    let e = v.evidence.expect("evidence");
    assert_eq!(
        (e.peak_depth_mm, e.limit_mm, e.binding_rule.as_str()),
        (1.3, 1.0, "operator")
    );
    assert!(v.committed_ms > 0);

    setup
        .session(
            "c01",
            "pen-a",
            DeviceClass::Salon,
            "op-c01-1",
            "s-a9",
            &[1.1],
        )
        .await;
    let v = next_violation(&mut manager).await;
    assert_eq!(
        (v.session_id.as_str(), v.clinic_id.as_str()),
        ("s-a9", "c01"),
        "c02's violation never reaches c01's manager"
    );

    let sample = tokio::time::timeout(Duration::from_secs(10), samples.next())
        .await
        .expect("a sample")
        .expect("open")
        .expect("ok");
    let t = sample.telemetry.expect("telemetry");
    assert!(
        t.operator_id.starts_with("op-") && t.operator_id != "op-c02-1",
        "{}",
        t.operator_id
    );
    let device = tokio::time::timeout(Duration::from_secs(10), fleet.next())
        .await
        .expect("a fleet change")
        .expect("open")
        .expect("ok");
    assert!(!device.operator_id.contains("c0"), "{}", device.operator_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn penwatch_cli_lists_exceeded_sessions_and_reports_auth_failures() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    let run = |args: &[&str], token: &str| {
        std::process::Command::new(&cli)
            .args(args)
            .env("PENWATCH_GATEWAY", &setup.api)
            .env("PENWATCH_TOKEN", token)
            .output()
            .expect("run penwatch")
    };
    let out = run(
        &["sessions", "--exceeded", "--since", "24h", "--json"],
        REVIEWER,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sessions: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON array");
    let found: BTreeSet<String> = sessions
        .iter()
        .filter_map(|s| s["session_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(found, set(&["s-a2", "s-b1"]));

    let out = run(&["sessions", "--json"], "wrong-token-wrong-token");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["verify"], MANAGER);
    assert_eq!(
        out.status.code(),
        Some(3),
        "permission denied is an auth failure too"
    );
    let out = run(&["verify"], REVIEWER);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["export", "--exceeded", "--format", "csv"], REVIEWER);
    assert!(out.status.success());
    assert_eq!(
        csv_sessions(&String::from_utf8_lossy(&out.stdout)),
        set(&["s-a2", "s-b1"])
    );
    let out = run(&["sessions", "--since", "last tuesday"], REVIEWER);
    assert_eq!(out.status.code(), Some(2));
    let unreachable = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let out = std::process::Command::new(&cli)
        .args(["--gateway", &unreachable, "fleet"])
        .output()
        .expect("run penwatch");
    assert_eq!(out.status.code(), Some(4));
}

#[tokio::test(flavor = "multi_thread")]
async fn penwatch_cli_reaches_a_tls_gateway_and_names_what_fails() {
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             [[api.tokens]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n",
            tls.join("server.pem").display(),
            tls.join("server.key").display()
        ),
    )
    .expect("config");
    let gateway = Gateway::start(
        &broker.url(),
        dir.path(),
        &["--config", &config.display().to_string()],
    )
    .expect("gateway");
    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    let run = |gateway: &str, token: &str, ca_cert: Option<&Path>| {
        let mut cmd = std::process::Command::new(&cli);
        cmd.args(["whoami", "--json"])
            .env("PENWATCH_GATEWAY", gateway)
            .env("PENWATCH_TOKEN", token)
            .env_remove("PENWATCH_CA_CERT");
        if let Some(ca) = ca_cert {
            cmd.env("PENWATCH_CA_CERT", ca);
        }
        let out = cmd.output().expect("run penwatch");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        )
    };
    let https = format!("https://127.0.0.1:{}", gateway.api_port());
    let ca = tls.join("ca.pem");

    let (code, stdout, stderr) = run(&https, ADMIN, Some(&ca));
    assert_eq!(code, Some(0), "{stderr}");
    let who: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(who["role"], "admin", "{stdout}");

    let (code, _, stderr) = run(&https, ADMIN, None);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("TLS handshake"), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(!stderr.contains("is it running"), "{stderr}");

    let (code, _, stderr) = run(&https, "", Some(&ca));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("no token"), "{stderr}");
}
