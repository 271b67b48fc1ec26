//! `violations --follow` as a feed: each violation once when it is raised and once when it is
//! final; the updates between (a growing excursion) only when asked for.

use std::collections::HashSet;

use penwatch_proto::v1 as pb;

/// What a streamed violation is to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The first record of a violation.
    New,
    /// A later record while its session is open (the evidence grew).
    Update,
    /// Its final record: the session closed.
    Final,
}

impl Kind {
    /// The mark printed before the line.
    pub fn mark(self) -> &'static str {
        match self {
            Kind::New => "NEW",
            Kind::Update => "update",
            Kind::Final => "FINAL",
        }
    }
}

/// The violations seen open so far.
#[derive(Default)]
pub struct Feed {
    open: HashSet<(String, String)>,
}

impl Feed {
    /// What `v` is, and whether to print it (`updates`: print every update too).
    pub fn classify(&mut self, v: &pb::Violation, updates: bool) -> Option<Kind> {
        let key = (v.device_id.clone(), v.session_id.clone());
        let kind = if v.r#final {
            self.open.remove(&key);
            Kind::Final
        } else if self.open.insert(key) {
            Kind::New
        } else {
            Kind::Update
        };
        (kind != Kind::Update || updates).then_some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(session: &str, is_final: bool) -> pb::Violation {
        pb::Violation {
            device_id: "pen".into(),
            session_id: session.into(),
            r#final: is_final,
            ..pb::Violation::default()
        }
    }

    #[test]
    fn a_growing_violation_is_printed_when_raised_and_when_final_only() {
        let mut feed = Feed::default();
        let shown: Vec<Option<Kind>> = [false, false, false, true]
            .iter()
            .map(|f| feed.classify(&violation("s", *f), false))
            .collect();
        assert_eq!(shown, [Some(Kind::New), None, None, Some(Kind::Final)]);
    }

    #[test]
    fn updates_are_printed_when_asked_for_and_sessions_are_told_apart() {
        let mut feed = Feed::default();
        assert_eq!(feed.classify(&violation("a", false), true), Some(Kind::New));
        assert_eq!(feed.classify(&violation("b", false), true), Some(Kind::New));
        assert_eq!(
            feed.classify(&violation("a", false), true),
            Some(Kind::Update)
        );
        assert_eq!(
            feed.classify(&violation("a", true), true),
            Some(Kind::Final)
        );
        assert_eq!(
            feed.classify(&violation("c", true), false),
            Some(Kind::Final),
            "a violation found only at the close is final at once"
        );
    }
}
