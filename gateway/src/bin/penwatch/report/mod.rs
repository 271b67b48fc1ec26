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

/// A policy version in force during the period.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyVersion {
    /// Version id (a hash of its text).
    pub version: String,
    /// When the gateway loaded it, Unix ms (unknown for a version no longer in force).
    pub loaded_ms: Option<i64>,
    /// Its text ("" for the built-in defaults); `None` when the gateway no longer serves it.
    pub text: Option<String>,
}

/// A review signature over the period (21 CFR 11.50: printed name, time, meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// The signer's printed name.
    pub signer: String,
    /// What the signature means: "reviewed", "approved", ….
    pub meaning: String,
    /// When it was signed, Unix ms.
    pub signed_ms: i64,
    /// The chain head it is bound to.
    pub chain_head: String,
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
    /// Operators of the period with their qualification.
    pub operators: Vec<pb::OperatorSummary>,
    /// Policy versions that judged the period's violations, and the one in force.
    pub policies: Vec<PolicyVersion>,
    /// Review signatures over the period.
    pub signatures: Vec<Signature>,
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
    for s in sessions.iter().filter(|s| s.exceeded) {
        let detail = c
            .get_session(pb::GetSessionRequest {
                device_id: s.device_id.clone(),
                session_id: s.session_id.clone(),
                max_points: CHART_POINTS,
            })
            .await?
            .into_inner();
        timelines.insert((s.device_id.clone(), s.session_id.clone()), detail.timeline);
    }
    let operators = c
        .list_operators(pb::ListOperatorsRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner()
        .operators;
    let current = c.get_policy(pb::GetPolicyRequest {}).await?.into_inner();
    Ok(Report {
        clinic: clinic.to_owned(),
        from_ms,
        until_ms,
        generated_ms: now_ms,
        verification,
        policies: policy_versions(&sessions, &current),
        sessions,
        timelines,
        operators,
        signatures: signatures(),
    })
}

/// The policy versions the period's verdicts name, with the one in force now (with its
/// text); the others' text is not served by the gateway yet.
pub fn policy_versions(sessions: &[pb::Session], current: &pb::PolicyInfo) -> Vec<PolicyVersion> {
    let mut named: BTreeSet<&str> = sessions
        .iter()
        .filter_map(|s| s.evidence.as_ref())
        .flat_map(|e| {
            std::iter::once(e.policy_version.as_str())
                .chain(e.other_excursions.iter().map(|x| x.policy_version.as_str()))
        })
        .filter(|v| !v.is_empty())
        .collect();
    named.remove(current.version.as_str());
    std::iter::once(PolicyVersion {
        version: current.version.clone(),
        loaded_ms: Some(current.loaded_ms),
        text: Some(current.text.clone()),
    })
    .chain(named.into_iter().map(|v| PolicyVersion {
        version: v.to_owned(),
        loaded_ms: None,
        text: None,
    }))
    .collect()
}

/// The review signatures over the period: none are recorded by this gateway yet.
pub fn signatures() -> Vec<Signature> {
    Vec::new()
}
