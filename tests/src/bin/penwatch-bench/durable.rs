//! `durable`: the simplest consumer that keeps the gateway's durability promises and nothing
//! else, so the benchmark can show what durability alone costs on the machine it runs on.
//!
//! Each message's raw payload is inserted under its `(device_id, seq)` (taken from the topic
//! and the JSON), once: a primary key, `INSERT OR IGNORE` for a redelivery. Batches are
//! whatever arrived while the previous one committed (up to [`BATCH_MAX`], the gateway's
//! default), one transaction each, SQLite in WAL mode with `synchronous = FULL` (an fsync per
//! commit), and a message is acknowledged only after its batch committed, the PUBACKs of a
//! batch written together. No judging, no sessions, no audit chain, no digest.

use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::Context;
use rumqttc::{Event, Incoming, Packet, PubAck};

/// Largest batch, as the gateway's `batch_max` default.
const BATCH_MAX: usize = 8000;

/// A message waiting for its commit.
struct Pending {
    pkid: u16,
    device_id: String,
    seq: i64,
    payload: bytes::Bytes,
}

/// Stores `expect` messages in `dir/durable.db`, then says `done`.
pub async fn run(port: u16, dir: PathBuf, expect: u64) -> anyhow::Result<()> {
    let (client, mut eventloop, early) =
        crate::consumers::subscribe(port, "bench-durable", true).await?;
    let (to_commit, batches) = mpsc::channel::<Pending>();
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel::<Vec<u16>>();
    let committer = std::thread::spawn(move || commit_loop(&dir, batches, acks_tx, expect));
    let pending = |p: rumqttc::Publish| -> anyhow::Result<Pending> {
        let device_id = p.topic.split('/').nth(3).unwrap_or("unknown").to_owned();
        let v: serde_json::Value = serde_json::from_slice(&p.payload)?;
        let seq = v["seq"].as_i64().context("no seq")?;
        Ok(Pending {
            pkid: p.pkid,
            device_id,
            seq,
            payload: p.payload,
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
    println!("done");
    client.disconnect().await?;
    Ok(())
}

/// Commits what arrived, batch after batch, and hands each batch's packet ids back to be
/// acknowledged; returns after `expect` messages.
fn commit_loop(
    dir: &std::path::Path,
    batches: mpsc::Receiver<Pending>,
    acks: tokio::sync::mpsc::UnboundedSender<Vec<u16>>,
    expect: u64,
) -> anyhow::Result<()> {
    let mut db = rusqlite::Connection::open(dir.join("durable.db"))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS readings (device_id TEXT NOT NULL, seq INTEGER NOT NULL, \
         payload BLOB NOT NULL, PRIMARY KEY (device_id, seq))",
        [],
    )?;
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
        let tx = db.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO readings (device_id, seq, payload) VALUES (?1, ?2, ?3)",
            )?;
            for m in &batch {
                insert.execute(rusqlite::params![m.device_id, m.seq, &m.payload[..]])?;
            }
        }
        tx.commit()?;
        committed += batch.len() as u64;
        acks.send(batch.drain(..).map(|m| m.pkid).collect())
            .ok()
            .context("the MQTT side stopped")?;
    }
    Ok(())
}
