//! `penwatch report`: a clinic's period as one self-contained HTML page a reviewer reads and
//! prints, built from what the gRPC API serves a reviewer (`gather`), rendered by
//! [`html::render`] (pure).

mod chart;
pub mod html;

use std::collections::{BTreeSet, HashMap};

use penwatch_proto::client::Client;
use penwatch_proto::v1 as pb;
use tonic::Status;

/// Most timeline points drawn per chart (each keeps its stretch's deepest sample).
const CHART_POINTS: u32 = 600;

/// Sessions asked for per page.
const PAGE: u32 = 1000;

/// A policy version in force during the period, or named by its verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyVersion {
    /// Version id (a hash of its text).
    pub version: String,
    /// When it came into force and went out of force (`None`: in force now), Unix ms; `None`
    /// for a version the verdicts name but the gateway's history does not hold.
    pub in_force: Option<(i64, Option<i64>)>,
    /// Its text ("" for the built-in defaults); `None` when the gateway does not serve it.
    pub text: Option<String>,
}

/// Everything the report shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The clinic.
    pub clinic: String,
    /// Period start and end (sessions started in it), Unix ms.
    pub from_ms: i64,
    /// Period end, Unix ms.
    pub until_ms: i64,
    /// When the report was made, Unix ms.
    pub generated_ms: i64,
    /// The audit chain verification the report was made against.
    pub verification: pb::VerifyResponse,
    /// The period's sessions, oldest first.
    pub sessions: Vec<pb::Session>,
    /// Depth timelines of the sessions that exceeded, by (device, session).
    pub timelines: HashMap<(String, String), Vec<pb::DepthPoint>>,
    /// Amendments (late data after a session closed) of the sessions that have any, by
    /// (device, session), in order.
    pub amendments: HashMap<(String, String), Vec<pb::Amendment>>,
    /// Operators of the period with their qualification.
    pub operators: Vec<pb::OperatorSummary>,
    /// Policy versions that judged the period's violations, and the one in force.
    pub policies: Vec<PolicyVersion>,
    /// Review signatures (21 CFR 11.50: printed name, time, meaning) whose period overlaps
    /// the report's, newest first.
    pub signatures: Vec<pb::ReviewSignature>,
}

/// Reads the report's data for `clinic` over `[from_ms, until_ms)` from the gateway.
pub async fn gather(
    c: &mut Client,
    clinic: &str,
    from_ms: i64,
    until_ms: i64,
    now_ms: i64,
) -> Result<Report, Status> {
    let filter = pb::Filter {
        clinic_ids: vec![clinic.to_owned()],
        from_ms,
        to_ms: until_ms,
        ..pb::Filter::default()
    };
    let verification = c
        .verify_audit_chain(pb::VerifyRequest {})
        .await?
        .into_inner();
    let mut sessions = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = c
            .list_sessions(pb::ListSessionsRequest {
                filter: Some(filter.clone()),
                page_size: PAGE,
                page_token,
            })
            .await?
            .into_inner();
        sessions.extend(r.sessions);
        page_token = r.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    sessions.sort_by(|a, b| {
        (a.started_ms, &a.device_id, &a.session_id).cmp(&(
            b.started_ms,
            &b.device_id,
            &b.session_id,
        ))
    });
    let mut timelines = HashMap::new();
    let mut amendments = HashMap::new();
    for s in sessions.iter().filter(|s| s.exceeded || s.amendments > 0) {
        let detail = c
            .get_session(pb::GetSessionRequest {
                device_id: s.device_id.clone(),
                session_id: s.session_id.clone(),
                max_points: CHART_POINTS,
            })
            .await?
            .into_inner();
        let key = (s.device_id.clone(), s.session_id.clone());
        if !detail.amendments.is_empty() {
            amendments.insert(key.clone(), detail.amendments);
        }
        timelines.insert(key, detail.timeline);
    }
    let operators = c
        .list_operators(pb::ListOperatorsRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner()
        .operators;
    let history = c
        .list_policy_versions(pb::ListPolicyVersionsRequest {})
        .await?
        .into_inner()
        .versions;
    let signatures = c
        .list_reviews(pb::ListReviewsRequest {
            clinic_ids: vec![clinic.to_owned()],
            from_ms,
            until_ms,
            limit: 1000,
        })
        .await?
        .into_inner()
        .reviews;
    Ok(Report {
        clinic: clinic.to_owned(),
        from_ms,
        until_ms,
        generated_ms: now_ms,
        verification,
        policies: policy_versions(&sessions, &history, from_ms, until_ms),
        sessions,
        timelines,
        amendments,
        operators,
        signatures,
    })
}

/// The policy versions in force during `[from_ms, until_ms)`, in the order they came into
/// force, then any other version the period's verdicts name.
pub fn policy_versions(
    sessions: &[pb::Session],
    history: &[pb::PolicyVersion],
    from_ms: i64,
    until_ms: i64,
) -> Vec<PolicyVersion> {
    let entry = |p: &pb::PolicyVersion| PolicyVersion {
        version: p.version.clone(),
        in_force: Some((
            p.in_force_from_ms,
            (p.in_force_until_ms > 0).then_some(p.in_force_until_ms),
        )),
        text: Some(p.text.clone()),
    };
    let mut out: Vec<PolicyVersion> = history
        .iter()
        .filter(|p| {
            p.in_force_from_ms < until_ms
                && (p.in_force_until_ms == 0 || p.in_force_until_ms > from_ms)
        })
        .map(entry)
        .collect();
    let named: BTreeSet<&str> = sessions
        .iter()
        .filter_map(|s| s.evidence.as_ref())
        .flat_map(|e| {
            std::iter::once(e.policy_version.as_str())
                .chain(e.other_excursions.iter().map(|x| x.policy_version.as_str()))
        })
        .filter(|v| !v.is_empty())
        .collect();
    for v in named {
        if out.iter().any(|p| p.version == v) {
            continue;
        }
        out.push(match history.iter().rfind(|p| p.version == v) {
            Some(p) => entry(p),
            None => PolicyVersion {
                version: v.to_owned(),
                in_force: None,
                text: None,
            },
        });
    }
    out
}
