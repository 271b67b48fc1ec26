//! The API's limits against a real gateway: oversized ids and filters, undecodable requests,
//! sequence numbers beyond the journal's range, an existence oracle, and idle connections.

use std::time::{Duration, Instant};

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use penwatch_tests::api::{MANAGER, REVIEWER, Setup, filter, req, sessions_req};
use prost::bytes::{Buf, BufMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_stream::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Longest `grpc-message` the limits allow (a quoted prefix and some words).
const SHORT: usize = 200;

fn get(device: &str, session: &str) -> pb::GetSessionRequest {
    pb::GetSessionRequest {
        device_id: device.into(),
        session_id: session.into(),
        max_points: 0,
    }
}

/// A 20,000-character clinic id (outside the manager's scope too) or device id is
/// INVALID_ARGUMENT, and the message quotes only a short prefix of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_20000_character_id_is_an_invalid_argument_with_a_short_message() {
    let setup = Setup::start().await;
    let mut c = setup.client().await;
    let long = "c".repeat(20_000);
    for token in [MANAGER, REVIEWER] {
        let status = c
            .list_sessions(req(sessions_req(filter(&[long.as_str()], false)), token))
            .await
            .expect_err("too long");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().len() < SHORT, "{}", status.message());
        assert!(status.message().contains("longer than 128 bytes"));
    }
    let status = c
        .get_session(req(get(&long, "s-1"), REVIEWER))
        .await
        .expect_err("too long");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < SHORT, "{}", status.message());
}

/// A filter of 40,000 device ids is INVALID_ARGUMENT, and nothing of it reaches the log.
#[tokio::test(flavor = "multi_thread")]
async fn a_filter_of_40000_device_ids_is_an_invalid_argument() {
    let setup = Setup::start().await;
    let mut c = setup.client().await;
    let f = pb::Filter {
        device_ids: (0..40_000).map(|i| format!("pen-{i:05}")).collect(),
        ..pb::Filter::default()
    };
    let status = c
        .list_sessions(req(sessions_req(Some(f.clone())), REVIEWER))
        .await
        .expect_err("too many");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "filter.device_ids has 40000 entries; at most 1000 are accepted"
    );
    let export = pb::ExportRequest {
        filter: Some(f),
        format: "csv".into(),
        include_samples: false,
    };
    let status = c
        .export_depth_log(req(export, REVIEWER))
        .await
        .expect_err("too many");
    assert_eq!(status.code(), Code::InvalidArgument);
    let log = setup.gateway().log();
    assert!(
        !log.contains("pen-39999") && !log.contains("SELECT"),
        "{log}"
    );
}

/// Bytes as they are, for sending what no generated client would.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// A request whose bytes are not protobuf is INVALID_ARGUMENT, not INTERNAL.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_protobuf_bytes_are_an_invalid_argument() {
    let setup = Setup::start().await;
    setup.client().await;
    let channel = Channel::from_shared(setup.api.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    // Field 1, length-delimited, claiming far more bytes than follow; then a bad wire type.
    for garbage in [vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01], vec![0x0f; 32]] {
        for rpc in ["ListSessions", "GetSession", "ExportDepthLog"] {
            grpc.ready().await.expect("ready");
            let path =
                PathAndQuery::try_from(format!("/penwatch.v1.PenWatch/{rpc}")).expect("path");
            let status = match rpc {
                "ExportDepthLog" => grpc
                    .server_streaming(req(garbage.clone(), REVIEWER), path, RawCodec)
                    .await
                    .map(|_| ())
                    .expect_err("garbage"),
                _ => grpc
                    .unary(req(garbage.clone(), REVIEWER), path, RawCodec)
                    .await
                    .map(|_| ())
                    .expect_err("garbage"),
            };
            assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
            assert!(status.message().len() < SHORT, "{}", status.message());
        }
    }
}

/// A `seq` of 2^63 (beyond the journal's signed 64-bit column) is quarantined with its reason,
/// never stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_seq_of_2_63_is_quarantined() {
    let mut setup = Setup::start().await;
    let t = |seq: u64, event: Event| Telemetry {
        device_id: "pen-a".into(),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Salon.into(),
        model: "Pen-X".into(),
        firmware: "2.1.0".into(),
        operator_id: "op-c01-1".into(),
        session_id: "s-big".into(),
        cartridge_id: "cart-big".into(),
        cartridge_model: "N12".into(),
        seq,
        timestamp_ms: 1_790_000_000_000,
        event: event.into(),
        depth_mm: 0.0,
        session_strokes: 0,
        cartridge_strokes: 0,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: Zone::Cheek.into(),
    };
    setup.publish(&t(1 << 63, Event::SessionStart)).await;
    setup.publish(&t(u64::MAX, Event::SessionStart)).await;
    setup.wait_committed();
    let mut c = setup.client().await;
    let q = c
        .list_quarantine(req(pb::ListQuarantineRequest::default(), REVIEWER))
        .await
        .expect("quarantine")
        .into_inner();
    let reasons: Vec<&str> = q.messages.iter().map(|m| m.reason.as_str()).collect();
    assert_eq!(
        reasons.iter().filter(|r| r.contains("2^63-1")).count(),
        2,
        "{reasons:?}"
    );
    assert!(
        reasons.contains(
            &"field seq: 9223372036854775808 is above the largest sequence number, 2^63-1"
        )
    );
    let sessions = c
        .list_sessions(req(sessions_req(None), REVIEWER))
        .await
        .expect("sessions")
        .into_inner()
        .sessions;
    assert!(sessions.is_empty(), "{sessions:?}");
}

