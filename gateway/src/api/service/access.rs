//! Who is calling (`WhoAmI`) and what every call did: the access log's recording of each call
//! and its listing (`ListAccessLog`).

use penwatch_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ALL, AUDIT, Api, page_size};
use crate::api::auth::Caller;
use crate::journal;

impl Api {
    /// `WhoAmI`: the caller's name, role and clinics.
    pub(super) async fn whoami(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = self.caller(&request, ALL, "WhoAmI")?;
        Ok(Response::new(pb::WhoAmIResponse {
            role: caller.role.as_str().to_owned(),
            clinic_ids: caller.clinics.clone(),
            name: caller.name.clone(),
        }))
    }

    /// Records a call in the access log, with its outcome.
    pub(super) fn record(
        &self,
        caller: Option<&Caller>,
        rpc: &str,
        request: &impl std::fmt::Debug,
        rows: usize,
        status: &Status,
    ) {
        self.shared.access.record(journal::AccessEntry {
            at_ms: crate::clock::now_ms(),
            token: caller.map_or("-".to_owned(), |c| c.name.clone()),
            role: caller.map_or("-", |c| c.role.as_str()).to_owned(),
            rpc: rpc.to_owned(),
            filter: debug_prefix(request, 256),
            rows: rows as u64,
            outcome: if status.code() == tonic::Code::Ok {
                "ok".to_owned()
            } else {
                format!("{:?}: {}", status.code(), short(status.message(), 128))
            },
        });
    }

    /// `ListAccessLog`: the newest entries before `before_id`.
    pub(super) async fn access_log(
        &self,
        request: Request<pb::ListAccessLogRequest>,
    ) -> Result<Response<pb::ListAccessLogResponse>, Status> {
        let caller = self.caller(&request, AUDIT, "ListAccessLog")?;
        let n = page_size(request.get_ref().limit);
        let before = Some(request.get_ref().before_id).filter(|&id| id > 0);
        let mut rows = self.read(move |j| j.access_log(n + 1, before)).await?;
        let more = rows.len() > n as usize;
        rows.truncate(n as usize);
        self.served(&caller, "ListAccessLog", request.get_ref(), rows.len());
        let next_before_id = match rows.last() {
            Some(last) if more => last.id,
            _ => 0,
        };
        Ok(Response::new(pb::ListAccessLogResponse {
            entries: rows
                .into_iter()
                .map(|r| pb::AccessLogEntry {
                    id: r.id,
                    at_ms: r.entry.at_ms,
                    token_name: r.entry.token,
                    role: r.entry.role,
                    rpc: r.entry.rpc,
                    filter: r.entry.filter,
                    rows: r.entry.rows,
                    outcome: r.entry.outcome,
                })
                .collect(),
            next_before_id,
        }))
    }
}

/// The start of `value`'s debug text, cut like [`short`]; formatting stops at the cut, so a
/// request of megabytes costs the access log no more than a small one.
fn debug_prefix(value: &impl std::fmt::Debug, max: usize) -> String {
    struct Bounded {
        text: String,
        max: usize,
        cut: bool,
    }
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = self.max - self.text.len();
            if s.len() <= room {
                self.text.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&s[..end]);
            self.cut = true;
            Err(std::fmt::Error)
        }
    }
    let mut out = Bounded {
        text: String::new(),
        max,
        cut: false,
    };
    let _ = std::fmt::write(&mut out, format_args!("{value:?}"));
    if out.cut {
        out.text.push('…');
    }
    out.text
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
fn short(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_in_the_access_log_is_its_debug_text_cut_like_any_other_text() {
        let ids: Vec<String> = (0..40_000).map(|i| format!("pen-é{i}")).collect();
        for max in [0, 1, 7, 256] {
            assert_eq!(debug_prefix(&ids, max), short(&format!("{ids:?}"), max));
        }
        assert_eq!(debug_prefix(&"short", 256), "\"short\"");
    }
}
