//! The gRPC API (`proto/penwatch/v1/api.proto`): queries over the journal, live streams from
//! the committer, bearer-token roles and clinic scopes, audit export; standard gRPC health
//! and server reflection beside it.
//!
//! - [`auth`]: tokens, roles, scope and operator pseudonyms.
//! - [`service`]: the rpcs; [`stream`]: the live streams; [`export`]: CSV / JSON lines export.
//! - [`convert`]: journal records to API messages.
//! - [`limits`]: bounds on request values; [`conn`]: bounds on connections.
//!
//! Queries run on read-only connections to the journal file ([`Readers`]), never on the
//! committer's.

pub mod auth;
pub mod conn;
pub mod convert;
pub mod export;
pub mod limits;
pub mod service;
pub mod stream;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use penwatch_proto::v1::pen_watch_server::PenWatchServer;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::invalid::Invalid;
use crate::journal::{self, Reader};
use crate::live::LiveSender;
use crate::policy::PolicyHandle;

pub use auth::Role;

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The `[api]` section is unusable.
    #[error(transparent)]
    Config(#[from] Invalid),
    /// A TLS file could not be read.
    #[error("api TLS file {path}: {source}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The listen address could not be bound, or TLS could not be set up.
    #[error("api listen {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reflection could not load the descriptor set.
    #[error("api reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The access log or the signatures' connection could not be opened.
    #[error("api journal connection: {0}")]
    Journal(journal::JournalError),
}

/// A secret from the configuration; never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `[api]`: the gRPC API.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to serve on; empty disables the API.
    pub listen: String,
    /// PEM certificate chain; with `tls_key`, the port speaks TLS (rustls).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve tokens without TLS on an address other than loopback (only behind a
    /// TLS-terminating proxy or on a network that is itself protected); refused otherwise.
    pub allow_plaintext: bool,
    /// Secret keying operator pseudonyms for manufacturer tokens (required when one is
    /// configured; at least 16 characters; keep it stable or the pseudonyms change).
    pub pseudonym_key: Option<Secret>,
    /// Environment variable holding the pseudonym key instead.
    pub pseudonym_key_env: Option<String>,
    /// Most connections open at once; at the limit a new connection closes the oldest one
    /// without a request in progress.
    pub max_connections: usize,
    /// Seconds a new connection has for its TLS and HTTP/2 handshakes and its first request.
    pub handshake_timeout_s: u64,
    /// Seconds a connection stays open without a request in progress.
    pub idle_timeout_s: u64,
    /// Seconds between HTTP/2 pings (and TCP keep-alive probes) on a connection.
    pub keepalive_interval_s: u64,
    /// Seconds to wait for a ping's answer before closing the connection.
    pub keepalive_timeout_s: u64,
    /// Most calls in progress at once on one connection (HTTP/2 streams).
    pub max_streams_per_connection: u32,
    /// Seconds a call has to arrive whole and produce its answer (a stream: to start).
    pub request_timeout_s: u64,
    /// Bearer tokens.
    pub tokens: Vec<TokenConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".to_owned(),
            tls_cert: None,
            tls_key: None,
            allow_plaintext: false,
            pseudonym_key: None,
            pseudonym_key_env: None,
            max_connections: 1000,
            handshake_timeout_s: 10,
            idle_timeout_s: 300,
            keepalive_interval_s: 30,
            keepalive_timeout_s: 10,
            max_streams_per_connection: 64,
            request_timeout_s: 300,
            tokens: Vec::new(),
        }
    }
}

/// `[[api.tokens]]`: one bearer token with its role and scope.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Name (shown by `WhoAmI` and in logs).
    pub name: String,
    /// The token itself (at least 16 characters) …
    pub token: Option<Secret>,
    /// … or the environment variable that holds it.
    pub token_env: Option<String>,
    /// Role.
    pub role: Role,
    /// Clinics in scope; empty means all (not allowed for `clinic-manager`).
    #[serde(default)]
    pub clinics: Vec<String>,
}

/// Shortest accepted token and pseudonym key.
const MIN_SECRET_LEN: usize = 16;

