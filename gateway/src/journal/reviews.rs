//! Signed reviews and the policy history: the rows a report, an export and `review list`
//! read, and the one connection that writes signatures.
//!
//! A signature is written by [`Signatures`], a connection that writes only `reviews` rows
//! and their chain entries: each in one write transaction (SQLite serialises it with the
//! committer's, retention's and the access log's), the chain head read inside it, so the
//! head a signature binds is exactly the chain as it stood.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{self, REVIEW_COLUMNS};
use super::verify::Broken;
use super::{Access, Reader, Result, connect};
use crate::audit::{self, Entry, Record, SignedReview};
use crate::review;

/// A signed review as stored (the row is exactly its chained record).
pub type ReviewRow = SignedReview;

/// One period a policy version was in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionRow {
    /// Version id.
    pub version: String,
    /// When it came into force (the committer first used it), gateway time, Unix ms.
    pub from_ms: i64,
    /// When the next version came into force; `None` while it is in force.
    pub until_ms: Option<i64>,
    /// The policy file's full text ("" for the built-in defaults).
    pub text: String,
}

/// Who signs: the token's name and role, from the API's authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    /// Token name.
    pub token: String,
    /// Its role.
    pub role: String,
}

/// The connection that writes signed reviews and their chain entries, nothing else.
pub struct Signatures {
    conn: Mutex<Connection>,
}

impl Signatures {
    /// Opens the journal at `path` (created by the committer first) for signing.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            conn: Mutex::new(connect(path, Access::Upkeep)?),
        })
    }

    /// Records a signature of `request` by `by` at `signed_ms`, bound to the chain entry
    /// whose hash is `head` (the chain's head when `None`), and chains it, in one
    /// transaction. `Ok(None)` when `head` is not a hash in the chain.
    pub fn sign(
        &self,
        request: &review::Request,
        by: &SignedBy,
        signed_ms: i64,
        head: Option<&str>,
    ) -> Result<Option<ReviewRow>> {
        let conn = match self.conn.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = write(&conn, request, by, signed_ms, head);
        match result {
            Ok(Some(row)) => {
                conn.execute_batch("COMMIT")?;
                Ok(Some(row))
            }
            other => {
                let _ = conn.execute_batch("ROLLBACK");
                other
            }
        }
    }
}

fn write(
    conn: &Connection,
    request: &review::Request,
    by: &SignedBy,
    signed_ms: i64,
    head: Option<&str>,
) -> Result<Option<ReviewRow>> {
    let (head_seq, head_hash) = match head {
        None => rows::chain_head(conn)?,
        Some(hash) if hash == audit::GENESIS => (0, hash.to_owned()),
        Some(hash) => {
            let seq: Option<i64> = conn
                .prepare_cached("SELECT seq FROM audit_chain WHERE hash = ?1")?
                .query_row([hash], |r| r.get("seq"))
                .optional()?;
            match seq {
                Some(seq) => (seq, hash.to_owned()),
                None => return Ok(None),
            }
        }
    };
    let mut row = ReviewRow {
        id: 0,
        signer: request.signer.clone(),
        token: by.token.clone(),
        role: by.role.clone(),
        meaning: request.meaning.as_str().to_owned(),
        clinic_id: request.clinic_id.clone(),
        from_ms: request.from_ms,
        until_ms: request.until_ms,
        signed_ms,
        head_seq,
        head_hash,
    };
    conn.prepare_cached(&format!(
        "INSERT INTO reviews ({REVIEW_COLUMNS}) VALUES (NULL, {})",
        rows::placeholders(rows::count(REVIEW_COLUMNS) - 1)
    ))?
    .execute(params![
        row.signer,
        row.token,
        row.role,
        row.meaning,
        row.clinic_id,
        row.from_ms,
        row.until_ms,
        row.signed_ms,
        row.head_seq,
        row.head_hash
    ])?;
    row.id = conn.last_insert_rowid();
    rows::append_audit(conn, &Record::Review(row.clone()))?;
    Ok(Some(row))
}

