//! The gateways the dashboard reads and their connections: each one's live streams, which
//! answer and which do not, and the fleet of those that answer for the lists.

use penwatch_proto::client::fleet;
use penwatch_proto::client::{Client, ClientError, Connector, Fleet, GatewayError, Member};
use penwatch_proto::v1::{Filter, StreamSamplesRequest, WatchFleetRequest, WatchViolationsRequest};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tonic::Code;

use super::pump::spawn_pump;
use super::{CALL_TIMEOUT, Failure, call, lists, send};
use crate::app::{Msg, Query};

/// A stream's or call's failure: which gateway, and which of its connections (a failure of
/// an earlier connection to it is stale).
pub(super) type Tag = (usize, u64);

/// One gateway of the fleet and its connection.
pub(super) struct Gateway {
    pub(super) connector: Connector,
    pub(super) client: Option<Client>,
    /// Why it does not answer.
    pub(super) problem: Option<String>,
    /// Its connection's number: failures of an earlier one are ignored.
    pub(super) generation: u64,
    /// Its live streams.
    pub(super) streams: Vec<AbortHandle>,
    /// Its stream of the opened session's samples.
    pub(super) samples: Option<AbortHandle>,
}

impl Gateway {
    pub(super) fn new(connector: &Connector) -> Self {
        Self {
            connector: connector.clone(),
            client: None,
            problem: None,
            generation: 0,
            streams: Vec::new(),
            samples: None,
        }
    }

    /// Closes its connection and streams, with the reason.
    pub(super) fn down(&mut self, problem: String) {
        self.client = None;
        self.problem = Some(problem);
        self.generation += 1;
        self.streams.drain(..).for_each(|h| h.abort());
        if let Some(h) = self.samples.take() {
            h.abort();
        }
    }
}

/// The gateways and what is streamed from them.
pub(super) struct Links<'a> {
    pub(super) gateways: Vec<Gateway>,
    pub(super) tx: &'a mpsc::Sender<Msg>,
    pub(super) streams: JoinSet<()>,
    pub(super) fail_tx: mpsc::Sender<(Tag, Failure)>,
    /// What the UI was last told of the gateways.
    pub(super) reported: Vec<(String, Option<String>)>,
}