impl ApiConfig {
    /// The address to serve on, `None` when disabled.
    pub fn addr(&self) -> Result<Option<SocketAddr>, Invalid> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|_| {
            invalid(
                "api.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:50051 (\"\" disables the API)",
                    self.listen
                ),
            )
        })
    }

    /// The connection limits.
    pub fn conn_limits(&self) -> conn::ConnLimits {
        conn::ConnLimits {
            max_connections: self.max_connections,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_s),
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
        }
    }

    /// Checks the section; the error says what to fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(addr) = self.addr()?
            && !addr.ip().is_loopback()
            && self.tls_cert.is_none()
            && !self.tokens.is_empty()
            && !self.allow_plaintext
        {
            return Err(invalid(
                "api.listen",
                format!(
                    "{addr} is not a loopback address and the API has no TLS, so bearer \
                 tokens would cross the network in clear text: set api.tls_cert and \
                 api.tls_key, or listen on 127.0.0.1, or (only behind a TLS-terminating proxy \
                 or on a protected network) set allow_plaintext = true in [api]"
                ),
            ));
        }
        for (key, value) in [
            ("max_connections", self.max_connections as u64),
            ("handshake_timeout_s", self.handshake_timeout_s),
            ("idle_timeout_s", self.idle_timeout_s),
            ("keepalive_interval_s", self.keepalive_interval_s),
            ("keepalive_timeout_s", self.keepalive_timeout_s),
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
            ),
            ("request_timeout_s", self.request_timeout_s),
        ] {
            if value == 0 {
                return Err(invalid(
                    format!("api.{key}"),
                    "must be at least 1 (see gateway.example.toml for the defaults)",
                ));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid(
                    "api.tls_key",
                    "goes together with api.tls_cert: set both (PEM files) or neither",
                ));
            }
            (Some(cert), Some(key)) => {
                for (k, p) in [("tls_cert", cert), ("tls_key", key)] {
                    if !p.is_file() {
                        return Err(invalid(
                            format!("api.{k}"),
                            format!("{} is not a readable file", p.display()),
                        ));
                    }
                }
            }
            (None, None) => {}
        }
        auth::Auth::from_config(self).map(|_| ())
    }
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid::new(key, problem)
}

/// Reads a secret given inline or through an environment variable.
fn secret(
    what: &str,
    inline: Option<&Secret>,
    env: Option<&str>,
) -> Result<Option<String>, Invalid> {
    let value = match (inline, env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                what,
                "give the value or the _env variable, not both",
            ));
        }
        (Some(s), None) => s.0.clone(),
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            invalid(
                what,
                format!("environment variable {var} is not set (or not UTF-8)"),
            )
        })?,
        (None, None) => return Ok(None),
    };
    if value.chars().count() < MIN_SECRET_LEN {
        return Err(invalid(
            what,
            format!("must be at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 24`)"),
        ));
    }
    Ok(Some(value))
}

/// Most idle read-only connections kept.
const MAX_IDLE_READERS: usize = 4;

/// Read-only connections to the journal file, used on blocking threads.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
}

impl Readers {
    /// Readers of the journal at `path` (opened on first use).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a read-only connection on a blocking thread.
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Reader) -> journal::Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(f))
            .await
            .map_err(|e| Status::internal(format!("query task failed: {e}")))?
    }

    /// Runs `f` on a read-only connection on this thread.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Reader) -> journal::Result<T>,
    ) -> Result<T, Status> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let journal = match pooled {
            Some(j) => j,
            None => Reader::open(&self.path).map_err(internal)?,
        };
        let result = f(&journal).map_err(internal);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(journal);
        }
        result
    }
}

/// A journal error as a status (its cause logged, not sent).
pub fn internal(e: journal::JournalError) -> Status {
    tracing::error!(cause = %cause(&e), "api query failed");
    Status::internal("journal query failed; see the gateway log")
}

/// A short cause of a journal error for the log: SQLite's error code, never the statement
/// or a bound value (which carry request values).
fn cause(e: &journal::JournalError) -> String {
    use journal::JournalError;
    use rusqlite::Error as Sql;
    match e {
        JournalError::Sqlite(
            Sql::SqliteFailure(code, _) | Sql::SqlInputError { error: code, .. },
        ) => {
            format!("SQLite: {code}")
        }
        JournalError::Sqlite(Sql::QueryReturnedNoRows) => "SQLite: no row".to_owned(),
        JournalError::Sqlite(_) => "SQLite: unexpected value or statement".to_owned(),
        JournalError::Record(r) => format!(
            "stored record does not decode ({:?} error at line {} column {})",
            r.classify(),
            r.line(),
            r.column()
        ),
        other => other.to_string(),
    }
}

