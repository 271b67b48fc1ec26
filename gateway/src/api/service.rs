//! The `penwatch.v1.PenWatch` rpcs: every call authenticates its bearer token, checks the
//! role, confines its filter to the token's clinics, and shows operator ids as the role may
//! see them. Signed reviews and the policy history are in [`reviews`].

mod reviews;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::pen_watch_server::PenWatch;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Shared;
use super::auth::{Auth, Caller, Role};
use super::convert::{self, DeviceExtra};
use super::export::{self, Format};
use super::limits;
use super::stream::{self, FleetTracker, Stream};
use crate::cartridges::{Cartridge, Wear};
use crate::fleet::Device;
use crate::journal::queries::{self, Order, Selection};
use crate::journal::{self, Reader};
use crate::live::LiveEvent;
use crate::policy::Policy;

const ALL: &[Role] = &[
    Role::ClinicManager,
    Role::Manufacturer,
    Role::Reviewer,
    Role::Admin,
];
const PEOPLE: &[Role] = &[Role::ClinicManager, Role::Reviewer, Role::Admin];
const AUDIT: &[Role] = &[Role::Reviewer, Role::Admin];
const ADMIN: &[Role] = &[Role::Admin];

/// Default and largest page of a list.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Default and largest number of cartridges, reuse events and quarantined messages.
const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;
/// Most quarantined messages a page holds: 200 × (4 KiB payload + 512 B topic + 1 KiB reason)
/// stays under 1.2 MiB.
const QUARANTINE_PAGE: u32 = 200;

/// The API service.
pub struct Api {
    auth: Arc<Auth>,
    shared: Shared,
}

impl Api {
    /// The service over these tokens and resources.
    pub fn new(auth: Arc<Auth>, shared: Shared) -> Self {
        Self { auth, shared }
    }

    /// The caller of a request, if its token may call `rpc`; a refused call is recorded in
    /// the access log.
    fn caller<T: std::fmt::Debug>(
        &self,
        request: &Request<T>,
        roles: &[Role],
        rpc: &str,
    ) -> Result<Arc<Caller>, Status> {
        let caller = self
            .auth
            .caller(request.metadata())
            .inspect_err(|status| self.record(None, rpc, request.get_ref(), 0, status))?;
        caller
            .require(roles, rpc)
            .inspect_err(|status| self.record(Some(&caller), rpc, request.get_ref(), 0, status))?;
        Ok(caller)
    }

    /// Records a call that returned `rows` rows (0 for a stream, recorded when it opens).
    fn served(&self, caller: &Caller, rpc: &str, request: &impl std::fmt::Debug, rows: usize) {
        self.record(Some(caller), rpc, request, rows, &Status::ok(""));
    }

    fn record(
        &self,
        caller: Option<&Caller>,
        rpc: &str,
        request: &impl std::fmt::Debug,
        rows: usize,
        status: &Status,
    ) {
        self.shared.access.record(journal::AccessEntry {
            at_ms: crate::clock::now_ms(),
            token: caller.map_or("-".to_owned(), |c| c.name.clone()),
            role: caller.map_or("-", |c| c.role.as_str()).to_owned(),
            rpc: rpc.to_owned(),
            filter: debug_prefix(request, 256),
            rows: rows as u64,
            outcome: if status.code() == tonic::Code::Ok {
                "ok".to_owned()
            } else {
                format!("{:?}: {}", status.code(), short(status.message(), 128))
            },
        });
    }

    fn policy(&self) -> Arc<Policy> {
        self.shared.policy.current()
    }

    async fn read<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Reader) -> journal::Result<T> + Send + 'static,
    {
        self.shared.reader.read(f).await
    }
}

fn page_size(requested: u32) -> u32 {
    if requested == 0 {
        DEFAULT_PAGE
    } else {
        requested.min(MAX_PAGE)
    }
}

fn limit(requested: u32) -> u32 {
    if requested == 0 {
        DEFAULT_LIMIT
    } else {
        requested.min(MAX_LIMIT)
    }
}

/// The selection without its time range (devices are not selected by time).
fn untimed(sel: &Selection) -> Selection {
    Selection {
        from_ms: None,
        to_ms: None,
        ..sel.clone()
    }
}

