//! What several gateways answer: a value merged from those that answered beside the failures
//! of those that did not ([`Merged`]), each failure naming its gateway ([`GatewayError`]),
//! and live streams merged into one ([`Watch`]).

use std::pin::Pin;

use futures::stream::{self, Stream, StreamExt};
use tonic::{Status, Streaming};

/// A gateway's failure to answer, naming the gateway.
#[derive(Debug, thiserror::Error)]
#[error("gateway {gateway}: {} ({:?})", status.message(), status.code())]
pub struct GatewayError {
    /// The gateway's address.
    pub gateway: String,
    /// What it answered, or why it did not.
    pub status: Status,
}

/// An answer merged from the gateways that gave one, with the failures of the others.
#[derive(Debug)]
pub struct Merged<T> {
    /// The merged answer of the gateways that answered.
    pub value: T,
    /// How many gateways answered.
    pub answered: usize,
    /// The gateways that did not answer, and why.
    pub failures: Vec<GatewayError>,
}

impl<T> Merged<T> {
    /// The answer if every gateway gave one; otherwise the first failure.
    pub fn complete(mut self) -> Result<T, GatewayError> {
        if self.failures.is_empty() {
            Ok(self.value)
        } else {
            Err(self.failures.swap_remove(0))
        }
    }
}

impl<T> Merged<T> {
    /// The merged value changed by `f`, with the same failures.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Merged<U> {
        Merged {
            value: f(self.value),
            answered: self.answered,
            failures: self.failures,
        }
    }
}

/// A merged live stream: items from every gateway as they come; a gateway's stream failing
/// or ending is an error naming it.
pub type Watch<T> = Pin<Box<dyn Stream<Item = Result<T, GatewayError>> + Send>>;

/// The answers split into the values and the failures.
pub(super) fn gather<T>(answers: Vec<(String, Result<T, Status>)>) -> Merged<Vec<T>> {
    let mut value = Vec::new();
    let mut failures = Vec::new();
    for (gateway, answer) in answers {
        match answer {
            Ok(v) => value.push(v),
            Err(status) => failures.push(GatewayError { gateway, status }),
        }
    }
    Merged {
        answered: value.len(),
        value,
        failures,
    }
}

/// One gateway's (at `gateway`) answer as it gave it.
pub(super) fn single<T: Default>(gateway: &str, answer: Result<T, Status>) -> Merged<T> {
    match answer {
        Ok(value) => Merged {
            value,
            answered: 1,
            failures: Vec::new(),
        },
        Err(status) => Merged {
            value: T::default(),
            answered: 0,
            failures: vec![GatewayError {
                gateway: gateway.to_owned(),
                status,
            }],
        },
    }
}

/// The opened streams merged into one, or the first that did not open.
pub(super) fn merged_watch<T: Send + 'static>(
    opened: Vec<(String, Result<Streaming<T>, Status>)>,
) -> Result<Watch<T>, GatewayError> {
    let mut streams = Vec::new();
    for (gateway, answer) in opened {
        let stream = answer.map_err(|status| GatewayError {
            gateway: gateway.clone(),
            status,
        })?;
        let failed = gateway.clone();
        let items = stream.map(move |item| {
            item.map_err(|status| GatewayError {
                gateway: failed.clone(),
                status,
            })
        });
        let end = stream::once(async move {
            Err(GatewayError {
                gateway,
                status: Status::unavailable("the gateway ended the stream"),
            })
        });
        streams.push(items.chain(end).boxed());
    }
    Ok(stream::select_all(streams).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_answer_is_complete_only_when_every_gateway_answered() {
        let whole: Merged<u32> = Merged {
            value: 3,
            answered: 3,
            failures: Vec::new(),
        };
        assert_eq!(whole.complete().ok(), Some(3));
        let partial = Merged {
            value: 2,
            answered: 2,
            failures: vec![GatewayError {
                gateway: "http://gw-2:50051".into(),
                status: Status::unavailable("connection refused"),
            }],
        };
        let e = partial.complete().expect_err("one gateway missing");
        assert_eq!(
            e.to_string(),
            "gateway http://gw-2:50051: connection refused (Unavailable)"
        );
    }
}
