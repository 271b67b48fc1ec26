//! The policy in force (`GetPolicy`) and a candidate's validation (`ValidatePolicy`).

use penwatch_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ADMIN, ALL, Api};
use crate::policy::Policy;

impl Api {
    /// `GetPolicy`: the version in force, since when, and its text where the role reads it.
    pub(super) async fn policy_info(
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
        // The text names the operators and their qualifications.
        self.served(
            &caller,
            "GetPolicy",
            request.get_ref(),
            usize::from(!text.is_empty()),
        );
        Ok(Response::new(pb::PolicyInfo {
            version,
            text,
            loaded_ms,
        }))
    }

    /// `ValidatePolicy`: whether a text parses, and the version it would be.
    pub(super) async fn validate(
        &self,
        request: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        let caller = self.caller(&request, ADMIN, "ValidatePolicy")?;
        let text = request.into_inner().text;
        // The candidate's size, not its text (operators' names), goes into the log.
        self.served(
            &caller,
            "ValidatePolicy",
            &format_args!("{} bytes", text.len()),
            0,
        );
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
}
