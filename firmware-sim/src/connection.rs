//! One MQTT connection with acknowledgement tracking.
//!
//! A publish counts as sent once rumqttc has accepted it; [`Connection::settle`] then waits
//! until the broker has PUBACKed every QoS 1 publish, so what the ground truth says was sent
//! is what the broker has. The event loop runs in its own task that does nothing but poll.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use penwatch_proto::broker::BrokerUrl;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::error::SimError;

/// Largest packet either way: above the simulator's 128 KiB oversized payload, at the
/// broker's 1 MiB limit.
const MAX_PACKET_BYTES: usize = 1024 * 1024;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for the broker's acknowledgements before giving up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between reconnection attempts after a network error.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// How to reach the broker, shared by every connection of a run.
#[derive(Clone)]
pub struct ConnectOptions {
    broker: BrokerUrl,
    credentials: Option<(String, String)>,
    pen_passwords: Option<Arc<HashMap<String, String>>>,
    ca_pem: Option<Vec<u8>>,
    inflight: u16,
    channel_capacity: usize,
}

impl ConnectOptions {
    /// Broker, credentials and TLS settings of a run (reads the CA file, if any).
    pub fn from_config(
        config: &SimConfig,
        inflight: u16,
        channel_capacity: usize,
    ) -> Result<Self, SimError> {
        let ca_pem = match &config.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| SimError::CaFile {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let credentials = config
            .username
            .as_ref()
            .map(|u| (u.clone(), config.password.clone().unwrap_or_default()));
        let pen_passwords = match &config.credentials {
            Some(path) => Some(Arc::new(read_credentials(path)?)),
            None => None,
        };
        Ok(Self {
            broker: config.broker.clone(),
            credentials,
            pen_passwords,
            ca_pem,
            inflight,
            channel_capacity,
        })
    }

    /// Checks that every pen has credentials, when pens connect as themselves;
    /// `pens` are `(clinic_id, device_id)`.
    pub fn check_pens<'a>(
        &self,
        path: &Path,
        mut pens: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), SimError> {
        let Some(passwords) = &self.pen_passwords else {
            return Ok(());
        };
        match pens.find(|(_, id)| !passwords.contains_key(*id)) {
            Some((clinic, missing)) => Err(SimError::Credentials {
                path: path.to_owned(),
                detail: format!(
                    "no line for pen {missing}: provision it (scripts/provision-pen {clinic} \
                     {missing}) and add the DEVICE:PASSWORD line it prints"
                ),
            }),
            None => Ok(()),
        }
    }

    /// The user name and password a connection presents: with per-pen credentials, those of
    /// `pen` (the device id it speaks for), else the run's.
    fn credentials_for<'a>(&'a self, pen: Option<&'a str>) -> Option<(&'a str, &'a str)> {
        match (&self.pen_passwords, pen) {
            (Some(passwords), Some(pen)) => passwords.get(pen).map(|p| (pen, p.as_str())),
            _ => self
                .credentials
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str())),
        }
    }

    fn mqtt_options(
        &self,
        client_id: &str,
        pen: Option<&str>,
        last_will: Option<LastWill>,
    ) -> MqttOptions {
        let credentials = self.credentials_for(pen);
        let mut opts = self.broker.mqtt_options(
            client_id,
            credentials,
            Duration::from_secs(30),
            self.ca_pem.clone(),
        );
        opts.set_clean_session(false)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(self.inflight);
        if let Some(will) = last_will {
            opts.set_last_will(will);
        }
        opts
    }
}

/// An open MQTT connection.
pub struct Connection {
    client: AsyncClient,
    client_id: String,
    sent: AtomicU64,
    acked: watch::Receiver<u64>,
    poll: JoinHandle<()>,
}

