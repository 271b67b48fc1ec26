//! The rpcs of signed reviews (`SignReview`, `ListReviews`) and of the policy history
//! (`ListPolicyVersions`).

use std::sync::Arc;

use penwatch_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ALL, AUDIT, Api, PEOPLE, page_size};
use crate::api::auth::Caller;
use crate::api::limits;
use crate::journal::{PolicyVersionRow, ReviewRow, SignedBy};
use crate::review;

/// Longest `head_hash` accepted: a SHA-256 in hex.
const HASH_HEX: usize = 64;

fn signature(r: ReviewRow) -> pb::ReviewSignature {
    pb::ReviewSignature {
        id: r.id,
        signer: r.signer,
        token_name: r.token,
        role: r.role,
        meaning: r.meaning,
        clinic_id: r.clinic_id,
        from_ms: r.from_ms,
        until_ms: r.until_ms,
        signed_ms: r.signed_ms,
        head_seq: r.head_seq,
        head_hash: r.head_hash,
    }
}

fn policy_version(p: PolicyVersionRow, with_text: bool) -> pb::PolicyVersion {
    pb::PolicyVersion {
        version: p.version,
        in_force_from_ms: p.from_ms,
        in_force_until_ms: p.until_ms.unwrap_or_default(),
        text: if with_text { p.text } else { String::new() },
    }
}

impl Api {
    /// `SignReview`: every attempt, signed or refused, is in the access log.
    pub(super) async fn sign(
        &self,
        request: Request<pb::SignReviewRequest>,
    ) -> Result<Response<pb::ReviewSignature>, Status> {
        const RPC: &str = "SignReview";
        let caller = self.caller(&request, AUDIT, RPC)?;
        let req = request.into_inner();
        let result = self.try_sign(&caller, &req).await;
        match &result {
            Ok(_) => self.served(&caller, RPC, &req, 1),
            Err(status) => self.record(Some(&caller), RPC, &req, 0, status),
        }
        result.map(Response::new)
    }

    async fn try_sign(
        &self,
        caller: &Arc<Caller>,
        req: &pb::SignReviewRequest,
    ) -> Result<pb::ReviewSignature, Status> {
        limits::check_id("clinic_id", &req.clinic_id)?;
        let request = review::Request::new(
            &req.signer,
            &req.meaning,
            &req.clinic_id,
            req.from_ms,
            req.until_ms,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        caller.check_clinic(&request.clinic_id)?;
        let head = match req.head_hash.as_str() {
            "" => None,
            h if h.len() == HASH_HEX && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(h.to_ascii_lowercase())
            }
            h => {
                return Err(Status::invalid_argument(format!(
                    "head_hash {} is not a SHA-256 in hex ({HASH_HEX} digits)",
                    limits::quote(h)
                )));
            }
        };
        let clinic = request.clinic_id.clone();
        let known = self.policy().names_clinic(&clinic)
            || self.read(move |j| j.clinic_in_journal(&clinic)).await?;
        if !known {
            return Err(Status::invalid_argument(format!(
                "clinic {} is unknown: neither the policy nor the journal names it",
                limits::quote(&request.clinic_id)
            )));
        }
        let by = SignedBy {
            token: caller.name.clone(),
            role: caller.role.as_str().to_owned(),
        };
        let signatures = self.shared.signatures.clone();
        let signed = tokio::task::spawn_blocking(move || {
            signatures.sign(&request, &by, crate::clock::now_ms(), head.as_deref())
        })
        .await
        .map_err(|e| Status::internal(format!("signing task failed: {e}")))?
        .map_err(crate::api::internal)?;
        signed.map(signature).ok_or_else(|| {
            Status::failed_precondition(format!(
                "head_hash {} is not an entry of the audit chain: give the head of an export or \
                 of `penwatch verify`, or none to sign at the current head",
                limits::quote(&req.head_hash)
            ))
        })
    }

    /// `ListReviews`: newest first, within the caller's clinics.
    pub(super) async fn reviews(
        &self,
        request: Request<pb::ListReviewsRequest>,
    ) -> Result<Response<pb::ListReviewsResponse>, Status> {
        let caller = self.caller(&request, PEOPLE, "ListReviews")?;
        let req = request.get_ref();
        if req.from_ms != 0 && req.until_ms != 0 && req.from_ms >= req.until_ms {
            return Err(Status::invalid_argument("from_ms must be before until_ms"));
        }
        let sel = caller.selection(Some(&pb::Filter {
            clinic_ids: req.clinic_ids.clone(),
            from_ms: req.from_ms,
            to_ms: req.until_ms,
            ..pb::Filter::default()
        }))?;
        let n = page_size(req.limit) as usize;
        let rows = self
            .read(move |j| j.reviews(sel.clinics.as_deref(), sel.from_ms, sel.to_ms))
            .await?;
        let reviews: Vec<_> = rows.into_iter().take(n).map(signature).collect();
        self.served(&caller, "ListReviews", req, reviews.len());
        Ok(Response::new(pb::ListReviewsResponse { reviews }))
    }

    /// `ListPolicyVersions`: oldest first; texts for the roles that read policies.
    pub(super) async fn policy_versions(
        &self,
        request: Request<pb::ListPolicyVersionsRequest>,
    ) -> Result<Response<pb::ListPolicyVersionsResponse>, Status> {
        let caller = self.caller(&request, ALL, "ListPolicyVersions")?;
        let rows = self.read(|j| j.policy_history()).await?;
        let with_text = caller.role.reads_policy_text();
        let versions: Vec<_> = rows
            .into_iter()
            .map(|p| policy_version(p, with_text))
            .collect();
        self.served(
            &caller,
            "ListPolicyVersions",
            request.get_ref(),
            versions.len(),
        );
        Ok(Response::new(pb::ListPolicyVersionsResponse { versions }))
    }
}
