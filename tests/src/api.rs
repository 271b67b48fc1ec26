//! A gateway with its gRPC API, for the API tests: four tokens (one per role), a small
//! policy, an MQTT publisher for sessions, and helpers for requests and exports.
//!
//! The fixture ([`Setup::publish_fixture`]) is four sessions: at clinic c01, pen-a (salon)
//! with one good session (`s-a1`) and one exceeded (`s-a2`); at c02, pen-b (medical) with
//! one exceeded (`s-b1`) and one good (`s-b2`).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::pen_watch_client::PenWatchClient;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry};
use prost::Message;
use rumqttc::{AsyncClient, QoS};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::{Gateway, Mosquitto};

/// Token of the clinic manager of c01.
pub const MANAGER: &str = "token-manager-c01-0123456789";
/// Token of the manufacturer.
pub const MAKER: &str = "token-manufacturer-0123456789";
/// Token of the reviewer.
pub const REVIEWER: &str = "token-reviewer-0123456789";
/// Token of the admin.
pub const ADMIN: &str = "token-admin-0123456789";

/// The policy in force: one operator per clinic, and pen-b registered at c02.
pub const POLICY: &str = r#"
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

/// A broker, a gateway serving the API, and a publisher.
pub struct Setup {
    _broker: Mosquitto,
    gateway: Gateway,
    _dir: tempfile::TempDir,
    /// The API's URL, `http://127.0.0.1:PORT`.
    pub api: String,
    mqtt: AsyncClient,
    base_ms: i64,
    seq: HashMap<String, u64>,
    published: usize,
}

fn write_config(dir: &Path, api: &str, sections: &str, policy_text: &str) -> (PathBuf, PathBuf) {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\npseudonym_key = \"test-pseudonym-key-0123\"\n{api}\n\
             [[api.tokens]]\nname = \"mgr-c01\"\ntoken = \"{MANAGER}\"\nrole = \"clinic-manager\"\nclinics = [\"c01\"]\n\
             [[api.tokens]]\nname = \"maker\"\ntoken = \"{MAKER}\"\nrole = \"manufacturer\"\n\
             [[api.tokens]]\nname = \"reviewer\"\ntoken = \"{REVIEWER}\"\nrole = \"reviewer\"\n\
             [[api.tokens]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n{sections}"
        ),
    )
    .expect("config");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, policy_text).expect("policy");
    (config, policy)
}

/// Who a published session is from.
#[derive(Clone, Copy)]
struct Pen<'a> {
    clinic: &'a str,
    device: &'a str,
    class: DeviceClass,
    operator: &'a str,
    session: &'a str,
}

impl Setup {
    /// Starts the broker and the gateway (with [`POLICY`]), and connects the publisher.
    pub async fn start() -> Self {
        Self::start_configured("", "", POLICY).await
    }

    /// [`Setup::start`] with more `[api]` settings (TOML lines, e.g. `idle_timeout_s = 2`).
    pub async fn start_with(api: &str) -> Self {
        Self::start_configured(api, "", POLICY).await
    }

    /// [`Setup::start`] with more sections of the configuration (TOML, e.g. `[sessions]` or
    /// `[influx]`).
    pub async fn start_with_sections(sections: &str) -> Self {
        Self::start_configured("", sections, POLICY).await
    }

    /// Starts the broker and the gateway with this policy text, and connects the publisher.
    pub async fn start_with_policy(policy_text: &str) -> Self {
        Self::start_configured("", "", policy_text).await
    }