/// What the API serves from.
#[derive(Clone)]
pub struct Shared {
    /// Read-only journal connections.
    pub reader: Arc<Readers>,
    /// Where every call is recorded.
    pub access: journal::AccessRecorder,
    /// Where review signatures are written.
    pub signatures: Arc<journal::Signatures>,
    /// The policy in force.
    pub policy: PolicyHandle,
    /// Live events from the committer.
    pub live: LiveSender,
    /// Cancelled when the gateway stops: streams end.
    pub stop: CancellationToken,
}

/// Binds the API port (when `config.listen` is set) and serves the API, health and
/// reflection on it until `stop` is cancelled; returns the serving task.
pub async fn start(
    config: &ApiConfig,
    journal: &Path,
    policy: PolicyHandle,
    live: LiveSender,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, ApiError> {
    let Some(addr) = config.addr()? else {
        return Ok(None);
    };
    let auth = auth::Auth::from_config(config)?;
    if auth.is_empty() {
        tracing::warn!("api: no [[api.tokens]] configured; every API call will be refused");
    }
    let keepalive = Duration::from_secs(config.keepalive_interval_s);
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(config.keepalive_timeout_s)))
        .max_concurrent_streams(config.max_streams_per_connection)
        .concurrency_limit_per_connection(config.max_streams_per_connection as usize)
        .timeout(Duration::from_secs(config.request_timeout_s))
        .layer(conn::ActivityLayer);
    let tls = config.tls_cert.is_some();
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|source| ApiError::TlsFile {
                path: p.clone(),
                source,
            })
        };
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| ApiError::Listen {
                addr,
                source: Box::new(e),
            })?;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ApiError::Listen {
            addr,
            source: Box::new(e),
        })?;
    let shared = Shared {
        reader: Arc::new(Readers::new(journal)),
        access: journal::AccessRecorder::spawn(journal).map_err(ApiError::Journal)?,
        signatures: Arc::new(journal::Signatures::open(journal).map_err(ApiError::Journal)?),
        policy,
        live,
        stop: stop.clone(),
    };
    let api = PenWatchServer::new(service::Api::new(Arc::new(auth), shared));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PenWatchServer<service::Api>>().await;
    // Reflection answers both versions: grpcurl and IDE clients older than v1 ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(penwatch_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let router = builder
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(api);
    tracing::info!(%addr, tls, "gRPC API listening");
    conn::fit_open_files_limit(&config.conn_limits());
    let connections = conn::Registry::new(config.conn_limits());
    Ok(Some(tokio::spawn(async move {
        let incoming = connections.incoming(
            TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(keepalive)),
        );
        let stopped = async move {
            stop.cancelled().await;
            connections.close_idle();
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
            tracing::error!(error = %e, %addr, "gRPC API failed");
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_documents_the_default_limits() {
        let example: crate::config::Config =
            toml::from_str(include_str!("../../gateway.example.toml")).expect("example parses");
        assert_eq!(example.api, ApiConfig::default());
    }

    #[test]
    fn a_zero_limit_names_its_key() {
        let config = ApiConfig {
            idle_timeout_s: 0,
            ..ApiConfig::default()
        };
        let err = config.validate().expect_err("zero").to_string();
        assert!(
            err.contains("api.idle_timeout_s: must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn logged_causes_hold_no_sql_and_no_values() {
        let db = rusqlite::Connection::open_in_memory().expect("memory");
        let err = db
            .query_row("SELECT 'secret-value' FROM no_such_table", [], |r| {
                r.get::<_, String>(0)
            })
            .expect_err("no table");
        let text = cause(&journal::JournalError::Sqlite(err));
        assert!(text.starts_with("SQLite: Error code 1"), "{text}");
        assert!(
            !text.contains("secret") && !text.contains("SELECT"),
            "{text}"
        );
    }
}
