//! Sessions: a page of them (`ListSessions`) and one with its timeline and amendments
//! (`GetSession`).

use penwatch_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ALL, Api, next_page, page_size};
use crate::api::{convert, limits};
use crate::journal::queries::{self, Order};

impl Api {
    /// `ListSessions`: a page of the selected sessions, newest first.
    pub(super) async fn sessions(
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
        let next_page_token = next_page(&mut rows, size, queries::StoredSession::cursor);
        self.served(&caller, "ListSessions", req, rows.len());
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: rows.iter().map(|s| convert::session(s, &caller)).collect(),
            next_page_token,
        }))
    }

    /// `GetSession`: one session, its downsampled timeline and its amendments.
    pub(super) async fn session(
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
}