    async fn start_configured(api: &str, sections: &str, policy_text: &str) -> Self {
        let broker = Mosquitto::start().expect("broker");
        let dir = tempfile::tempdir().expect("temp dir");
        let (config, policy) = write_config(dir.path(), api, sections, policy_text);
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
        let mqtt = crate::publisher(broker.port(), "grpc-test-pub");
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

    /// Publishes one session: start, the given depths (on the cheek), end.
    pub async fn session(
        &mut self,
        clinic: &str,
        device: &str,
        class: DeviceClass,
        operator: &str,
        session: &str,
        depths: &[f64],
    ) {
        let samples: Vec<(f64, pb::Zone)> = depths.iter().map(|d| (*d, pb::Zone::Cheek)).collect();
        self.session_in_zones(clinic, device, class, operator, session, &samples)
            .await;
    }

    /// Publishes one session: start, the given depths each in its zone, end.
    pub async fn session_in_zones(
        &mut self,
        clinic: &str,
        device: &str,
        class: DeviceClass,
        operator: &str,
        session: &str,
        samples: &[(f64, pb::Zone)],
    ) {
        let pen = Pen {
            clinic,
            device,
            class,
            operator,
            session,
        };
        self.publish_session(&pen, samples, true).await;
    }

    /// Publishes the start of a session and the given depths each in its zone, and leaves it
    /// open.
    pub async fn open_session_in_zones(
        &mut self,
        clinic: &str,
        device: &str,
        class: DeviceClass,
        operator: &str,
        session: &str,
        samples: &[(f64, pb::Zone)],
    ) {
        let pen = Pen {
            clinic,
            device,
            class,
            operator,
            session,
        };
        self.publish_session(&pen, samples, false).await;
    }

    async fn publish_session(&mut self, pen: &Pen<'_>, samples: &[(f64, pb::Zone)], end: bool) {
        let Pen {
            clinic,
            device,
            class,
            operator,
            session,
        } = *pen;
        let mut events = vec![(Event::SessionStart, 0.0, pb::Zone::Cheek)];
        events.extend(samples.iter().map(|(d, z)| (Event::Sample, *d, *z)));
        if end {
            events.push((Event::SessionEnd, 0.0, pb::Zone::Cheek));
        }
        let mut strokes = 0;
        for (event, depth, zone) in events {
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
                zone: zone.into(),
            };
            self.publish(&t).await;
        }
    }

    /// Publishes one telemetry message on its pen's topic.
    pub async fn publish(&mut self, t: &Telemetry) {
        let topic = format!("clinics/{}/pens/{}/telemetry", t.clinic_id, t.device_id);
        self.publish_raw(&topic, t.encode_to_vec()).await;
    }

    /// Publishes `payload` as is on `topic` (bad input, say).
    pub async fn publish_raw(&mut self, topic: &str, payload: Vec<u8>) {
        self.mqtt
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
        self.published += 1;
    }

    /// The gateway (its metrics and log).
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The policy file the gateway loads (rewrite it and send `HUP` to reload).
    pub fn policy_path(&self) -> PathBuf {
        self._dir.path().join("policy.toml")
    }

    /// The gateway process, to stop or restart it.
    pub fn gateway_mut(&mut self) -> &mut Gateway {
        &mut self.gateway
    }

    /// Waits until the gateway has committed everything published.
    pub fn wait_committed(&self) {
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

    /// Runs the `penwatch` command line against this gateway with `token`.
    pub fn penwatch(&self, token: &str, args: &[&str]) -> std::process::Output {
        let cli = crate::binary("penwatch").expect("penwatch built");
        std::process::Command::new(cli)
            .args(args)
            .env("PENWATCH_GATEWAY", &self.api)
            .env("PENWATCH_TOKEN", token)
            .output()
            .expect("run penwatch")
    }

    /// Runs the `penwatch` command line as [`Setup::penwatch`] does, asserting it succeeds;
    /// its standard output.
    pub fn penwatch_ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.penwatch(token, args);
        assert!(
            out.status.success(),
            "penwatch {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// A client of the API, once it answers.
    pub async fn client(&self) -> PenWatchClient<Channel> {
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
    pub async fn publish_fixture(&mut self) {
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

/// `message` with `token` as its bearer token.
pub fn req<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

/// `message` with `token` as its bearer token, if any.
pub fn maybe<T>(token: Option<&str>, message: T) -> Request<T> {
    match token {
        Some(t) => req(message, t),
        None => Request::new(message),
    }
}

/// A filter on clinics, optionally on exceeded sessions only.
pub fn filter(clinics: &[&str], only_exceeded: bool) -> Option<pb::Filter> {
    Some(pb::Filter {
        clinic_ids: clinics.iter().map(|c| (*c).to_owned()).collect(),
        only_exceeded,
        ..pb::Filter::default()
    })
}

/// A first page of sessions.
pub fn sessions_req(f: Option<pb::Filter>) -> pb::ListSessionsRequest {
    pb::ListSessionsRequest {
        filter: f,
        page_size: 0,
        page_token: String::new(),
    }
}

/// An export request.
pub fn export_req(f: Option<pb::Filter>, format: &str, samples: bool) -> pb::ExportRequest {
    pb::ExportRequest {
        filter: f,
        format: format.into(),
        include_samples: samples,
    }
}

/// Runs an export to its last chunk: the text and that chunk.
pub async fn export(
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
pub fn csv_sessions(csv: &str) -> BTreeSet<String> {
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

/// The ids, as a set.
pub fn ids<'a>(it: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    it.map(str::to_owned).collect()
}

/// The items, as a set.
pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The status code a call ends with (`Ok` on success).
pub async fn code<T>(call: impl Future<Output = Result<Response<T>, Status>>) -> Code {
    match call.await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}
