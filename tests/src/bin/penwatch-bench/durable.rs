//! `durable` and `log`: the simplest consumers that acknowledge a message only once it is on
//! disk, and do nothing else, so the benchmark can show what durability alone costs on the
//! machine it runs on.
//!
//! Both take batches of whatever arrived while the previous one committed (up to
//! [`BATCH_MAX`], the gateway's default), make each durable with one fsync, and only then
//! acknowledge its messages, the PUBACKs of a batch written together. No judging, no sessions,
//! no audit chain, no digest.
//! - [`Store::Sqlite`] (`durable`) keeps the gateway's promises: each raw payload inserted
//!   under its `(device_id, seq)` (taken from the topic and the JSON), once — a primary key,
//!   `INSERT OR IGNORE` for a redelivery — SQLite in WAL mode with `synchronous = FULL`.
//! - [`Store::Log`] (`log`) is the floor under any design that acknowledges after an fsync:
//!   each topic and payload appended to one file as received, no key, no index, no check for
//!   a redelivery (so not exactly-once), `fdatasync` per batch.
//!
//! With an InfluxDB target (`durable-influx`), the SQLite consumer also hands each committed
//! batch's minimal points (as the fast consumer's) to a writer: the simplest exactly-once,
//! durable consumer end to end, with nothing read back from its store.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::Context;
use rumqttc::{Event, Incoming, Packet, PubAck};

/// Largest batch, as the gateway's `batch_max` default.
const BATCH_MAX: usize = 8000;

/// Where a durable consumer stores what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    /// SQLite, each payload once under its `(device_id, seq)`.
    Sqlite,
    /// One append-only file, each payload as received.
    Log,
}

/// A message waiting for its commit.
struct Pending {
    pkid: u16,
    /// The sample's key (empty for [`Store::Log`], which keeps none).
    device_id: String,
    seq: i64,
    topic: String,
    payload: bytes::Bytes,
    /// Its minimal point, where the consumer forwards to InfluxDB.
    point: Option<String>,
}

/// Where a durable consumer forwards what it committed.
pub struct Forward {
    /// InfluxDB's base URL.
    pub influx: String,
    /// The v1 database.
    pub db: String,
}

/// Stores `expect` messages under `dir` (and forwards them to InfluxDB, with `forward`),
/// then says `done`.
pub async fn run(
    port: u16,
    dir: PathBuf,
    store: Store,
    forward: Option<Forward>,
    expect: u64,
) -> anyhow::Result<()> {
    let (client, mut eventloop, early) =
        crate::consumers::subscribe(port, "bench-durable", true).await?;
    let (to_commit, batches) = mpsc::channel::<Pending>();
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel::<Vec<u16>>();
    let (points, writer) = match forward {
        Some(f) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let writer = crate::consumers::write_points(f.influx, f.db, rx, expect);
            (Some(tx), Some(tokio::spawn(writer)))
        }
        None => (None, None),
    };
    let forwarding = points.is_some();
    let committer =
        std::thread::spawn(move || commit_loop(&dir, store, batches, acks_tx, points, expect));
    let pending = |p: rumqttc::Publish| -> anyhow::Result<Pending> {
        let (device_id, seq, point) = match store {
            Store::Sqlite => {
                let v: serde_json::Value = serde_json::from_slice(&p.payload)?;
                let device_id = crate::consumers::device_of(&p.topic);
                let point = forwarding.then(|| crate::consumers::minimal_line_of(device_id, &v));
                let seq = v["seq"].as_i64().context("no seq")?;
                (device_id.to_owned(), seq, point)
            }
            Store::Log => (String::new(), 0, None),
        };
        Ok(Pending {
            pkid: p.pkid,
            device_id,
            seq,
            topic: p.topic,
            payload: p.payload,
            point,
        })
    };
    for p in early {
        to_commit
            .send(pending(p)?)
            .ok()
            .context("committer stopped")?;
    }
    loop {
        tokio::select! {
            biased;
            batch = acks.recv() => {
                let Some(batch) = batch else { break };
                let network = eventloop.network.as_mut().context("not connected")?;
                for pkid in batch {
                    network.write(Packet::PubAck(PubAck::new(pkid))).await?;
                }
                network.flush().await?;
            }
            event = eventloop.poll() => {
                if let Event::Incoming(Incoming::Publish(p)) = event? {
                    to_commit.send(pending(p)?).ok().context("committer stopped")?;
                }
            }
        }
    }
    committer.join().expect("committer thread")?;
    match writer {
        // The writer says `done` once InfluxDB holds every point.
        Some(writer) => writer.await??,
        None => println!("done"),
    }
    client.disconnect().await?;
    Ok(())
}

/// Commits what arrived, batch after batch, hands each batch's packet ids back to be
/// acknowledged and its points, if any, to the writer; returns after `expect` messages.
fn commit_loop(
    dir: &std::path::Path,
    store: Store,
    batches: mpsc::Receiver<Pending>,
    acks: tokio::sync::mpsc::UnboundedSender<Vec<u16>>,
    points: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    expect: u64,
) -> anyhow::Result<()> {
    let mut db = match store {
        Store::Sqlite => Disk::Sqlite(open_sqlite(dir)?),
        Store::Log => Disk::Log(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("durable.log"))?,
            Vec::new(),
        ),
    };
    let mut committed = 0u64;
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while committed < expect {
        batch.push(batches.recv().context("the MQTT side stopped")?);
        while batch.len() < BATCH_MAX {
            match batches.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        db.commit(&batch)?;
        committed += batch.len() as u64;
        let mut pkids = Vec::with_capacity(batch.len());
        for m in batch.drain(..) {
            pkids.push(m.pkid);
            if let (Some(points), Some(point)) = (&points, m.point) {
                points.send(point).ok().context("the writer stopped")?;
            }
        }
        acks.send(pkids).ok().context("the MQTT side stopped")?;
    }
    Ok(())
}

/// An open store.
enum Disk {
    Sqlite(rusqlite::Connection),
    /// The file and a buffer a batch is written from.
    Log(std::fs::File, Vec<u8>),
}

impl Disk {
    /// Makes `batch` durable: one transaction, or one write, then one fsync.
    fn commit(&mut self, batch: &[Pending]) -> anyhow::Result<()> {
        match self {
            Disk::Sqlite(db) => {
                let tx = db.transaction()?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT OR IGNORE INTO readings (device_id, seq, payload) \
                         VALUES (?1, ?2, ?3)",
                    )?;
                    for m in batch {
                        insert.execute(rusqlite::params![m.device_id, m.seq, &m.payload[..]])?;
                    }
                }
                tx.commit()?;
            }
            Disk::Log(file, buf) => {
                buf.clear();
                for m in batch {
                    for part in [m.topic.as_bytes(), &m.payload[..]] {
                        buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
                        buf.extend_from_slice(part);
                    }
                }
                file.write_all(buf)?;
                file.sync_data()?;
            }
        }
        Ok(())
    }
}

fn open_sqlite(dir: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(dir.join("durable.db"))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS readings (device_id TEXT NOT NULL, seq INTEGER NOT NULL, \
         payload BLOB NOT NULL, PRIMARY KEY (device_id, seq))",
        [],
    )?;
    Ok(db)
}