impl Reader {
    /// Signed reviews, newest first: of the clinics in `clinics` (every clinic when `None`)
    /// whose period overlaps `[from_ms, to_ms)` (open ends when `None`). Signatures are made
    /// by people, a few a day: they are read whole and filtered here.
    pub fn reviews(
        &self,
        clinics: Option<&[String]>,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<ReviewRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {REVIEW_COLUMNS} FROM reviews ORDER BY id DESC"
        ))?;
        let all = stmt
            .query_map([], rows::review)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(all
            .into_iter()
            .filter(|r| clinics.is_none_or(|c| c.contains(&r.clinic_id)))
            .filter(|r| review::overlaps(r.from_ms, Some(r.until_ms), from_ms, to_ms))
            .collect())
    }

    /// Every period a policy version was in force, oldest first, with its full text.
    pub fn policy_history(&self) -> Result<Vec<PolicyVersionRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.version, f.from_ms, LEAD(f.from_ms) OVER (ORDER BY f.id) AS until_ms,
                IFNULL(v.text, '') AS text
             FROM policy_in_force f LEFT JOIN policy_versions v ON v.version = f.version
             ORDER BY f.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PolicyVersionRow {
                version: r.get("version")?,
                from_ms: r.get("from_ms")?,
                until_ms: r.get("until_ms")?,
                text: r.get("text")?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The policy versions in force at some time in `[from_ms, to_ms)` (open ends when
    /// `None`), oldest first.
    pub fn policy_versions_in(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<PolicyVersionRow>> {
        Ok(self
            .policy_history()?
            .into_iter()
            .filter(|p| review::overlaps(p.from_ms, p.until_ms, from_ms, to_ms))
            .collect())
    }

    /// The chain's last entry: position and hash (0 and the genesis hash when empty).
    pub fn chain_head(&self) -> Result<(i64, String)> {
        rows::chain_head(&self.conn)
    }

    /// Whether the journal holds a session or a pen of the clinic.
    pub fn clinic_in_journal(&self, clinic_id: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE clinic_id = ?1)
                OR EXISTS (SELECT 1 FROM devices WHERE clinic_id = ?1)",
            )?
            .query_row([clinic_id], |r| r.get(0))?)
    }

    /// Every review row against its chain entry, every entry against its row, and every
    /// bound head against the chain (`entries`, whose links are already checked).
    pub(super) fn check_reviews(
        &self,
        chained: &HashMap<i64, (i64, SignedReview)>,
        entries: &[Entry],
    ) -> Result<Broken> {
        // A journal verified before a gateway with reviews first ran on it has no table yet.
        let present: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'reviews')",
            [],
            |r| r.get(0),
        )?;
        let stored = if present {
            self.reviews(None, None, None)?
        } else {
            Vec::new()
        };
        for row in &stored {
            let broken = match chained.get(&row.id) {
                None => (0, format!("review {} has no audit entry", row.id)),
                Some((seq, e)) if e != row => (
                    *seq,
                    format!("review {} as stored differs from its audit entry", row.id),
                ),
                Some((seq, e)) if !head_in(entries, e, *seq) => (
                    *seq,
                    format!(
                        "review {} is bound to chain entry {} with a hash the chain does not \
                         hold there",
                        row.id, e.head_seq
                    ),
                ),
                Some(_) => continue,
            };
            return Ok(Some(broken));
        }
        let ids: HashSet<i64> = stored.iter().map(|r| r.id).collect();
        Ok(chained
            .iter()
            .filter(|(id, _)| !ids.contains(*id))
            .min_by_key(|(_, (seq, _))| *seq)
            .map(|(id, (seq, _))| (*seq, format!("review {id} is in the chain but not stored"))))
    }
}

