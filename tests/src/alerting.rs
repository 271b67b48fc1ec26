//! Alert receivers for the tests: Debian's real `prometheus-alertmanager`, and a tiny webhook
//! receiver that records every request as it arrived.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{HarnessError, Server, http_get, http_status};

/// Debian's Prometheus Alertmanager on a free loopback port, clustering off, its data in a
/// temp dir.
pub struct Alertmanager {
    server: Server,
}

impl Alertmanager {
    /// Starts it with a configuration that routes every alert to a receiver that does nothing.
    pub fn start() -> Result<Self, HarnessError> {
        let mut server = Server::new(
            "alertmanager",
            "prometheus-alertmanager",
            "prometheus-alertmanager",
        )?;
        let dir = server.dir.path().to_path_buf();
        let conf = dir.join("alertmanager.yml");
        std::fs::write(
            &conf,
            "route:\n  receiver: none\nreceivers:\n  - name: none\n",
        )?;
        server.args = vec![
            format!("--config.file={}", conf.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{}", server.port),
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ];
        server.spawn(|port| http_status(port, "GET", "/-/ready") == Some(200))?;
        Ok(Self { server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// The active alerts (`GET /api/v2/alerts`), as JSON.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        http_get(self.server.port, "/api/v2/alerts")
            .and_then(|body| serde_json::from_str(&body).ok())
            .unwrap_or_default()
    }
}

/// One request a [`WebhookReceiver`] took.
#[derive(Debug, Clone)]
pub struct Received {
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body as sent.
    pub body: Vec<u8>,
    /// When its body had arrived.
    pub at: Instant,
}

impl Received {
    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// A header's value ("" if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    delay: Duration,
}

/// An HTTP server on a free loopback port that records each POST when it arrives and answers
/// 200 after a settable delay (a receiver slow enough to kill the sender mid-delivery).
pub struct WebhookReceiver {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl WebhookReceiver {
    /// Starts it on its own thread (one more per connection); it lives as long as the test.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        Ok(Self { port, state })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/alerts", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("state").received.clone()
    }

    /// How long it waits before answering from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("state").delay = delay;
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let len = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let delay = {
            let mut s = state.lock().expect("state");
            s.received.push(Received {
                headers,
                body,
                at: Instant::now(),
            });
            s.delay
        };
        std::thread::sleep(delay);
        (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}
