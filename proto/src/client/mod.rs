//! How the `penwatch` command line and the dashboard reach the gateway's gRPC API: one
//! address (`http://` or `https://`) or several (a fleet partitioned over gateways, read as
//! one through [`Fleet`]), one bearer token, and for TLS either a CA certificate or the
//! system trust store.
//!
//! - [`Connector`]: one checked address, token and TLS trust, to connect and reconnect with.
//! - [`fleet`]: several gateways asked at once, their answers merged ([`merge`]).

use std::error::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::v1::pen_watch_client::PenWatchClient;

pub mod answers;
pub mod fleet;
pub mod merge;

pub use answers::{GatewayError, Merged, Watch};
pub use fleet::{Fleet, Member};

/// The gateway's API, with the bearer token on every call.
pub type Client = PenWatchClient<InterceptedService<Channel, Bearer>>;

/// Where the gateway is unless told otherwise.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:50051";

/// Why a call without a token fails before it is sent (every PenWatch rpc needs one).
pub const NO_TOKEN: &str = "no token: pass --token or set PENWATCH_TOKEN";

/// Time allowed to open the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the gateway cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway address is not a URI.
    #[error("invalid gateway address {0:?} (expected http://HOST:PORT or https://HOST:PORT)")]
    Address(String),
    /// The token has characters a gRPC header cannot carry.
    #[error("the token must be printable ASCII")]
    Token,
    /// The CA certificate file cannot be read.
    #[error("CA certificate {}: {error}", path.display())]
    CaCertRead {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The CA certificate file holds no PEM certificate.
    #[error("CA certificate {}: no PEM certificate in it", path.display())]
    CaCertPem {
        /// The file.
        path: PathBuf,
    },
    /// TLS could not be set up for the address.
    #[error("TLS settings for {gateway}: {cause}")]
    TlsSetup {
        /// The address.
        gateway: String,
        /// Why.
        cause: String,
    },
    /// Nothing answered at the address.
    #[error(
        "cannot reach the gateway at {gateway}: {cause} (is it running, and is [api] listen set?)"
    )]
    Unreachable {
        /// The address.
        gateway: String,
        /// The underlying errors, outermost first.
        cause: String,
    },
    /// Something answered but the TLS handshake failed.
    #[error(
        "TLS handshake with {gateway} failed: {cause}{}",
        hint.map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    Tls {
        /// The address.
        gateway: String,
        /// The underlying errors, outermost first.
        cause: String,
        /// What the TLS error means and what to do, for the common cases.
        hint: Option<&'static str>,
    },
    /// No gateway address was given.
    #[error("no gateway address given (expected http://HOST:PORT, or several separated by commas)")]
    NoGateway,
    /// The same gateway was listed twice (its rows would count twice).
    #[error("gateway {0} is listed twice")]
    DuplicateGateway(String),
    /// Some of several gateways cannot be reached.
    #[error("{failed} of {total} gateways cannot be reached: {causes}")]
    Gateways {
        /// How many cannot be reached.
        failed: usize,
        /// How many were given.
        total: usize,
        /// Each one's failure, `; `-separated, each naming its gateway.
        causes: String,
    },
    /// Any other connection failure.
    #[error("cannot connect to the gateway at {gateway}: {cause}")]
    Connect {
        /// The address.
        gateway: String,
        /// The underlying errors, outermost first.
        cause: String,
    },
}

impl ClientError {
    /// Whether the address, token or CA given is at fault (rather than the network or the
    /// gateway).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ClientError::Address(_)
                | ClientError::NoGateway
                | ClientError::DuplicateGateway(_)
                | ClientError::Token
                | ClientError::CaCertRead { .. }
                | ClientError::CaCertPem { .. }
                | ClientError::TlsSetup { .. }
        )
    }
}