impl Connection {
    /// Connects (waiting for the broker's CONNACK) and starts polling. `pen` is the device
    /// id the connection speaks for (`None` for a connection shared by several pens).
    pub async fn open(
        options: &ConnectOptions,
        client_id: &str,
        pen: Option<&str>,
        last_will: Option<LastWill>,
    ) -> Result<Self, SimError> {
        let (client, mut eventloop) = AsyncClient::new(
            options.mqtt_options(client_id, pen, last_will),
            options.channel_capacity,
        );
        let connect_error = |source| SimError::Connect {
            client_id: client_id.to_owned(),
            broker: options.broker.to_string(),
            source: Box::new(source),
        };
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(connect_error(e)),
            Err(_) => return Err(connect_error(rumqttc::ConnectionError::NetworkTimeout)),
        }
        let (ack_tx, acked) = watch::channel(0);
        let poll = tokio::spawn(poll_loop(eventloop, ack_tx, client_id.to_owned()));
        Ok(Self {
            client,
            client_id: client_id.to_owned(),
            sent: AtomicU64::new(0),
            acked,
            poll,
        })
    }

    /// Publishes at QoS 1; returns once rumqttc has accepted the message.
    pub async fn publish(
        &self,
        topic: &str,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), SimError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|source| SimError::Client {
                client_id: self.client_id.clone(),
                source,
            })?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until the broker has acknowledged every publish accepted so far.
    pub async fn settle(&self) -> Result<(), SimError> {
        let target = self.sent.load(Ordering::Relaxed);
        let mut acked = self.acked.clone();
        match tokio::time::timeout(SETTLE_TIMEOUT, acked.wait_for(|n| *n >= target)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(SimError::Unacked {
                client_id: self.client_id.clone(),
                unacked: target.saturating_sub(*self.acked.borrow()),
                waited_s: SETTLE_TIMEOUT.as_secs(),
            }),
        }
    }

    /// Settles, then disconnects cleanly (no last will).
    pub async fn close(self) -> Result<(), SimError> {
        self.settle().await?;
        self.client
            .disconnect()
            .await
            .map_err(|source| SimError::Client {
                client_id: self.client_id.clone(),
                source,
            })?;
        if tokio::time::timeout(CONNECT_TIMEOUT, self.poll)
            .await
            .is_err()
        {
            tracing::warn!(client_id = %self.client_id, "disconnect not confirmed");
        }
        Ok(())
    }

    /// Settles, then drops the network connection without DISCONNECT: the broker publishes
    /// the last will.
    pub async fn drop_abruptly(self) -> Result<(), SimError> {
        self.settle().await?;
        self.poll.abort();
        let _ = self.poll.await;
        Ok(())
    }
}

/// Reads `device_id:password` lines (blank lines and `#` comments skipped).
fn read_credentials(path: &Path) -> Result<HashMap<String, String>, SimError> {
    let error = |detail: String| SimError::Credentials {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let mut passwords = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((device, password)) if !device.is_empty() && !password.is_empty() => {
                passwords.insert(device.to_owned(), password.to_owned());
            }
            _ => {
                return Err(error(format!(
                    "line {} is not DEVICE:PASSWORD (as scripts/provision-pen prints it)",
                    n + 1
                )));
            }
        }
    }
    Ok(passwords)
}

/// Polls until the DISCONNECT is written, counting PUBACKs and riding out network errors
/// (rumqttc reconnects and resends unacknowledged publishes of the persistent session).
async fn poll_loop(mut eventloop: EventLoop, acked: watch::Sender<u64>, client_id: String) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked.send_modify(|n| *n += 1),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => return,
            Err(e) => {
                tracing::warn!(%client_id, error = %e, "MQTT connection error; reconnecting");
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_lines_are_device_colon_password() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pens.credentials");
        std::fs::write(&path, "# pens\npen-1:pw:with:colons\n\npen-2:x\r\n").expect("write");
        let passwords = read_credentials(&path).expect("valid");
        assert_eq!(passwords.len(), 2);
        assert_eq!(passwords["pen-1"], "pw:with:colons");
        assert_eq!(passwords["pen-2"], "x");
        std::fs::write(&path, "pen-1:ok\npen-2\n").expect("write");
        let err = read_credentials(&path).expect_err("bad line").to_string();
        assert!(err.contains("line 2 is not DEVICE:PASSWORD"), "{err}");
    }
}
