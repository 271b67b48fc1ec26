//! Operators (`ListOperators`): the policy's operators and those seen in sessions, with their
//! qualification, sessions and violations.

use std::collections::BTreeMap;

use penwatch_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Api, PEOPLE};

impl Api {
    /// `ListOperators`: one summary per selected operator.
    pub(super) async fn operators(
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
}
