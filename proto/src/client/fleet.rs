//! [`Fleet`]: several gateways, each owning part of the pens, read as one. Every call goes to
//! each gateway at once with the same token (each scopes it as it always does), and the
//! answers are merged in the order one gateway gives ([`super::merge`]). What a gateway did
//! not answer is kept beside the merged value ([`Merged::failures`], [`super::answers`]), so
//! a view is never partial without saying so. With one gateway every call is that gateway's, unchanged.

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Response, Status};

use super::answers::{GatewayError, Merged, Watch, gather, merged_watch, single};
use super::merge::{self, Listed, Position};
use super::{Client, ClientError, Connector};
use crate::v1::{
    DeviceState, Filter, GetSessionRequest, ListCartridgesRequest, ListCartridgesResponse,
    ListDevicesRequest, ListOperatorsRequest, ListSessionsRequest, ListSessionsResponse,
    ListViolationsRequest, ListViolationsResponse, OperatorSummary, SessionDetail, Violation,
    WatchViolationsRequest,
};

/// Rows a gateway gives for a page size of 0.
const DEFAULT_PAGE: u32 = 100;
/// Largest page a gateway gives.
const MAX_PAGE: u32 = 1000;

/// One gateway of the fleet, connected.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its address, as given.
    pub gateway: String,
    /// Its API.
    pub client: Client,
}

/// Several gateways read as one.
#[derive(Debug, Clone)]
pub struct Fleet {
    members: Vec<Member>,
    timeout: Option<Duration>,
    /// Several gateways are configured, even if fewer are members now: answers are always
    /// merged, and page tokens are the fleet's own.
    several: bool,
}

/// Connects to every gateway at once; each one's outcome, in the order given.
pub async fn connect_each(connectors: &[Connector]) -> Vec<Result<Client, ClientError>> {
    futures::future::join_all(connectors.iter().map(Connector::connect)).await
}