/// Devices with what the fleet view adds to them.
fn fleet(j: &Reader) -> journal::Result<Vec<(Device, DeviceExtra)>> {
    let mut out = Vec::new();
    for d in j.devices()? {
        let mut extra = DeviceExtra::default();
        if !d.session_id.is_empty()
            && let Some(s) = j.stored_session(&d.device_id, &d.session_id)?
        {
            extra = DeviceExtra::of_session(&s.session);
        }
        if !d.cartridge_id.is_empty()
            && let Some(c) = j.cartridge(&d.cartridge_id)?
        {
            extra.cartridge_wear_pct = c.wear_pct().unwrap_or_default();
        }
        out.push((d, extra));
    }
    Ok(out)
}

fn device_selected(sel: &Selection, d: &Device, extra: Option<&DeviceExtra>) -> bool {
    let exceeded = extra.is_some_and(|e| e.session_id == d.session_id && e.exceeded);
    sel.matches(
        &d.clinic_id,
        &d.device_id,
        &d.operator_id,
        &d.device_class,
        0,
        exceeded,
    )
}

#[tonic::async_trait]
impl PenWatch for Api {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = self.caller(&request, ALL, "WhoAmI")?;
        Ok(Response::new(pb::WhoAmIResponse {
            role: caller.role.as_str().to_owned(),
            clinic_ids: caller.clinics.clone(),
            name: caller.name.clone(),
        }))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let caller = self.caller(&request, ALL, "ListDevices")?;
        let sel = untimed(&caller.selection(request.get_ref().filter.as_ref())?);
        let devices = self.read(fleet).await?;
        let devices = devices
            .iter()
            .filter(|(d, e)| device_selected(&sel, d, Some(e)))
            .map(|(d, e)| convert::device_state(d, Some(e), &caller))
            .collect::<Vec<_>>();
        self.served(&caller, "ListDevices", request.get_ref(), devices.len());
        Ok(Response::new(pb::ListDevicesResponse { devices }))
    }

    type WatchFleetStream = Stream<pb::DeviceState>;

    async fn watch_fleet(
        &self,
        request: Request<pb::WatchFleetRequest>,
    ) -> Result<Response<Self::WatchFleetStream>, Status> {
        let caller = self.caller(&request, ALL, "WatchFleet")?;
        self.served(&caller, "WatchFleet", request.get_ref(), 0);
        let sel = untimed(&caller.selection(request.get_ref().filter.as_ref())?);
        let events = self.shared.live.subscribe();
        let devices = self.read(fleet).await?;
        let initial = devices
            .iter()
            .filter(|(d, e)| device_selected(&sel, d, Some(e)))
            .map(|(d, e)| convert::device_state(d, Some(e), &caller))
            .collect();
        let extras: HashMap<String, DeviceExtra> =
            devices.into_iter().map(|(d, e)| (d.device_id, e)).collect();
        let mut tracker = FleetTracker::new(extras, self.shared.policy.clone());
        let stream =
            stream::forward(
                initial,
                events,
                self.shared.stop.clone(),
                move |event| match event {
                    LiveEvent::Sample {
                        reading, verdict, ..
                    } => {
                        tracker.observe(reading, verdict);
                        Vec::new()
                    }
                    LiveEvent::Device(d) if device_selected(&sel, d, tracker.get(&d.device_id)) => {
                        vec![convert::device_state(d, tracker.get(&d.device_id), &caller)]
                    }
                    _ => Vec::new(),
                },
            );
        Ok(Response::new(stream))
    }

    type StreamSamplesStream = Stream<pb::JudgedSample>;

    async fn stream_samples(
        &self,
        request: Request<pb::StreamSamplesRequest>,
    ) -> Result<Response<Self::StreamSamplesStream>, Status> {
        let caller = self.caller(&request, ALL, "StreamSamples")?;
        self.served(&caller, "StreamSamples", request.get_ref(), 0);
        let sel = caller.selection(request.get_ref().filter.as_ref())?;
        let events = self.shared.live.subscribe();
        let stream =
            stream::forward(
                Vec::new(),
                events,
                self.shared.stop.clone(),
                move |event| match event {
                    LiveEvent::Sample {
                        reading: r,
                        verdict: v,
                        received_ms,
                    } if sel.matches(
                        &r.clinic_id,
                        &r.device_id,
                        &r.operator_id,
                        &v.device_class,
                        r.timestamp_ms,
                        v.exceeded,
                    ) =>
                    {
                        vec![convert::judged_sample(r, v, *received_ms, &caller)]
                    }
                    _ => Vec::new(),
                },
            );
        Ok(Response::new(stream))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = self.caller(&request, ALL, "ListSessions")?;
        let req = request.get_ref();
        let sel = caller.selection(req.filter.as_ref())?;
        let after = convert::parse_page_token(&req.page_token)?;
        let size = page_size(req.page_size);
        let mut rows = self
            .read(move |j| j.sessions_page(&sel, Order::NewestFirst, after.as_ref(), size + 1))
            .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => convert::page_token(&last.cursor()),
            _ => String::new(),
        };
        self.served(&caller, "ListSessions", req, rows.len());
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: rows.iter().map(|s| convert::session(s, &caller)).collect(),
            next_page_token,
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::SessionDetail>, Status> {
        let caller = self.caller(&request, ALL, "GetSession")?;
        let req = request.into_inner();
        if req.device_id.is_empty() || req.session_id.is_empty() {
            return Err(Status::invalid_argument("give device_id and session_id"));
        }
        limits::check_id("device_id", &req.device_id)?;
        limits::check_id("session_id", &req.session_id)?;
        let (device, session) = (req.device_id.clone(), req.session_id.clone());
        // Another clinic's session is answered exactly like a missing one: no existence oracle.
        let stored = self
            .read(move |j| j.stored_session(&device, &session))
            .await?
            .filter(|s| caller.sees_clinic(&s.session.clinic_id))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no session {}/{} in the journal",
                    limits::quote(&req.device_id),
                    limits::quote(&req.session_id)
                ))
            })?;
        let (device, session) = (req.device_id, req.session_id);
        let (points, amendments) = self
            .read(move |j| {
                j.snapshot(|j| {
                    Ok((
                        j.timeline(&device, &session)?,
                        j.amendments(&device, &session)?,
                    ))
                })
            })
            .await?;
        let timeline = queries::downsample(points, req.max_points as usize)
            .into_iter()
            .map(convert::depth_point)
            .collect();
        self.served(
            &caller,
            "GetSession",
            &(&stored.session.device_id, &stored.session.session_id),
            1,
        );
        Ok(Response::new(pb::SessionDetail {
            session: Some(convert::session(&stored, &caller)),
            timeline,
            amendments: amendments.iter().map(convert::amendment).collect(),
        }))
    }

    async fn list_violations(
        &self,
        request: Request<pb::ListViolationsRequest>,
    ) -> Result<Response<pb::ListViolationsResponse>, Status> {
        let caller = self.caller(&request, ALL, "ListViolations")?;
        let req = request.get_ref();
        let sel = caller.selection(req.filter.as_ref())?;
        let after = convert::parse_page_token(&req.page_token)?;
        let size = page_size(req.page_size);
        let mut rows = self
            .read(move |j| j.violations_page(&sel, after.as_ref(), size + 1))
            .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => convert::page_token(&last.cursor()),
            _ => String::new(),
        };
        self.served(&caller, "ListViolations", req, rows.len());
        Ok(Response::new(pb::ListViolationsResponse {
            violations: rows
                .iter()
                .map(|v| convert::violation(v, &caller))
                .collect(),
            next_page_token,
        }))
    }

    type WatchViolationsStream = Stream<pb::Violation>;

    async fn watch_violations(
        &self,
        request: Request<pb::WatchViolationsRequest>,
    ) -> Result<Response<Self::WatchViolationsStream>, Status> {
        let caller = self.caller(&request, ALL, "WatchViolations")?;
        self.served(&caller, "WatchViolations", request.get_ref(), 0);
        let sel = caller.selection(request.get_ref().filter.as_ref())?;
        let events = self.shared.live.subscribe();
        let stream =
            stream::forward(
                Vec::new(),
                events,
                self.shared.stop.clone(),
                move |event| match event {
                    LiveEvent::Violation {
                        session: s,
                        final_,
                        committed_ms,
                        amendment,
                    } if sel.matches(
                        &s.clinic_id,
                        &s.device_id,
                        &s.operator_id,
                        &s.device_class,
                        s.started_ms,
                        true,
                    ) =>
                    {
                        convert::live_violation(s, *final_, *committed_ms, *amendment, &caller)
                            .into_iter()
                            .collect()
                    }
                    _ => Vec::new(),
                },
            );
        Ok(Response::new(stream))
    }

    async fn list_cartridges(
        &self,
        request: Request<pb::ListCartridgesRequest>,
    ) -> Result<Response<pb::ListCartridgesResponse>, Status> {
        let caller = self.caller(&request, ALL, "ListCartridges")?;
        let req = request.get_ref();
        let sel = Selection {
            operators: Vec::new(),
            only_exceeded: false,
            ..caller.selection(req.filter.as_ref())?
        };
        let max = limit(req.limit) as usize;
        let (devices, cartridges, reuse) = self
            .read(|j| Ok((j.devices()?, j.cartridges()?, j.reuse_events()?)))
            .await?;
        let devices: HashMap<&str, &Device> =
            devices.iter().map(|d| (d.device_id.as_str(), d)).collect();
        let last_device = |c: &Cartridge| {
            c.sessions
                .last()
                .and_then(|s| s.split_once('/'))
                .and_then(|(d, _)| devices.get(d).copied())
        };
        let selected = |d: Option<&Device>, ts: i64| match d {
            Some(d) => sel.matches(&d.clinic_id, &d.device_id, "", &d.device_class, ts, true),
            None => sel == Selection::default(),
        };
        let mut chosen: Vec<(&Cartridge, Option<&Device>)> = cartridges
            .iter()
            .map(|c| (c, last_device(c)))
            .filter(|(c, d)| selected(*d, c.last_seen_ms))
            .collect();
        let mut groups: BTreeMap<(String, String), pb::CartridgeAggregate> = BTreeMap::new();
        for (c, d) in &chosen {
            let firmware = d.map(|d| d.firmware.clone()).unwrap_or_default();
            let g = groups
                .entry((c.model.clone(), firmware.clone()))
                .or_insert_with(|| pb::CartridgeAggregate {
                    model: c.model.clone(),
                    firmware,
                    ..pb::CartridgeAggregate::default()
                });
            g.cartridges += 1;
            g.mean_wear_pct += c.wear_pct().unwrap_or_default();
            g.warn += u32::from(c.wear == Wear::Warn);
            g.worn += u32::from(c.wear == Wear::Worn);
            g.reused += u32::from(c.reused());
        }
        let by_model_firmware = groups
            .into_values()
            .map(|mut g| {
                g.mean_wear_pct /= f64::from(g.cartridges.max(1));
                g
            })
            .collect();
        chosen.sort_by(|(a, _), (b, _)| {
            b.wear_pct()
                .unwrap_or_default()
                .total_cmp(&a.wear_pct().unwrap_or_default())
                .then_with(|| a.id.cmp(&b.id))
        });
        let cartridges = chosen
            .iter()
            .take(max)
            .map(|(c, d)| convert::cartridge(c, *d))
            .collect::<Vec<_>>();
        let reuse_events = reuse
            .iter()
            .filter(|e| selected(devices.get(e.device_id.as_str()).copied(), e.ts_ms))
            .take(max)
            .map(|e| pb::ReuseEvent {
                cartridge_id: e.cartridge_id.clone(),
                device_id: e.device_id.clone(),
                session_id: e.session_id.clone(),
                timestamp_ms: e.ts_ms,
                detail: e.detail.clone(),
            })
            .collect::<Vec<_>>();
        self.served(
            &caller,
            "ListCartridges",
            req,
            cartridges.len() + reuse_events.len(),
        );
        Ok(Response::new(pb::ListCartridgesResponse {
            cartridges,
            by_model_firmware,
            reuse_events,
        }))
    }

    async fn list_operators(
        &self,
        request: Request<pb::ListOperatorsRequest>,
    ) -> Result<Response<pb::ListOperatorsResponse>, Status> {
        let caller = self.caller(&request, PEOPLE, "ListOperators")?;
        let sel = caller.selection(request.get_ref().filter.as_ref())?;
        let policy = self.policy();
        let query = sel.clone();
        let stats = self.read(move |j| j.operator_stats(&query)).await?;
        let unknown_mm = policy
            .qualifications()
            .map(|(_, mm)| mm)
            .fold(f64::INFINITY, f64::min);
        let mut rows: BTreeMap<(String, String), pb::OperatorSummary> = BTreeMap::new();
        let summary = |clinic: &str, id: &str| match policy.operator(clinic, id) {
            Some(o) => pb::OperatorSummary {
                operator_id: id.to_owned(),
                clinic_id: clinic.to_owned(),
                qualification: o.qualification.clone(),
                max_mm: o.max_mm(),
                known: true,
                ..pb::OperatorSummary::default()
            },
            None => pb::OperatorSummary {
                operator_id: id.to_owned(),
                clinic_id: clinic.to_owned(),
                max_mm: if unknown_mm.is_finite() {
                    unknown_mm
                } else {
                    0.0
                },
                ..pb::OperatorSummary::default()
            },
        };
        let unfiltered = sel.devices.is_empty()
            && sel.classes.is_empty()
            && sel.from_ms.is_none()
            && sel.to_ms.is_none()
            && !sel.only_exceeded;
        if unfiltered {
            for o in policy.operators() {
                if sel.matches(&o.clinic, "", &o.id, "", 0, true) {
                    rows.insert((o.clinic.clone(), o.id.clone()), summary(&o.clinic, &o.id));
                }
            }
        }
        for s in stats {
            let row = rows
                .entry((s.clinic_id.clone(), s.operator_id.clone()))
                .or_insert_with(|| summary(&s.clinic_id, &s.operator_id));
            row.sessions = u32::try_from(s.sessions).unwrap_or(u32::MAX);
            row.violations = u32::try_from(s.violations).unwrap_or(u32::MAX);
            row.max_depth_mm = s.max_depth_mm;
        }
        self.served(&caller, "ListOperators", request.get_ref(), rows.len());
        Ok(Response::new(pb::ListOperatorsResponse {
            operators: rows.into_values().collect(),
        }))
    }

    async fn list_quarantine(
        &self,
        request: Request<pb::ListQuarantineRequest>,
    ) -> Result<Response<pb::ListQuarantineResponse>, Status> {
        let caller = self.caller(&request, AUDIT, "ListQuarantine")?;
        let n = limit(request.get_ref().limit).min(QUARANTINE_PAGE);
        let before = Some(request.get_ref().before_id).filter(|&id| id > 0);
        let (messages, total) = self
            .read(move |j| {
                j.snapshot(|j| Ok((j.quarantine(n + 1, before)?, j.quarantine_total()?)))
            })
            .await?;
        let more = messages.len() > n as usize;
        let messages: Vec<pb::QuarantinedMessage> = messages
            .into_iter()
            .take(n as usize)
            .map(|q| pb::QuarantinedMessage {
                received_ms: q.received_ms,
                topic: q.topic,
                payload: q.payload,
                kind: q.kind,
                reason: q.reason,
                size_bytes: q.size_bytes,
                sha256: q.sha256,
                id: q.id,
            })
            .collect();
        let next_before_id = if more {
            messages.last().map_or(0, |q| q.id)
        } else {
            0
        };
        self.served(&caller, "ListQuarantine", request.get_ref(), messages.len());
        Ok(Response::new(pb::ListQuarantineResponse {
            messages,
            total,
            next_before_id,
        }))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicyInfo>, Status> {
        let caller = self.caller(&request, ALL, "GetPolicy")?;
        let policy = self.policy();
        let version = policy.version().to_owned();
        let query = version.clone();
        let loaded_ms = self
            .read(move |j| j.policy_loaded_ms(&query))
            .await?
            .unwrap_or_default();
        let text = if caller.role.reads_policy_text() {
            policy.text().to_owned()
        } else {
            String::new()
        };
        Ok(Response::new(pb::PolicyInfo {
            version,
            text,
            loaded_ms,
        }))
    }

    async fn validate_policy(
        &self,
        request: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        self.caller(&request, ADMIN, "ValidatePolicy")?;
        let text = request.into_inner().text;
        Ok(Response::new(match Policy::parse(&text) {
            Ok(p) => pb::ValidatePolicyResponse {
                valid: true,
                error: String::new(),
                version: p.version().to_owned(),
            },
            Err(e) => pb::ValidatePolicyResponse {
                valid: false,
                error: e.to_string(),
                version: String::new(),
            },
        }))
    }

    type ExportDepthLogStream = Stream<pb::ExportChunk>;

    async fn export_depth_log(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportDepthLogStream>, Status> {
        let caller = self.caller(&request, PEOPLE, "ExportDepthLog")?;
        self.served(&caller, "ExportDepthLog", request.get_ref(), 0);
        let req = request.into_inner();
        let sel = caller.selection(req.filter.as_ref())?;
        let format = Format::parse(&req.format)?;
        let (tx, rx) = mpsc::channel(8);
        let reader = self.shared.reader.clone();
        let stop = self.shared.stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut emit = |data: Vec<u8>| {
                !stop.is_cancelled()
                    && tx
                        .blocking_send(Ok(pb::ExportChunk {
                            data,
                            ..pb::ExportChunk::default()
                        }))
                        .is_ok()
            };
            let result = reader
                .read_blocking(|j| {
                    Ok(export::export(
                        j,
                        &sel,
                        format,
                        req.include_samples,
                        &caller,
                        &mut emit,
                    ))
                })
                .and_then(|r| r.map_err(export::status));
            let last = match result {
                Ok(Some((v, data))) => Ok(pb::ExportChunk {
                    data,
                    chain_ok: v.ok(),
                    chain_head: v.head,
                    last: true,
                }),
                Ok(None) => return,
                Err(status) => Err(status),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let caller = self.caller(&request, AUDIT, "VerifyAuditChain")?;
        let v = self.read(|j| j.verify()).await?;
        self.served(&caller, "VerifyAuditChain", request.get_ref(), 1);
        let (first_broken, problem) = v.first_broken.clone().unwrap_or((0, String::new()));
        Ok(Response::new(pb::VerifyResponse {
            ok: v.ok(),
            entries: v.entries,
            head: v.head,
            first_broken,
            problem,
            digests_unchecked: v.digests_unchecked,
        }))
    }

    async fn sign_review(
        &self,
        request: Request<pb::SignReviewRequest>,
    ) -> Result<Response<pb::ReviewSignature>, Status> {
        self.sign(request).await
    }

    async fn list_reviews(
        &self,
        request: Request<pb::ListReviewsRequest>,
    ) -> Result<Response<pb::ListReviewsResponse>, Status> {
        self.reviews(request).await
    }

    async fn list_policy_versions(
        &self,
        request: Request<pb::ListPolicyVersionsRequest>,
    ) -> Result<Response<pb::ListPolicyVersionsResponse>, Status> {
        self.policy_versions(request).await
    }

    async fn list_access_log(
        &self,
        request: Request<pb::ListAccessLogRequest>,
    ) -> Result<Response<pb::ListAccessLogResponse>, Status> {
        let caller = self.caller(&request, AUDIT, "ListAccessLog")?;
        let n = page_size(request.get_ref().limit);
        let before = Some(request.get_ref().before_id).filter(|&id| id > 0);
        let mut rows = self.read(move |j| j.access_log(n + 1, before)).await?;
        let more = rows.len() > n as usize;
        rows.truncate(n as usize);
        self.served(&caller, "ListAccessLog", request.get_ref(), rows.len());
        let next_before_id = match rows.last() {
            Some(last) if more => last.id,
            _ => 0,
        };
        Ok(Response::new(pb::ListAccessLogResponse {
            entries: rows
                .into_iter()
                .map(|r| pb::AccessLogEntry {
                    id: r.id,
                    at_ms: r.entry.at_ms,
                    token_name: r.entry.token,
                    role: r.entry.role,
                    rpc: r.entry.rpc,
                    filter: r.entry.filter,
                    rows: r.entry.rows,
                    outcome: r.entry.outcome,
                })
                .collect(),
            next_before_id,
        }))
    }
}

/// The start of `value`'s debug text, cut like [`short`]; formatting stops at the cut, so a
/// request of megabytes costs the access log no more than a small one.
fn debug_prefix(value: &impl std::fmt::Debug, max: usize) -> String {
    struct Bounded {
        text: String,
        max: usize,
        cut: bool,
    }
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = self.max - self.text.len();
            if s.len() <= room {
                self.text.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&s[..end]);
            self.cut = true;
            Err(std::fmt::Error)
        }
    }
    let mut out = Bounded {
        text: String::new(),
        max,
        cut: false,
    };
    let _ = std::fmt::write(&mut out, format_args!("{value:?}"));
    if out.cut {
        out.text.push('…');
    }
    out.text
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
fn short(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_in_the_access_log_is_its_debug_text_cut_like_any_other_text() {
        let ids: Vec<String> = (0..40_000).map(|i| format!("pen-é{i}")).collect();
        for max in [0, 1, 7, 256] {
            assert_eq!(debug_prefix(&ids, max), short(&format!("{ids:?}"), max));
        }
        assert_eq!(debug_prefix(&"short", 256), "\"short\"");
    }

    #[test]
    fn page_sizes_and_limits_are_bounded() {
        assert_eq!(page_size(0), DEFAULT_PAGE);
        assert_eq!(page_size(5), 5);
        assert_eq!(page_size(1_000_000), MAX_PAGE);
        assert_eq!(limit(0), DEFAULT_LIMIT);
        assert_eq!(limit(u32::MAX), MAX_LIMIT);
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let s = crate::api::internal(journal::JournalError::Schema {
            found: 9,
            supported: 1,
        });
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains('9'));
    }
}
