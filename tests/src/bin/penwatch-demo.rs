//! `penwatch-demo`: the whole product on this machine. Starts a broker and InfluxDB on free
//! loopback ports (data in temp dirs), the gateway with the simulated fleet's policy, the
//! simulated fleet, and the dashboard in front of you. Quitting the dashboard (or Ctrl-C)
//! stops all of it and removes the temp dirs.
//!
//! The broker is set up as a deployment must be: every pen has its own password and may
//! publish only its own topics, the gateway may only subscribe, anonymous clients are refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use penwatch_tests::{Gateway, InfluxV1, Mosquitto, binary, fleet_pens, http_status};

/// Fleet the demo simulates: seed, clinics, pens per clinic.
const FLEET: (u64, u32, u32) = (7, 3, 4);
/// Token the dashboard uses (admin role, all clinics).
const DEMO_TOKEN: &str = "demo-admin-token";

fn main() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("penwatch-demo-")
        .tempdir()?;
    let (seed, clinics, pens) = FLEET;
    let sim_args = [
        "--clinics".to_owned(),
        clinics.to_string(),
        "--pens-per-clinic".to_owned(),
        pens.to_string(),
        "--seed".to_owned(),
        seed.to_string(),
    ];
    eprintln!("starting mosquitto (a password and an ACL entry per pen) and InfluxDB…");
    let broker = Mosquitto::start_authenticated(fleet_pens(seed, clinics, pens))?;
    let influx = InfluxV1::start()?;

    let policy = dir.path().join("policy.toml");
    let out = Command::new(binary("penwatch-sim")?)
        .args(&sim_args)
        .arg("--print-policy")
        .output()
        .context("running penwatch-sim --print-policy")?;
    if !out.status.success() {
        bail!(
            "penwatch-sim --print-policy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&policy, &out.stdout)?;

    if http_status(
        influx.port(),
        "POST",
        "/query?q=CREATE%20DATABASE%20penwatch",
    ) != Some(200)
    {
        bail!("could not create the InfluxDB database");
    }
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, gateway_config(&policy, &influx.url()))?;
    eprintln!("starting the gateway…");
    let gateway = Gateway::start_on(
        &broker,
        dir.path(),
        &["--config", &config.display().to_string()],
    )?;

    eprintln!("starting the simulated fleet ({clinics} clinics × {pens} pens, each as itself)…");
    let credentials = broker
        .credentials_file()
        .context("the demo broker has no pen credentials")?;
    let mut sim = Command::new(binary("penwatch-sim")?)
        .args(&sim_args)
        .args(["--broker", &broker.url(), "--speed", "20"])
        .arg("--credentials")
        .arg(&credentials)
        .args([
            "--scenario",
            "normal,over-depth,cartridge-reuse,unknown-operator,malformed",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting penwatch-sim")?;

    let result = foreground(&gateway);
    stop(&mut sim);
    drop(gateway);
    drop(influx);
    drop(broker);
    eprintln!("stopped; temporary data removed");
    result
}

fn gateway_config(policy: &Path, influx_url: &str) -> String {
    format!(
        "[policy]\npath = \"{policy}\"\n\n\
         [sessions]\ninactivity_timeout_s = 120\n\n\
         [[api.tokens]]\nname = \"demo\"\ntoken = \"{DEMO_TOKEN}\"\nrole = \"admin\"\n\n\
         [influx]\napi = \"v1\"\nurl = \"{influx_url}\"\ndatabase = \"penwatch\"\n",
        policy = policy.display(),
    )
}

/// Runs the dashboard in the foreground until the user quits it.
fn foreground(gateway: &Gateway) -> anyhow::Result<()> {
    let status = Command::new(binary("penwatch-dashboard")?)
        .args([
            "--gateway",
            &format!("http://127.0.0.1:{}", gateway.api_port()),
            "--token",
            DEMO_TOKEN,
        ])
        .status()
        .context("starting penwatch-dashboard")?;
    if !status.success() {
        eprintln!(
            "the dashboard exited with {status}; gateway log:\n{}",
            gateway.log()
        );
    }
    Ok(())
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