/// For a clinic manager, another clinic's existing session and a missing one get the same
/// status and the same message (each naming the ids asked for): existence does not leak.
#[tokio::test(flavor = "multi_thread")]
async fn another_clinics_session_and_a_missing_one_get_the_same_answer() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    let mut c = setup.client().await;
    let other = c
        .get_session(req(get("pen-b", "s-b1"), MANAGER))
        .await
        .expect_err("other clinic");
    let missing = c
        .get_session(req(get("pen-b", "s-b9"), MANAGER))
        .await
        .expect_err("missing");
    assert_eq!(other.code(), Code::NotFound);
    assert_eq!(missing.code(), other.code());
    assert_eq!(
        other.message(),
        "no session \"pen-b\"/\"s-b1\" in the journal"
    );
    assert_eq!(
        missing.message(),
        other.message().replace("s-b1", "s-b9"),
        "same shape"
    );
    assert_eq!(other.metadata().len(), missing.metadata().len());
    let found = c
        .get_session(req(get("pen-b", "s-b1"), REVIEWER))
        .await
        .expect("in the reviewer's scope");
    assert!(found.into_inner().session.is_some());
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_default()
}

/// Waits until `done`, at most `within`.
async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 2,000 idle TCP connections: the gateway keeps at most `max_connections` of them, still
/// answers a real call at once, its memory stays bounded, and every idle connection is
/// closed after the handshake timeout; a stream in progress outlives the idle and request
/// timeouts.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_bounded_and_closed_and_the_api_keeps_serving() {
    rlimit::increase_nofile_limit(10_000).expect("open-files limit");
    let setup = Setup::start_with(concat!(
        "max_connections = 200\n",
        "handshake_timeout_s = 3\n",
        "idle_timeout_s = 2\n",
        "request_timeout_s = 1\n",
    ))
    .await;
    let pid = setup.gateway().pid().expect("running");
    let mut c = setup.client().await;
    c.who_am_i(req(pb::WhoAmIRequest {}, REVIEWER))
        .await
        .expect("whoami");
    let mut fleet = c
        .watch_fleet(req(pb::WatchFleetRequest::default(), REVIEWER))
        .await
        .expect("stream")
        .into_inner();
    let (fds_before, rss_before) = (open_fds(pid), proc_status(pid, "VmRSS:"));

    let port = setup.api.rsplit(':').next().expect("port");
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(
            TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .expect("connect"),
        );
    }
    let mut fresh = setup.client().await;
    let started = Instant::now();
    fresh
        .who_am_i(req(pb::WhoAmIRequest {}, REVIEWER))
        .await
        .expect("the API answers beside 2,000 idle connections");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Evicted connections close as soon as their tasks run.
    eventually(
        Duration::from_secs(2),
        "at most max_connections open",
        || open_fds(pid) <= fds_before + 200 + 1,
    )
    .await;
    let rss = proc_status(pid, "VmRSS:");
    assert!(
        rss < rss_before + 24 * 1024,
        "RSS {rss} kB, {rss_before} kB before"
    );

    eventually(Duration::from_secs(10), "idle connections closed", || {
        open_fds(pid) <= fds_before
    })
    .await;
    for stream in &mut idle {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "an idle connection is still open");
    }
    eventually(Duration::from_secs(5), "memory back down", || {
        proc_status(pid, "VmRSS:") < rss_before + 16 * 1024
    })
    .await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let still_open = tokio::time::timeout(Duration::from_millis(300), fleet.next()).await;
    assert!(
        still_open.is_err(),
        "a stream in progress outlives the idle and request timeouts: {still_open:?}"
    );
    fresh
        .who_am_i(req(pb::WhoAmIRequest {}, REVIEWER))
        .await
        .expect("a client reconnects after its idle connection was closed");
}

/// Idle connections, some still in their handshake, do not hold up the gateway's shutdown.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_stops_promptly_with_idle_connections_open() {
    let mut setup = Setup::start().await;
    setup.client().await;
    let port = setup.api.rsplit(':').next().expect("port").to_owned();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let gateway = setup.gateway_mut();
    assert!(gateway.terminate().expect("terminate"), "{}", gateway.log());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
