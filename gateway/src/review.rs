//! Signed reviews (21 CFR 11.50/11.70): what a signature means and what a signing request
//! must hold before the journal records it.
//!
//! A signature binds the signer's printed name, the token that signed, its meaning, a
//! clinic, a period of device time and the audit-chain head the signer reviewed; the journal
//! chains it (`journal/reviews.rs`), so it cannot be cut out, edited or copied to another
//! record unseen.

use std::fmt;

/// What a signature means: the allowed set, nothing else is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// The signer reviewed the records.
    Reviewed,
    /// The signer approved them.
    Approved,
    /// The signer takes responsibility for them.
    Responsibility,
}

impl Meaning {
    /// Every meaning, in the order the README lists them.
    pub const ALL: [Meaning; 3] = [
        Meaning::Reviewed,
        Meaning::Approved,
        Meaning::Responsibility,
    ];

    /// The name as stored, chained and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Meaning::Reviewed => "reviewed",
            Meaning::Approved => "approved",
            Meaning::Responsibility => "responsibility",
        }
    }

    /// The meaning named `name` (exactly, lower case).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The allowed names, quoted and joined for an error message.
    pub fn expected() -> String {
        Self::ALL
            .iter()
            .map(|m| format!("\"{}\"", m.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Meaning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest printed name accepted, characters.
pub const MAX_SIGNER_CHARS: usize = 128;

/// A signing request, checked: what the journal records besides the signer's token, the
/// time and the chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The signer's printed name, trimmed.
    pub signer: String,
    /// What the signature means.
    pub meaning: Meaning,
    /// The clinic whose records are signed.
    pub clinic_id: String,
    /// Start of the period, device time, Unix ms, inclusive.
    pub from_ms: i64,
    /// End of the period, device time, Unix ms, exclusive.
    pub until_ms: i64,
}

/// Why a signing request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No printed name.
    #[error("signer: give the signer's printed name (their full name as it should appear)")]
    NoSigner,
    /// A printed name too long or holding control characters.
    #[error(
        "signer: a printed name is at most {MAX_SIGNER_CHARS} characters without control characters"
    )]
    BadSigner,
    /// A meaning outside the allowed set.
    #[error("meaning {given:?} is not allowed: use one of {}", Meaning::expected())]
    Meaning {
        /// What was asked for.
        given: String,
    },
    /// No clinic.
    #[error("clinic_id: give the clinic whose records are signed")]
    NoClinic,
    /// A period that is empty or reversed.
    #[error("the period is empty: from ({from_ms}) must be before until ({until_ms}), Unix ms")]
    Period {
        /// Start asked for.
        from_ms: i64,
        /// End asked for.
        until_ms: i64,
    },
}

impl Request {
    /// Checks the parts of a signing request a person typed.
    pub fn new(
        signer: &str,
        meaning: &str,
        clinic_id: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Self, Refused> {
        let signer = signer.trim();
        if signer.is_empty() {
            return Err(Refused::NoSigner);
        }
        if signer.chars().count() > MAX_SIGNER_CHARS
            || signer.chars().any(penwatch_proto::text::is_control)
        {
            return Err(Refused::BadSigner);
        }
        let meaning = Meaning::parse(meaning).ok_or_else(|| Refused::Meaning {
            given: meaning.chars().take(64).collect(),
        })?;
        if clinic_id.is_empty() {
            return Err(Refused::NoClinic);
        }
        if from_ms >= until_ms {
            return Err(Refused::Period { from_ms, until_ms });
        }
        Ok(Self {
            signer: signer.to_owned(),
            meaning,
            clinic_id: clinic_id.to_owned(),
            from_ms,
            until_ms,
        })
    }
}

/// Whether the period `[from_ms, until_ms)` overlaps the range `[from, to)`, either end of
/// the range open when `None`.
pub fn overlaps(from_ms: i64, until_ms: Option<i64>, from: Option<i64>, to: Option<i64>) -> bool {
    to.is_none_or(|to| from_ms < to) && from.is_none_or(|from| until_ms.is_none_or(|u| u > from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_means_one_of_the_allowed_meanings_and_nothing_else() {
        for m in Meaning::ALL {
            assert_eq!(Meaning::parse(m.as_str()), Some(m));
        }
        let err =
            Request::new("Dr Ann Example", "looked at it", "c01", 0, 1).expect_err("not a meaning");
        assert_eq!(
            err.to_string(),
            "meaning \"looked at it\" is not allowed: use one of \"reviewed\", \"approved\", \
             \"responsibility\""
        );
        assert!(Request::new("Dr Ann Example", "Approved", "c01", 0, 1).is_err());
    }

    #[test]
    fn a_request_needs_a_printed_name_a_clinic_and_a_period_that_is_not_empty() {
        let ok = Request::new("  Dr Ann Example ", "approved", "c01", 1000, 2000).expect("ok");
        assert_eq!(ok.signer, "Dr Ann Example");
        assert_eq!(ok.meaning, Meaning::Approved);
        assert_eq!(
            Request::new(" ", "approved", "c01", 0, 1),
            Err(Refused::NoSigner)
        );
        assert_eq!(
            Request::new("Ann\u{1b}[2J", "approved", "c01", 0, 1),
            Err(Refused::BadSigner)
        );
        assert_eq!(
            Request::new(&"a".repeat(129), "approved", "c01", 0, 1),
            Err(Refused::BadSigner)
        );
        assert_eq!(
            Request::new("Ann", "approved", "", 0, 1),
            Err(Refused::NoClinic)
        );
        for (from, until) in [(2000, 2000), (2000, 1000)] {
            let err = Request::new("Ann", "approved", "c01", from, until).expect_err("empty");
            assert!(err.to_string().contains("must be before until"), "{err}");
        }
    }

    #[test]
    fn periods_overlap_a_range_with_open_ends() {
        assert!(overlaps(10, Some(20), None, None));
        assert!(overlaps(10, Some(20), Some(19), Some(30)));
        assert!(
            !overlaps(10, Some(20), Some(20), None),
            "until is exclusive"
        );
        assert!(!overlaps(10, Some(20), None, Some(10)), "to is exclusive");
        assert!(overlaps(10, None, Some(1_000), None), "still in force");
    }
}