/// Adds `authorization: Bearer <token>` to every call; without a token, fails the call with
/// UNAUTHENTICATED [`NO_TOKEN`] instead of sending it.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The interceptor for `token`; an empty or blank token is no token.
    pub fn new(token: Option<&str>) -> Result<Self, ClientError> {
        match token.filter(|t| !t.trim().is_empty()) {
            None => Ok(Bearer(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| ClientError::Token),
        }
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.0.is_some() { "<token>" } else { "none" };
        f.debug_tuple("Bearer").field(&token).finish()
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let value = self
            .0
            .clone()
            .ok_or_else(|| Status::unauthenticated(NO_TOKEN))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// A checked gateway address, token and TLS trust, to connect (and reconnect) with.
#[derive(Debug, Clone)]
pub struct Connector {
    gateway: String,
    endpoint: Endpoint,
    bearer: Bearer,
}

impl Connector {
    /// Checks the address and token and, for an `https://` address, loads the CA certificate
    /// (PEM) to trust, or the system trust store without one. `ca_cert` is ignored for `http://`.
    pub fn new(
        gateway: &str,
        token: Option<&str>,
        ca_cert: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let bearer = Bearer::new(token)?;
        let mut endpoint = Endpoint::from_shared(gateway.to_owned())
            .map_err(|_| ClientError::Address(gateway.to_owned()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        if endpoint.uri().scheme_str() == Some("https") {
            endpoint =
                endpoint
                    .tls_config(tls_config(ca_cert)?)
                    .map_err(|e| ClientError::TlsSetup {
                        gateway: gateway.to_owned(),
                        cause: error_chain(&e),
                    })?;
        }
        Ok(Self {
            gateway: gateway.to_owned(),
            endpoint,
            bearer,
        })
    }

    /// The gateway address.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Opens a connection to the gateway.
    pub async fn connect(&self) -> Result<Client, ClientError> {
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| self.failure(&e))?;
        Ok(PenWatchClient::with_interceptor(
            channel,
            self.bearer.clone(),
        ))
    }

    fn failure(&self, e: &tonic::transport::Error) -> ClientError {
        let gateway = self.gateway.clone();
        let cause = error_chain(e);
        if let Some(tls) = chain(e).find_map(rustls_error) {
            ClientError::Tls {
                gateway,
                cause,
                hint: tls_hint(tls),
            }
        } else if is_unreachable(e) {
            ClientError::Unreachable { gateway, cause }
        } else {
            ClientError::Connect { gateway, cause }
        }
    }
}

/// The gateway addresses in `values`, each of which may list several separated by commas
/// (`--gateway a,b`, `--gateway a --gateway b`, `PENWATCH_GATEWAY=a,b`); blanks around them
/// and empty entries are ignored.
pub fn gateway_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<String>, ClientError> {
    let mut list: Vec<String> = Vec::new();
    for value in values {
        for address in value.as_ref().split(',').map(str::trim) {
            if address.is_empty() {
                continue;
            }
            if list.iter().any(|a| a == address) {
                return Err(ClientError::DuplicateGateway(address.to_owned()));
            }
            list.push(address.to_owned());
        }
    }
    if list.is_empty() {
        return Err(ClientError::NoGateway);
    }
    Ok(list)
}

/// A [`Connector`] for each address, with the same token and TLS trust.
pub fn connectors(
    gateways: &[String],
    token: Option<&str>,
    ca_cert: Option<&Path>,
) -> Result<Vec<Connector>, ClientError> {
    gateways
        .iter()
        .map(|g| Connector::new(g, token, ca_cert))
        .collect()
}

/// Connects once to `gateway` with `token`, trusting `ca_cert` (PEM) for an `https://` address.
pub async fn connect(
    gateway: &str,
    token: Option<&str>,
    ca_cert: Option<&Path>,
) -> Result<Client, ClientError> {
    Connector::new(gateway, token, ca_cert)?.connect().await
}

fn tls_config(ca_cert: Option<&Path>) -> Result<ClientTlsConfig, ClientError> {
    let Some(path) = ca_cert else {
        return Ok(ClientTlsConfig::new().with_native_roots());
    };
    let pem = std::fs::read(path).map_err(|error| ClientError::CaCertRead {
        path: path.to_owned(),
        error,
    })?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    if certs.map_or(true, |c| c.is_empty()) {
        return Err(ClientError::CaCertPem {
            path: path.to_owned(),
        });
    }
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
}

/// `e` and its sources, outermost first.
fn chain<'a>(e: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(e), |e| (*e).source())
}

/// The TLS error `e` is or wraps (an I/O error's source skips the error it wraps, so that
/// is looked at too).
fn rustls_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    })
}

/// The cause behind the common TLS failures, in words, with the fix.
fn tls_hint(e: &rustls::Error) -> Option<&'static str> {
    use rustls::CertificateError as Cert;
    Some(match e {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
            "the gateway's certificate is not signed by a CA this client trusts, e.g. it is \
             self-signed or from a private CA: pass that CA certificate with --ca-cert or \
             PENWATCH_CA_CERT"
        }
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => {
            "the gateway's certificate does not name the host of the address: connect with a \
             host name the certificate lists"
        }
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the gateway's certificate has expired"
        }
        rustls::Error::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "the gateway's certificate is not valid yet: check the clocks"
        }
        rustls::Error::InvalidCertificate(Cert::Other(other))
            if other.to_string().contains("CaUsedAsEndEntity") =>
        {
            "the gateway presents a CA certificate as its own: give [api] tls_cert a server \
             certificate signed by that CA"
        }
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "the port does not speak TLS: use http://, or give the gateway [api] tls_cert and \
             tls_key"
        }
        _ => return None,
    })
}