/// Whether the head a review entry at `seq` binds is an earlier entry of the chain.
fn head_in(entries: &[Entry], r: &SignedReview, seq: i64) -> bool {
    if r.head_seq == 0 {
        return r.head_hash == audit::GENESIS;
    }
    r.head_seq < seq
        && usize::try_from(r.head_seq - 1)
            .ok()
            .and_then(|i| entries.get(i))
            .is_some_and(|e| e.seq == r.head_seq && e.hash == r.head_hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Sync, Writer};
    use crate::review::Request;

    fn by() -> SignedBy {
        SignedBy {
            token: "reviewer".into(),
            role: "reviewer".into(),
        }
    }

    #[test]
    fn a_signature_is_chained_bound_to_the_head_before_it_and_verifies() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let writer = Writer::open(&path, Sync::Normal).expect("open");
        let (head_seq, head_hash) = writer.chain_head().expect("head");
        let signatures = Signatures::open(&path).expect("signatures");
        let request =
            Request::new("Dr Ann Example", "approved", "c01", 1000, 2000).expect("request");
        let row = signatures
            .sign(&request, &by(), 5000, None)
            .expect("sign")
            .expect("signed");
        assert_eq!((row.head_seq, row.head_hash.clone()), (head_seq, head_hash));
        assert_eq!(writer.chain_head().expect("head").0, head_seq + 1);
        assert_eq!(
            writer.reviews(None, None, None).expect("list"),
            std::slice::from_ref(&row)
        );
        assert_eq!(
            writer
                .reviews(Some(&["c02".to_owned()]), None, None)
                .expect("list"),
            []
        );
        assert_eq!(
            writer.reviews(None, Some(2000), None).expect("list"),
            [],
            "the period ends before"
        );
        let v = writer.verify().expect("verify");
        assert!(v.ok(), "{:?}", v.first_broken);

        let named = signatures
            .sign(&request, &by(), 6000, Some(&row.head_hash))
            .expect("sign")
            .expect("a head in the chain");
        assert_eq!(named.head_seq, row.head_seq);
        assert_eq!(
            signatures
                .sign(&request, &by(), 7000, Some("ab12"))
                .expect("sign"),
            None
        );
        assert_eq!(writer.reviews(None, None, None).expect("list").len(), 2);
    }

    #[test]
    fn a_version_put_back_in_force_is_seen_again_and_the_same_version_again_adds_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = Writer::open(&dir.path().join("j.db"), Sync::Normal).expect("open");
        for (version, at) in [("a", 1000), ("a", 1500), ("b", 2000), ("a", 3000)] {
            let batch = writer.batch().expect("batch");
            batch
                .put_policy_version(version, at, &format!("text of {version}"))
                .expect("version");
            batch.commit().expect("commit");
        }
        let seen = |rows: Vec<PolicyVersionRow>| -> Vec<(String, i64, Option<i64>)> {
            rows.into_iter()
                .map(|p| (p.version, p.from_ms, p.until_ms))
                .collect()
        };
        assert_eq!(
            seen(writer.policy_history().expect("history")),
            [
                ("a".to_owned(), 1000, Some(2000)),
                ("b".to_owned(), 2000, Some(3000)),
                ("a".to_owned(), 3000, None)
            ]
        );
        assert_eq!(
            seen(
                writer
                    .policy_versions_in(Some(2500), Some(2600))
                    .expect("in")
            ),
            [("b".to_owned(), 2000, Some(3000))]
        );
        assert_eq!(
            writer.policy_history().expect("history")[2].text,
            "text of a"
        );
        assert_eq!(writer.policy_loaded_ms("a").expect("loaded"), Some(3000));
    }

    #[test]
    fn a_signature_bound_to_a_head_the_chain_does_not_hold_breaks_the_verification() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let writer = Writer::open(&path, Sync::Normal).expect("open");
        let request = Request::new("Ann", "reviewed", "c01", 1000, 2000).expect("request");
        let conn = connect(&path, Access::Upkeep).expect("connection");
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        let mut row = write(&conn, &request, &by(), 5000, None)
            .expect("write")
            .expect("row");
        // The row and an entry that agree, but on a head that never was.
        row.head_hash = "ff".repeat(32);
        conn.execute(
            "UPDATE reviews SET head_hash = ?1",
            [row.head_hash.as_str()],
        )
        .expect("row");
        conn.execute("DELETE FROM audit_chain WHERE kind = 'review'", [])
            .expect("entry");
        rows::append_audit(&conn, &Record::Review(row)).expect("entry");
        conn.execute_batch("COMMIT").expect("commit");
        let (_, why) = writer
            .verify()
            .expect("verify")
            .first_broken
            .expect("broken");
        assert!(why.contains("with a hash the chain does not hold"), "{why}");
    }

    #[test]
    fn a_signature_copied_to_another_clinic_breaks_the_verification() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let writer = Writer::open(&path, Sync::Normal).expect("open");
        let request = Request::new("Ann", "reviewed", "c01", 1000, 2000).expect("request");
        Signatures::open(&path)
            .expect("signatures")
            .sign(&request, &by(), 5000, None)
            .expect("sign");
        Connection::open(&path)
            .expect("open")
            .execute("UPDATE reviews SET clinic_id = 'c02'", [])
            .expect("edit");
        let (_, why) = writer
            .verify()
            .expect("verify")
            .first_broken
            .expect("broken");
        assert!(why.contains("differs from its audit entry"), "{why}");
    }
}
