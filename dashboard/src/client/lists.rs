//! The lists (pens, sessions, violations, cartridges, operators) and the opened session, read
//! from the gateways that answer, merged as one gateway would list them. Each returns the
//! gateways that failed to answer, for the caller to mark down.

use penwatch_proto::client::{Fleet, GatewayError, Merged};
use penwatch_proto::v1::{Filter, GetSessionRequest};
use tokio::sync::mpsc;
use tonic::Code;

use super::{Failure, MAX_POINTS, PAGE, now_ms, send};
use crate::app::{Msg, Query};

/// A list the token may not see (or the gateway does not offer) is shown empty.
pub(super) fn optional<T>(r: Result<T, Failure>) -> Result<Option<T>, Failure> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Failure::Rpc(s))
            if matches!(s.code(), Code::PermissionDenied | Code::Unimplemented) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether a failure only means the token may not see the list (it is then not shown).
fn refused(e: &GatewayError) -> bool {
    matches!(
        e.status.code(),
        Code::PermissionDenied | Code::Unimplemented
    )
}

/// The merged answer if any gateway gave one; the gateways that failed go to `lost`.
fn usable<T>(m: Merged<T>, lost: &mut Vec<GatewayError>) -> Option<T> {
    lost.extend(m.failures.into_iter().filter(|e| !refused(e)));
    (m.answered > 0).then_some(m.value)
}

/// Loads every list with `query` from `fleet`, which is every gateway if `everyone`.
pub(super) async fn load(
    fleet: &Fleet,
    everyone: bool,
    tx: &mpsc::Sender<Msg>,
    query: &Query,
    manufacturer: bool,
) -> Result<Vec<GatewayError>, Failure> {
    let mut lost = Vec::new();
    let filter = || Some(query.filter_at(now_ms()));
    let devices = fleet.list_devices(None).await;
    let complete = everyone && devices.failures.iter().all(refused);
    if let Some(devices) = usable(devices, &mut lost) {
        send(tx, Msg::FleetList { devices, complete }).await?;
    }
    let sessions = fleet.list_sessions(filter(), PAGE, "").await;
    if let Some(s) = usable(sessions, &mut lost) {
        send(tx, Msg::Sessions(s)).await?;
    }
    let violations = fleet.list_violations(filter(), PAGE, "").await;
    if let Some(v) = usable(violations, &mut lost) {
        send(tx, Msg::Violations(v.violations)).await?;
    }
    let cartridges = Filter {
        operator_ids: Vec::new(),
        only_exceeded: false,
        ..query.filter_at(now_ms())
    };
    let cartridges = fleet.list_cartridges(Some(cartridges), 500).await;
    if let Some(c) = usable(cartridges, &mut lost) {
        send(tx, Msg::Cartridges(c)).await?;
    }
    if !manufacturer {
        let operators = fleet.list_operators(filter()).await;
        if let Some(o) = usable(operators, &mut lost) {
            send(tx, Msg::Operators(o)).await?;
        }
    }
    Ok(lost)
}

/// Loads a further page of sessions.
pub(super) async fn more_sessions(
    fleet: &Fleet,
    tx: &mpsc::Sender<Msg>,
    query: &Query,
    page_token: &str,
) -> Result<Vec<GatewayError>, Failure> {
    let mut lost = Vec::new();
    let page = fleet
        .list_sessions(Some(query.filter_at(now_ms())), PAGE, page_token)
        .await;
    if let Some(page) = usable(page, &mut lost) {
        send(tx, Msg::MoreSessions(page)).await?;
    }
    Ok(lost)
}

/// Loads the opened session from the gateway that holds it.
pub(super) async fn detail(
    fleet: &Fleet,
    tx: &mpsc::Sender<Msg>,
    (device_id, session_id): &(String, String),
) -> Result<Vec<GatewayError>, Failure> {
    let detail = fleet
        .get_session(GetSessionRequest {
            device_id: device_id.clone(),
            session_id: session_id.clone(),
            max_points: MAX_POINTS,
        })
        .await;
    match detail {
        Ok(d) => send(tx, Msg::SessionDetail(Box::new(d))).await?,
        Err(e) if e.status.code() != Code::Unavailable => {
            send(tx, Msg::DetailFailed(Failure::Rpc(e.status).to_string())).await?;
        }
        Err(e) => return Ok(vec![e]),
    }
    Ok(Vec::new())
}
