//! The harness starts each real server on a free loopback port and stops it on drop.

use penwatch_tests::{InfluxV1, Mosquitto, VictoriaMetrics, http_status};

#[test]
fn mosquitto_starts_and_stops() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let port = broker.port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(broker);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn influxdb_restarts_with_its_data() {
    let mut influx = InfluxV1::start().expect("influxd starts");
    assert_eq!(
        http_status(influx.port(), "POST", "/query?q=CREATE%20DATABASE%20d"),
        Some(200)
    );
    influx.stop();
    assert_eq!(http_status(influx.port(), "GET", "/ping"), None);
    influx.restart().expect("influxd restarts");
    assert_eq!(http_status(influx.port(), "GET", "/ping"), Some(204));
}

#[test]
fn victoria_metrics_answers_health() {
    let vm = VictoriaMetrics::start().expect("victoria-metrics starts");
    assert!(vm.url().starts_with("http://127.0.0.1:"));
}
