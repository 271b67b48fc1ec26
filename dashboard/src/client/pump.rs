//! A gateway's stream forwarded to the UI in batches ([`COALESCE`]), the latest item per key.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tonic::Streaming;

use super::{COALESCE, Failure, Tag};
use crate::app::Msg;

/// Forwards `stream` to the UI on a task of its own; how it ended goes to `fail_tx` with `tag`.
pub(super) fn spawn_pump<T: Send + 'static>(
    streams: &mut JoinSet<()>,
    name: &'static str,
    stream: Streaming<T>,
    key: fn(&T) -> Option<String>,
    wrap: fn(Vec<T>) -> Msg,
    tx: &mpsc::Sender<Msg>,
    (fail_tx, tag): (&mpsc::Sender<(Tag, Failure)>, Tag),
) -> AbortHandle {
    let tx = tx.clone();
    let fail_tx = fail_tx.clone();
    streams.spawn(async move {
        let failure = pump(name, stream, key, wrap, &tx).await;
        let _ = fail_tx.send((tag, failure)).await;
    })
}

/// Forwards a stream to the UI in batches, keeping only the latest item per key.
async fn pump<T>(
    name: &'static str,
    mut stream: Streaming<T>,
    key: fn(&T) -> Option<String>,
    wrap: fn(Vec<T>) -> Msg,
    tx: &mpsc::Sender<Msg>,
) -> Failure {
    let mut batch = Coalescer::default();
    let mut flush = tokio::time::interval(COALESCE);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = stream.message() => match item {
                Ok(Some(item)) => batch.push(key(&item), item),
                Ok(None) => return Failure::Ended(name),
                Err(status) => return Failure::Rpc(status),
            },
            _ = flush.tick(), if !batch.is_empty() => {
                if tx.send(wrap(batch.take())).await.is_err() {
                    return Failure::Closed;
                }
            }
        }
    }
}

/// Items gathered between two flushes: a keyed item replaces the previous one with its key.
#[derive(Debug)]
pub struct Coalescer<T> {
    items: Vec<T>,
    index: HashMap<String, usize>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Coalescer<T> {
    /// Adds an item; `key` None keeps every item.
    pub fn push(&mut self, key: Option<String>, item: T) {
        match key {
            Some(k) => match self.index.get(&k) {
                Some(&i) => self.items[i] = item,
                None => {
                    self.index.insert(k, self.items.len());
                    self.items.push(item);
                }
            },
            None => self.items.push(item),
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The batch, in arrival order of first sight; empties the coalescer.
    pub fn take(&mut self) -> Vec<T> {
        self.index.clear();
        std::mem::take(&mut self.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescer_keeps_latest_per_key_in_first_seen_order() {
        let mut c = Coalescer::default();
        c.push(Some("a".into()), 1);
        c.push(Some("b".into()), 2);
        c.push(Some("a".into()), 3);
        c.push(None, 4);
        c.push(None, 5);
        assert_eq!(c.take(), vec![3, 2, 4, 5]);
        assert!(c.is_empty());
        c.push(Some("a".into()), 6);
        assert_eq!(c.take(), vec![6]);
    }
}
