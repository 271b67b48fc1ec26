//! Server streams fed by the committer's live events.
//!
//! Each stream has its own task between the broadcast channel and a bounded buffer to the
//! connection. A client that does not keep up makes the task wait, the broadcast channel
//! overruns it, and the stream ends with `RESOURCE_EXHAUSTED`: the gateway's memory does not
//! grow with a slow client. Streams end with `UNAVAILABLE` when the gateway stops.

use std::collections::HashMap;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::convert::DeviceExtra;
use crate::decode::Reading;
use crate::live::LiveEvent;
use crate::policy::PolicyHandle;
use crate::sessions::Verdict;

/// Messages buffered per stream between its task and the connection.
pub const STREAM_BUFFER: usize = 256;

/// The stream type of every server-streaming rpc.
pub type Stream<T> = ReceiverStream<Result<T, Status>>;

/// Sends `initial`, then whatever `map` makes of each live event, until the client goes
/// away, falls behind, or the gateway stops.
pub fn forward<T, F>(
    initial: Vec<T>,
    mut events: broadcast::Receiver<LiveEvent>,
    stop: CancellationToken,
    mut map: F,
) -> Stream<T>
where
    T: Send + 'static,
    F: FnMut(&LiveEvent) -> Vec<T> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        for item in initial {
            if !send(&tx, Ok(item), &stop).await {
                return;
            }
        }
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => {
                    let _ = tx.try_send(Err(Status::unavailable("the gateway is stopping")));
                    return;
                }
                () = tx.closed() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(event) => {
                    for item in map(&event) {
                        if !send(&tx, Ok(item), &stop).await {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let status = Status::resource_exhausted(format!(
                        "stream fell {missed} events behind the gateway and was ended; \
                         read faster, narrow the filter, or reconnect and list again"
                    ));
                    send(&tx, Err(status), &stop).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Sends one message unless the client left or the gateway stops; `false` to end.
async fn send<T>(
    tx: &mpsc::Sender<Result<T, Status>>,
    item: Result<T, Status>,
    stop: &CancellationToken,
) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        sent = tx.send(item) => sent.is_ok(),
    }
}

/// Per-stream view of each pen's open session and cartridge, kept from live samples.
pub struct FleetTracker {
    extras: HashMap<String, DeviceExtra>,
    policy: PolicyHandle,
}

impl FleetTracker {
    /// A tracker starting from the journal's state.
    pub fn new(extras: HashMap<String, DeviceExtra>, policy: PolicyHandle) -> Self {
        Self { extras, policy }
    }

    /// Folds a committed sample in.
    pub fn observe(&mut self, r: &Reading, v: &Verdict) {
        let e = self.extras.entry(r.device_id.clone()).or_default();
        if e.session_id != r.session_id {
            *e = DeviceExtra {
                session_id: r.session_id.clone(),
                ..DeviceExtra::default()
            };
        }
        e.observe(r, v);
        let rated = self.policy.current().rated_strokes(&r.cartridge_model);
        if let Some(rated) = rated.filter(|r| *r > 0) {
            e.cartridge_wear_pct = r.cartridge_strokes as f64 * 100.0 / rated as f64;
        }
    }

    /// What is known of a pen.
    pub fn get(&self, device_id: &str) -> Option<&DeviceExtra> {
        self.extras.get(device_id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fleet::Device;

    #[tokio::test]
    async fn a_lagging_stream_ends_with_resource_exhausted() {
        let live = crate::live::channel();
        let stop = CancellationToken::new();
        let mut stream = forward(Vec::<u32>::new(), live.subscribe(), stop.clone(), |_| {
            vec![1]
        });
        let device = Arc::new(Device::new("c01", "pen-1"));
        for _ in 0..(crate::live::CAPACITY + STREAM_BUFFER + 10) {
            let _ = live.send(LiveEvent::Device(device.clone()));
        }
        let mut ok = 0;
        let status = loop {
            match tokio_stream::StreamExt::next(&mut stream).await {
                Some(Ok(_)) => ok += 1,
                Some(Err(s)) => break s,
                None => panic!("stream ended without a status"),
            }
        };
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(ok <= crate::live::CAPACITY + STREAM_BUFFER + 1, "{ok}");
        assert!(tokio_stream::StreamExt::next(&mut stream).await.is_none());
    }

    #[tokio::test]
    async fn streams_end_when_the_gateway_stops() {
        let live = crate::live::channel();
        let stop = CancellationToken::new();
        let mut stream = forward(vec![7u32], live.subscribe(), stop.clone(), |_| vec![1]);
        assert_eq!(
            tokio_stream::StreamExt::next(&mut stream)
                .await
                .and_then(Result::ok),
            Some(7)
        );
        stop.cancel();
        let end = tokio_stream::StreamExt::next(&mut stream).await;
        assert!(
            matches!(end, Some(Err(ref s)) if s.code() == tonic::Code::Unavailable)
                || end.is_none()
        );
    }
}
