//! Violations: a page of them (`ListViolations`) and each one as it is raised or grows
//! (`WatchViolations`).

use penwatch_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ALL, Api, next_page, page_size};
use crate::api::convert;
use crate::api::stream::{self, Stream};
use crate::journal::queries::StoredViolation;
use crate::live::LiveEvent;

impl Api {
    /// `ListViolations`: a page of the selected violations, newest session first.
    pub(super) async fn violations(
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
        let next_page_token = next_page(&mut rows, size, StoredViolation::cursor);
        self.served(&caller, "ListViolations", req, rows.len());
        Ok(Response::new(pb::ListViolationsResponse {
            violations: rows
                .iter()
                .map(|v| convert::violation(v, &caller))
                .collect(),
            next_page_token,
        }))
    }

    /// `WatchViolations`: each selected violation as it is raised, grows or closes.
    pub(super) async fn violations_stream(
        &self,
        request: Request<pb::WatchViolationsRequest>,
    ) -> Result<Response<Stream<pb::Violation>>, Status> {
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
}
