//! A session's samples digest, kept as its samples are journaled, so that closing the
//! session does not read them back.

use crate::audit::SampleDigest;
use crate::audit::lines::DigestFields;

/// The digest of an open session's journaled samples so far, each added as it was journaled.
/// While they came in increasing `seq`, each as the first version of its `seq`, it is what
/// reading them back in `seq` order hashes; a session whose samples did not (see
/// [`crate::sessions::Session::needs_refold`] and `conflicting`) is digested from the journal
/// when it closes.
#[derive(Debug, Default, Clone)]
pub struct RunningDigest {
    digest: SampleDigest,
    samples: u64,
    last_id: i64,
}

impl RunningDigest {
    /// Adds a sample journaled under `id`.
    pub fn add(&mut self, id: i64, fields: &DigestFields<'_>) {
        self.digest.add_fields(fields);
        self.samples += 1;
        self.last_id = self.last_id.max(id);
    }

    /// How many samples it covers, the highest journal id among them and the hex digest.
    pub fn finish(self) -> (u64, i64, String) {
        (self.samples, self.last_id, self.digest.finish())
    }
}