impl Links<'_> {
    /// The gateways that answer, as one fleet.
    pub(super) fn fleet(&self) -> Fleet {
        let members = self
            .gateways
            .iter()
            .filter_map(|g| {
                g.client.clone().map(|client| Member {
                    gateway: g.connector.gateway().to_owned(),
                    client: client.max_decoding_message_size(64 * 1024 * 1024),
                })
            })
            .collect();
        let fleet = Fleet::new(members).with_timeout(CALL_TIMEOUT);
        if self.gateways.len() > 1 {
            fleet.of_several()
        } else {
            fleet
        }
    }

    pub(super) fn answering(&self) -> usize {
        self.gateways.iter().filter(|g| g.client.is_some()).count()
    }

    /// Connects the gateways that are not connected and opens their live streams (and the
    /// opened session's samples); the last failure if none answers.
    pub(super) async fn connect(&mut self, open: Option<&(String, String)>) -> Option<Failure> {
        let waiting: Vec<usize> = (0..self.gateways.len())
            .filter(|i| self.gateways[*i].client.is_none())
            .collect();
        let connectors: Vec<Connector> = waiting
            .iter()
            .map(|i| self.gateways[*i].connector.clone())
            .collect();
        let mut last = None;
        for (i, outcome) in waiting
            .into_iter()
            .zip(fleet::connect_each(&connectors).await)
        {
            let opened = match outcome {
                Ok(client) => self.open_streams(i, client, open).await,
                Err(e) => Err(Failure::Connect(e)),
            };
            if let Err(e) = opened {
                self.gateways[i].down(e.to_string());
                last = Some(e);
            }
        }
        last
    }

    /// Opens a gateway's live streams.
    pub(super) async fn open_streams(
        &mut self,
        i: usize,
        client: Client,
        open: Option<&(String, String)>,
    ) -> Result<(), Failure> {
        let mut api = client.max_decoding_message_size(64 * 1024 * 1024);
        let tag = (i, self.gateways[i].generation);
        let fleet = call(
            "WatchFleet",
            api.watch_fleet(WatchFleetRequest { filter: None }),
        )
        .await?;
        let violations = call(
            "WatchViolations",
            api.watch_violations(WatchViolationsRequest { filter: None }),
        )
        .await?;
        let handles = vec![
            spawn_pump(
                &mut self.streams,
                "WatchFleet",
                fleet,
                |d| Some(d.device_id.clone()),
                Msg::Fleet,
                self.tx,
                (&self.fail_tx, tag),
            ),
            spawn_pump(
                &mut self.streams,
                "WatchViolations",
                violations,
                |v| Some(format!("{}\u{0}{}", v.device_id, v.session_id)),
                Msg::NewViolations,
                self.tx,
                (&self.fail_tx, tag),
            ),
        ];
        let g = &mut self.gateways[i];
        g.client = Some(api);
        g.problem = None;
        g.streams = handles;
        if let Some(open) = open {
            self.stream_samples(i, open).await?;
        }
        Ok(())
    }

    /// Streams the samples of the opened session's pen from gateway `i` (only the gateway
    /// holding the pen sends any).
    pub(super) async fn stream_samples(
        &mut self,
        i: usize,
        (device_id, _): &(String, String),
    ) -> Result<(), Failure> {
        let Some(mut api) = self.gateways[i].client.clone() else {
            return Ok(());
        };
        let tag = (i, self.gateways[i].generation);
        let stream = call(
            "StreamSamples",
            api.stream_samples(StreamSamplesRequest {
                filter: Some(Filter {
                    device_ids: vec![device_id.clone()],
                    ..Filter::default()
                }),
            }),
        )
        .await;
        let handle = lists::optional(stream)?.map(|stream| {
            spawn_pump(
                &mut self.streams,
                "StreamSamples",
                stream,
                |_| None,
                Msg::Samples,
                self.tx,
                (&self.fail_tx, tag),
            )
        });
        if let Some(old) = std::mem::replace(&mut self.gateways[i].samples, handle) {
            old.abort();
        }
        Ok(())
    }

    /// Opens `open` (its detail and its pen's samples), or closes the one opened.
    pub(super) async fn reopen(&mut self, open: Option<&(String, String)>) -> Result<(), Failure> {
        for g in &mut self.gateways {
            if let Some(h) = g.samples.take() {
                h.abort();
            }
        }
        let Some(open) = open else { return Ok(()) };
        for i in 0..self.gateways.len() {
            if let Err(e) = self.stream_samples(i, open).await {
                self.lost(i, e)?;
            }
        }
        let lost = lists::detail(&self.fleet(), self.tx, open).await?;
        self.lost_each(lost)
    }

    /// Gateway `i` stopped answering: with one gateway the connection ends; with several it
    /// is marked down (and retried at the next refresh) unless none is left.
    pub(super) fn lost(&mut self, i: usize, failure: Failure) -> Result<(), Failure> {
        if self.gateways.len() == 1 || self.answering() <= 1 {
            return Err(failure);
        }
        self.gateways[i].down(failure.to_string());
        Ok(())
    }

    /// The gateways a merged call lost.
    pub(super) fn lost_each(&mut self, lost: Vec<GatewayError>) -> Result<(), Failure> {
        for e in lost {
            let i = self
                .gateways
                .iter()
                .position(|g| g.connector.gateway() == e.gateway);
            if let Some(i) = i {
                self.lost(i, Failure::Rpc(e.status))?;
            }
        }
        Ok(())
    }

    /// Tells the UI which gateways answer (only with several, and when it changed).
    pub(super) async fn report(&mut self) -> Result<(), Failure> {
        if self.gateways.len() < 2 {
            return Ok(());
        }
        let states: Vec<(String, Option<String>)> = self
            .gateways
            .iter()
            .map(|g| (g.connector.gateway().to_owned(), g.problem.clone()))
            .collect();
        if states == self.reported {
            return Ok(());
        }
        self.reported.clone_from(&states);
        send(self.tx, Msg::Gateways(states)).await
    }

    /// Reloads the lists from the gateways that answer.
    pub(super) async fn load(&mut self, query: &Query, manufacturer: bool) -> Result<(), Failure> {
        let everyone = self.answering() == self.gateways.len();
        let lost = lists::load(&self.fleet(), everyone, self.tx, query, manufacturer).await?;
        self.lost_each(lost)
    }
}

impl Drop for Links<'_> {
    fn drop(&mut self) {
        self.streams.abort_all();
    }
}

/// Why no gateway answered: the only one's failure; a refusal if every gateway refused the
/// token; otherwise each gateway's failure, naming it.
pub(super) fn none_answers(mut failures: Vec<(&str, Failure)>) -> Failure {
    let refused = |f: &Failure| matches!(f, Failure::Rpc(s) if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied));
    if failures.len() == 1 || failures.iter().all(|(_, f)| refused(f)) {
        return failures.pop().map_or(Failure::Closed, |(_, f)| f);
    }
    let total = failures.len();
    let causes = failures
        .iter()
        .map(|(gateway, f)| match f {
            Failure::Connect(e) => e.to_string(),
            f => format!("{gateway}: {f}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Failure::Connect(ClientError::Gateways {
        failed: total,
        total,
        causes,
    })
}
