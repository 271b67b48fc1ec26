//! What an auditor takes away: quarantined input (`ListQuarantine`), the depth-log export
//! (`ExportDepthLog`) and the audit chain's verification (`VerifyAuditChain`).

use penwatch_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{AUDIT, Api, PEOPLE, limit};
use crate::api::export::{self, Format};
use crate::api::stream::Stream;

/// Most quarantined messages a page holds: 200 × (4 KiB payload + 512 B topic + 1 KiB reason)
/// stays under 1.2 MiB.
const QUARANTINE_PAGE: u32 = 200;

impl Api {
    /// `ListQuarantine`: the newest quarantined messages before `before_id`, and the total.
    pub(super) async fn quarantine(
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

    /// `ExportDepthLog`: the selection as CSV or JSONL chunks, the last with the chain's state.
    pub(super) async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Stream<pb::ExportChunk>>, Status> {
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

    /// `VerifyAuditChain`: the whole chain re-verified.
    pub(super) async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let caller = self.caller(&request, AUDIT, "VerifyAuditChain")?;
        let v = self.read(|j| j.verify()).await?;
        self.served(&caller, "VerifyAuditChain", request.get_ref(), 1);
        Ok(Response::new(pb::VerifyResponse::from(&v)))
    }
}