impl Fleet {
    /// Connects to every gateway at once. With one gateway its own error is returned as it
    /// is; with several, any that cannot be reached fails the whole, naming each.
    pub async fn connect(connectors: &[Connector]) -> Result<Self, ClientError> {
        let outcomes = connect_each(connectors).await;
        let total = outcomes.len();
        let mut members = Vec::new();
        let mut failed = Vec::new();
        for (c, outcome) in connectors.iter().zip(outcomes) {
            match outcome {
                Ok(client) => members.push(Member {
                    gateway: c.gateway().to_owned(),
                    client,
                }),
                Err(e) => failed.push(e),
            }
        }
        match failed.len() {
            0 => Ok(Self::new(members)),
            _ if total == 1 => Err(failed.swap_remove(0)),
            n => Err(ClientError::Gateways {
                failed: n,
                total,
                causes: failed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    /// The fleet of these connected gateways.
    pub fn new(members: Vec<Member>) -> Self {
        Self {
            several: members.len() > 1,
            members,
            timeout: None,
        }
    }

    /// The fleet stands for several gateways even when fewer answer now (the others are
    /// down): a page token then stays the fleet's own whichever gateways answer.
    pub fn of_several(mut self) -> Self {
        self.several = true;
        self
    }

    /// The only gateway, when the fleet is one gateway: its answers are passed on unchanged.
    fn only(&self) -> Option<&Member> {
        match self.members.as_slice() {
            [only] if !self.several => Some(only),
            _ => None,
        }
    }

    /// The answers merged by `merge`, or the only gateway's answer as it is.
    fn merged<T: Default>(
        &self,
        answers: Vec<(String, Result<T, Status>)>,
        merge: impl FnOnce(Vec<T>) -> T,
    ) -> Merged<T> {
        let all = gather(answers);
        if self.only().is_some() {
            all.map(|mut one| one.pop().unwrap_or_default())
        } else {
            all.map(merge)
        }
    }

    /// Each gateway's call fails after `timeout` without an answer (none by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The gateways.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// How many gateways.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no gateway.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Asks every gateway at once; each one's address and answer, in order.
    pub async fn ask<T, F, Fut>(&self, f: F) -> Vec<(String, Result<T, Status>)>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let timeout = self.timeout;
        let calls = self.members.iter().map(|m| {
            let call = f(m.client.clone());
            async move {
                let answer = match timeout {
                    Some(t) => tokio::time::timeout(t, call)
                        .await
                        .unwrap_or_else(|_| Err(late(t))),
                    None => call.await,
                };
                (m.gateway.clone(), answer)
            }
        });
        futures::future::join_all(calls).await
    }

    /// Every gateway's pens, by clinic then pen.
    pub async fn list_devices(&self, filter: Option<Filter>) -> Merged<Vec<DeviceState>> {
        let answers = self
            .ask(|mut c| {
                let request = ListDevicesRequest {
                    filter: filter.clone(),
                };
                async move { Ok(c.list_devices(request).await?.into_inner().devices) }
            })
            .await;
        self.merged(answers, merge::devices)
    }

    /// A page of sessions, newest first over every gateway. With several gateways the page
    /// token is the fleet's own (the position of the page's last row).
    pub async fn list_sessions(
        &self,
        filter: Option<Filter>,
        page_size: u32,
        page_token: &str,
    ) -> Merged<ListSessionsResponse> {
        if let Some(only) = self.only() {
            let mut c = only.client.clone();
            let request = ListSessionsRequest {
                filter,
                page_size,
                page_token: page_token.to_owned(),
            };
            let answer = self.timed(c.list_sessions(request)).await;
            return single(&only.gateway, answer);
        }
        self.paged(filter, page_size, page_token, |mut c, request| async move {
            let r = c.list_sessions(request).await?.into_inner();
            Ok((r.sessions, r.next_page_token))
        })
        .await
        .map(|(sessions, next_page_token)| ListSessionsResponse {
            sessions,
            next_page_token,
        })
    }

    /// A page of violations, newest session first over every gateway (page tokens as for
    /// [`Fleet::list_sessions`]).
    pub async fn list_violations(
        &self,
        filter: Option<Filter>,
        page_size: u32,
        page_token: &str,
    ) -> Merged<ListViolationsResponse> {
        if let Some(only) = self.only() {
            let mut c = only.client.clone();
            let request = ListViolationsRequest {
                filter,
                page_size,
                page_token: page_token.to_owned(),
            };
            let answer = self.timed(c.list_violations(request)).await;
            return single(&only.gateway, answer);
        }
        self.paged(filter, page_size, page_token, |mut c, r| async move {
            let request = ListViolationsRequest {
                filter: r.filter,
                page_size: r.page_size,
                page_token: r.page_token,
            };
            let r = c.list_violations(request).await?.into_inner();
            Ok((r.violations, r.next_page_token))
        })
        .await
        .map(|(violations, next_page_token)| ListViolationsResponse {
            violations,
            next_page_token,
        })
    }

    /// Cartridges, their aggregates and reuse events over every gateway.
    pub async fn list_cartridges(
        &self,
        filter: Option<Filter>,
        limit: u32,
    ) -> Merged<ListCartridgesResponse> {
        let answers = self
            .ask(|mut c| {
                let request = ListCartridgesRequest {
                    filter: filter.clone(),
                    limit,
                };
                async move { Ok(c.list_cartridges(request).await?.into_inner()) }
            })
            .await;
        let limit = if limit == 0 { DEFAULT_PAGE } else { limit };
        self.merged(answers, |all| merge::cartridges(all, limit as usize))
    }

    /// Operators over every gateway, by clinic then id.
    pub async fn list_operators(&self, filter: Option<Filter>) -> Merged<Vec<OperatorSummary>> {
        let answers = self
            .ask(|mut c| {
                let request = ListOperatorsRequest {
                    filter: filter.clone(),
                };
                async move { Ok(c.list_operators(request).await?.into_inner().operators) }
            })
            .await;
        self.merged(answers, merge::operators)
    }

    /// One session, from the gateway that holds it. NOT_FOUND only when every gateway says
    /// so: a gateway that did not answer may hold it, so its failure is the answer.
    pub async fn get_session(
        &self,
        request: GetSessionRequest,
    ) -> Result<SessionDetail, GatewayError> {
        let answers = self
            .ask(|mut c| {
                let request = request.clone();
                async move { Ok(c.get_session(request).await?.into_inner()) }
            })
            .await;
        let mut not_found = None;
        let mut failure = None;
        for (gateway, answer) in answers {
            match answer {
                Ok(detail) => return Ok(detail),
                Err(status) if status.code() == Code::NotFound => {
                    not_found.get_or_insert(GatewayError { gateway, status });
                }
                Err(status) => {
                    failure.get_or_insert(GatewayError { gateway, status });
                }
            }
        }
        Err(failure
            .or(not_found)
            .unwrap_or_else(|| no_gateway("GetSession")))
    }

    /// New and updated violations from every gateway, merged as they come.
    pub async fn watch_violations(
        &self,
        filter: Option<Filter>,
    ) -> Result<Watch<Violation>, GatewayError> {
        let opened = self
            .ask(|mut c| {
                let request = WatchViolationsRequest {
                    filter: filter.clone(),
                };
                async move { Ok(c.watch_violations(request).await?.into_inner()) }
            })
            .await;
        merged_watch(opened)
    }

    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Status> {
        let answer = match self.timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .unwrap_or_else(|_| Err(late(t))),
            None => call.await,
        };
        answer.map(Response::into_inner)
    }

    /// A page merged from every gateway: each is asked for the rows after the position in
    /// `page_token` (its session started no later than the position's; the few that started
    /// at the same millisecond are sorted out here), the rows are merged newest first and
    /// cut to the page, and the next token is the position of the page's last row.
    async fn paged<T, F, Fut>(
        &self,
        filter: Option<Filter>,
        page_size: u32,
        page_token: &str,
        fetch: F,
    ) -> Merged<(Vec<T>, String)>
    where
        T: Listed,
        F: Fn(Client, ListSessionsRequest) -> Fut,
        Fut: Future<Output = Result<(Vec<T>, String), Status>>,
    {
        let after: Option<Position> = if page_token.is_empty() {
            None
        } else {
            match serde_json::from_str(page_token) {
                Ok(p) => Some(p),
                Err(_) => {
                    return Merged {
                        value: (Vec::new(), String::new()),
                        answered: 0,
                        failures: vec![GatewayError {
                            gateway: "every gateway".into(),
                            status: Status::invalid_argument("not a page token of this fleet"),
                        }],
                    };
                }
            }
        };
        let size = match page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let mut filter = filter.unwrap_or_default();
        if let Some((started_ms, ..)) = &after {
            let bound = started_ms.saturating_add(1);
            filter.to_ms = if filter.to_ms == 0 {
                bound
            } else {
                filter.to_ms.min(bound)
            };
        }
        let answers = self
            .ask(|c| {
                let (filter, after, fetch) = (filter.clone(), after.clone(), &fetch);
                async move {
                    let mut rows = Vec::new();
                    let mut page_token = String::new();
                    loop {
                        let request = ListSessionsRequest {
                            filter: Some(filter.clone()),
                            page_size: size,
                            page_token,
                        };
                        let (page, next) = fetch(c.clone(), request).await?;
                        rows.extend(
                            page.into_iter()
                                .filter(|r| after.as_ref().is_none_or(|a| r.position() < *a)),
                        );
                        if next.is_empty() {
                            return Ok((rows, false));
                        }
                        if rows.len() >= size as usize {
                            return Ok((rows, true));
                        }
                        page_token = next;
                    }
                }
            })
            .await;
        gather(answers).map(|pages| {
            let more = pages.iter().any(|(_, more)| *more);
            let mut rows: Vec<T> = pages.into_iter().flat_map(|(rows, _)| rows).collect();
            merge::newest_first(&mut rows);
            let more = more || rows.len() > size as usize;
            rows.truncate(size as usize);
            let next = match rows.last() {
                Some(last) if more => serde_json::to_string(&last.position()).unwrap_or_default(),
                _ => String::new(),
            };
            (rows, next)
        })
    }
}

/// A gateway that gave no answer within `t`.
fn late(t: Duration) -> Status {
    Status::deadline_exceeded(format!("no answer within {} s", t.as_secs()))
}

fn no_gateway(what: &str) -> GatewayError {
    GatewayError {
        gateway: "none".into(),
        status: Status::failed_precondition(format!("{what}: no gateway to ask")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn several_unreachable_gateways_are_each_named() {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| format!("http://127.0.0.1:{}", a.port()))
                .expect("free port")
        };
        let (a, b) = (free(), free());
        let connectors: Vec<Connector> = [&a, &b]
            .iter()
            .map(|g| Connector::new(g, Some("t"), None).expect("valid"))
            .collect();
        let e = Fleet::connect(&connectors)
            .await
            .expect_err("nothing there");
        let text = e.to_string();
        assert!(
            text.starts_with("2 of 2 gateways cannot be reached"),
            "{text}"
        );
        assert!(text.contains(&a) && text.contains(&b), "{text}");
        assert!(!e.is_usage());
    }
}