/// Whether no connection could be opened at all.
fn is_unreachable(e: &(dyn Error + 'static)) -> bool {
    chain(e)
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::AddrNotAvailable
            )
        })
}

/// What went wrong under tonic's generic "transport error": the sources, `: `-separated,
/// each said once.
fn error_chain(e: &tonic::transport::Error) -> String {
    let Some(first) = e.source() else {
        return e.to_string();
    };
    let mut text = first.to_string();
    for source in chain(first).skip(1) {
        let s = source.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    #[test]
    fn a_token_goes_out_as_a_bearer_header() {
        let mut bearer = Bearer::new(Some("secret")).expect("ascii");
        let request = bearer.call(Request::new(())).expect("sent");
        assert_eq!(
            request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer secret")
        );
    }

    #[test]
    fn an_empty_token_is_no_token_and_nothing_is_sent() {
        for token in [None, Some(""), Some("  ")] {
            let mut bearer = Bearer::new(token).expect("no token is valid");
            let status = bearer.call(Request::new(())).expect_err("not sent");
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert_eq!(status.message(), NO_TOKEN);
        }
    }

    #[test]
    fn the_token_is_not_shown_in_debug_output() {
        let bearer = Bearer::new(Some("secret")).expect("ascii");
        assert!(!format!("{bearer:?}").contains("secret"));
    }

    #[test]
    fn bad_settings_are_usage_errors() {
        assert!(Connector::new(DEFAULT_GATEWAY, Some("t"), None).is_ok());
        let token = Connector::new(DEFAULT_GATEWAY, Some("bad\ntoken"), None);
        assert!(matches!(token, Err(ClientError::Token)));
        let address = Connector::new("not a uri", Some("t"), None);
        assert!(matches!(address, Err(ClientError::Address(_))));
        let missing = Path::new("/nonexistent/ca.pem");
        let ca = Connector::new("https://127.0.0.1:1", Some("t"), Some(missing));
        assert!(matches!(ca, Err(ClientError::CaCertRead { .. })));
        assert!(ca.is_err_and(|e| e.is_usage()));
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let path = std::env::temp_dir().join(format!("penwatch-not-a-ca-{}.pem", free_port()));
        std::fs::write(&path, "not a certificate\n").expect("write");
        let r = Connector::new("https://127.0.0.1:1", None, Some(&path));
        let _ = std::fs::remove_file(&path);
        assert!(matches!(r, Err(ClientError::CaCertPem { .. })), "{r:?}");
    }

    #[test]
    fn gateways_are_listed_with_commas_or_one_per_flag() {
        let one = gateway_list(&["http://a:1"]).expect("one");
        assert_eq!(one, ["http://a:1"]);
        let both = gateway_list(&["http://a:1, http://b:2,", "http://c:3"]).expect("three");
        assert_eq!(both, ["http://a:1", "http://b:2", "http://c:3"]);
        assert!(matches!(
            gateway_list(&["http://a:1,http://a:1"]),
            Err(ClientError::DuplicateGateway(_))
        ));
        let none = gateway_list(&[" , "]).expect_err("no address");
        assert!(matches!(none, ClientError::NoGateway) && none.is_usage());
    }

    #[test]
    fn the_ca_file_is_not_read_for_plain_http() {
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(Connector::new(DEFAULT_GATEWAY, None, Some(missing)).is_ok());
    }

    #[tokio::test]
    async fn nothing_listening_is_reported_as_unreachable() {
        let gateway = format!("http://127.0.0.1:{}", free_port());
        let e = connect(&gateway, Some("t"), None)
            .await
            .expect_err("nothing there");
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains(&gateway), "{text}");
        assert!(text.contains("refused"), "{text}");
        assert!(!e.is_usage());
    }

    #[tokio::test]
    async fn a_failed_handshake_is_reported_as_tls_not_as_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let gateway = format!("https://127.0.0.1:{port}");
        let e = connect(&gateway, Some("t"), None)
            .await
            .expect_err("not TLS");
        assert!(matches!(e, ClientError::Tls { .. }), "{e:?}");
        assert!(!e.to_string().contains("is it running"), "{e}");
        assert!(e.to_string().contains("the port does not speak TLS"), "{e}");
    }
}
