//! What a query selects ([`Selection`], as a SQL condition over `sessions s`) and how a
//! listing is keyset-paged ([`Cursor`], [`Order`]).

use rusqlite::types::Value;

/// Which rows a query selects. Empty lists do not filter; `clinics: None` means every clinic
/// and `Some(empty)` means none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Clinics in scope.
    pub clinics: Option<Vec<String>>,
    /// Pen serials.
    pub devices: Vec<String>,
    /// Operator staff ids.
    pub operators: Vec<String>,
    /// Effective device classes (short names).
    pub classes: Vec<String>,
    /// Earliest session start (device time, Unix ms), inclusive.
    pub from_ms: Option<i64>,
    /// Latest session start (device time, Unix ms), exclusive.
    pub to_ms: Option<i64>,
    /// Only sessions that exceeded their permitted depth.
    pub only_exceeded: bool,
}

impl Selection {
    /// Whether the clinic is in scope.
    pub fn clinic_selected(&self, clinic: &str) -> bool {
        self.clinics
            .as_ref()
            .is_none_or(|c| c.iter().any(|x| x == clinic))
    }

    /// Whether a row with these attributes is selected (for devices and live events);
    /// `ts_ms` is checked against the time range.
    pub fn matches(
        &self,
        clinic: &str,
        device: &str,
        operator: &str,
        class: &str,
        ts_ms: i64,
        exceeded: bool,
    ) -> bool {
        let listed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        self.clinic_selected(clinic)
            && listed(&self.devices, device)
            && listed(&self.operators, operator)
            && listed(&self.classes, class)
            && self.from_ms.is_none_or(|f| ts_ms >= f)
            && self.to_ms.is_none_or(|t| ts_ms < t)
            && (!self.only_exceeded || exceeded)
    }

    /// SQL condition over the `sessions` table aliased `s`, and its parameters.
    pub(super) fn condition(&self) -> (String, Vec<Value>) {
        let mut sql = vec!["1".to_owned()];
        let mut args = Vec::new();
        let mut list = |column: &str, values: &[String], sql: &mut Vec<String>| {
            let marks = vec!["?"; values.len()].join(", ");
            sql.push(format!("s.{column} IN ({marks})"));
            args.extend(values.iter().map(|v| Value::Text(v.clone())));
        };
        if let Some(clinics) = &self.clinics {
            if clinics.is_empty() {
                sql.push("0".to_owned());
            } else {
                list("clinic_id", clinics, &mut sql);
            }
        }
        for (column, values) in [
            ("device_id", &self.devices),
            ("operator_id", &self.operators),
            ("device_class", &self.classes),
        ] {
            if !values.is_empty() {
                list(column, values, &mut sql);
            }
        }
        if let Some(f) = self.from_ms {
            sql.push("s.started_ms >= ?".to_owned());
            args.push(Value::Integer(f));
        }
        if let Some(t) = self.to_ms {
            sql.push("s.started_ms < ?".to_owned());
            args.push(Value::Integer(t));
        }
        if self.only_exceeded {
            sql.push(format!(
                "(s.exceeded = 1 OR EXISTS (SELECT 1 {AMENDED} AND a.exceeded = 1))"
            ));
        }
        (sql.join(" AND "), args)
    }
}

/// The last row of a page: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Session start, Unix ms.
    pub started_ms: i64,
    /// Pen serial.
    pub device_id: String,
    /// Session id.
    pub session_id: String,
}

/// Listing order by session start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest first (lists).
    NewestFirst,
    /// Oldest first (export).
    OldestFirst,
}

impl Order {
    pub(super) fn sql(self, after: bool) -> (&'static str, &'static str) {
        match self {
            Order::NewestFirst => (
                if after {
                    "(s.started_ms, s.device_id, s.session_id) < (?, ?, ?)"
                } else {
                    "1"
                },
                "s.started_ms DESC, s.device_id DESC, s.session_id DESC",
            ),
            Order::OldestFirst => (
                if after {
                    "(s.started_ms, s.device_id, s.session_id) > (?, ?, ?)"
                } else {
                    "1"
                },
                "s.started_ms, s.device_id, s.session_id",
            ),
        }
    }
}

/// The amendments of session `s` (a subquery's `FROM` and `WHERE`).
pub(super) const AMENDED: &str =
    "FROM amendments a WHERE a.device_id = s.device_id AND a.session_id = s.session_id";

/// The parameters of a page: the selection's, then the cursor's (if any) and the limit.
pub(super) fn paged_args(mut args: Vec<Value>, after: Option<&Cursor>, limit: u32) -> Vec<Value> {
    if let Some(c) = after {
        args.push(Value::Integer(c.started_ms));
        args.push(Value::Text(c.device_id.clone()));
        args.push(Value::Text(c.session_id.clone()));
    }
    args.push(Value::Integer(i64::from(limit)));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_matches_and_builds_sql() {
        let sel = Selection {
            clinics: Some(vec!["c01".into()]),
            classes: vec!["salon".into()],
            from_ms: Some(10),
            only_exceeded: true,
            ..Selection::default()
        };
        assert!(sel.matches("c01", "p", "o", "salon", 10, true));
        assert!(!sel.matches("c02", "p", "o", "salon", 10, true));
        assert!(!sel.matches("c01", "p", "o", "home", 10, true));
        assert!(!sel.matches("c01", "p", "o", "salon", 9, true));
        assert!(!sel.matches("c01", "p", "o", "salon", 10, false));
        let (sql, args) = sel.condition();
        assert_eq!(
            sql,
            format!(
                "1 AND s.clinic_id IN (?) AND s.device_class IN (?) AND s.started_ms >= ? \
                 AND (s.exceeded = 1 OR EXISTS (SELECT 1 {AMENDED} AND a.exceeded = 1))"
            )
        );
        assert_eq!(args.len(), 3);
        let none = Selection {
            clinics: Some(Vec::new()),
            ..Selection::default()
        };
        assert!(!none.matches("c01", "p", "o", "salon", 0, false));
        assert!(none.condition().0.contains(" AND 0"));
    }
}
