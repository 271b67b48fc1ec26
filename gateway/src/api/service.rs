//! The `penwatch.v1.PenWatch` rpcs: every call authenticates its bearer token, checks the
//! role, confines its filter to the token's clinics, and shows operator ids as the role may
//! see them. The `impl PenWatch` below is a table of the rpcs;
//! their bodies are per area: `access` (WhoAmI, the access log and its recording), `fleet`
//! (pens and live samples), `sessions`, `violations`, `cartridges`, `operators`, `policy`,
//! `audit` (quarantine, export, chain verification) and `reviews` (signed reviews, the
//! policy history).

mod access;
mod audit;
mod cartridges;
mod fleet;
mod operators;
mod policy;
mod reviews;
mod sessions;
mod violations;

use std::sync::Arc;

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::pen_watch_server::PenWatch;
use tonic::{Request, Response, Status};

use super::Shared;
use super::auth::{Auth, Caller, Role};
use super::convert;
use super::stream::Stream;
use crate::journal::queries::Cursor;
use crate::journal::{self, Reader};
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

/// Keeps the first `size` of `rows` (read as one more than a page) and returns the token of
/// the page after them ("" when there is none).
fn next_page<T>(rows: &mut Vec<T>, size: u32, cursor: impl Fn(&T) -> Cursor) -> String {
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    match rows.last() {
        Some(last) if more => convert::page_token(&cursor(last)),
        _ => String::new(),
    }
}

fn limit(requested: u32) -> u32 {
    if requested == 0 {
        DEFAULT_LIMIT
    } else {
        requested.min(MAX_LIMIT)
    }
}

#[tonic::async_trait]
impl PenWatch for Api {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        self.whoami(request).await
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        self.devices(request).await
    }

    type WatchFleetStream = Stream<pb::DeviceState>;

    async fn watch_fleet(
        &self,
        request: Request<pb::WatchFleetRequest>,
    ) -> Result<Response<Self::WatchFleetStream>, Status> {
        self.fleet_stream(request).await
    }

    type StreamSamplesStream = Stream<pb::JudgedSample>;

    async fn stream_samples(
        &self,
        request: Request<pb::StreamSamplesRequest>,
    ) -> Result<Response<Self::StreamSamplesStream>, Status> {
        self.samples_stream(request).await
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        self.sessions(request).await
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::SessionDetail>, Status> {
        self.session(request).await
    }

    async fn list_violations(
        &self,
        request: Request<pb::ListViolationsRequest>,
    ) -> Result<Response<pb::ListViolationsResponse>, Status> {
        self.violations(request).await
    }

    type WatchViolationsStream = Stream<pb::Violation>;

    async fn watch_violations(
        &self,
        request: Request<pb::WatchViolationsRequest>,
    ) -> Result<Response<Self::WatchViolationsStream>, Status> {
        self.violations_stream(request).await
    }

    async fn list_cartridges(
        &self,
        request: Request<pb::ListCartridgesRequest>,
    ) -> Result<Response<pb::ListCartridgesResponse>, Status> {
        self.cartridges(request).await
    }

    async fn list_operators(
        &self,
        request: Request<pb::ListOperatorsRequest>,
    ) -> Result<Response<pb::ListOperatorsResponse>, Status> {
        self.operators(request).await
    }

    async fn list_quarantine(
        &self,
        request: Request<pb::ListQuarantineRequest>,
    ) -> Result<Response<pb::ListQuarantineResponse>, Status> {
        self.quarantine(request).await
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicyInfo>, Status> {
        self.policy_info(request).await
    }

    async fn validate_policy(
        &self,
        request: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        self.validate(request).await
    }

    type ExportDepthLogStream = Stream<pb::ExportChunk>;

    async fn export_depth_log(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportDepthLogStream>, Status> {
        self.export(request).await
    }

    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        self.verify(request).await
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
        self.access_log(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
