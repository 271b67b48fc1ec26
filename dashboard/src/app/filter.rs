//! The filters the user sets: the time window, clinic, class, operator, "only exceeded" and
//! search, applied to every screen here and sent to the gateway as a [`Query`].

use penwatch_proto::v1::Filter;

use super::App;
use super::message::{Command, Query};
use super::state::Paging;

/// Time range filter, relative to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Window {
    /// No time limit.
    #[default]
    All,
    /// The last hour.
    Hour,
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// The last 30 days.
    Month,
}

impl Window {
    /// Short label.
    pub fn label(self) -> &'static str {
        match self {
            Window::All => "all time",
            Window::Hour => "1h",
            Window::Day => "24h",
            Window::Week => "7d",
            Window::Month => "30d",
        }
    }

    /// Its length in ms (`None` for all time).
    pub fn millis(self) -> Option<i64> {
        const HOUR: i64 = 3_600_000;
        match self {
            Window::All => None,
            Window::Hour => Some(HOUR),
            Window::Day => Some(24 * HOUR),
            Window::Week => Some(7 * 24 * HOUR),
            Window::Month => Some(30 * 24 * HOUR),
        }
    }

    /// The next longer range (after a month: all time).
    pub(super) fn next(self) -> Self {
        match self {
            Window::All => Window::Hour,
            Window::Hour => Window::Day,
            Window::Day => Window::Week,
            Window::Week => Window::Month,
            Window::Month => Window::All,
        }
    }
}

/// The filters the user set, applied to every screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// One clinic.
    pub clinic: Option<String>,
    /// One device class, short name.
    pub class: Option<String>,
    /// One operator.
    pub operator: Option<String>,
    /// Time range.
    pub window: Window,
    /// Only sessions (and pens) that exceeded their permitted depth.
    pub only_exceeded: bool,
    /// Free text matched against ids (case-insensitive).
    pub search: String,
}

impl Filters {
    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// The server-side part of the filters, for the client's list calls.
    pub fn query(&self) -> Query {
        Query {
            filter: Filter {
                clinic_ids: self.clinic.iter().cloned().collect(),
                operator_ids: self.operator.iter().cloned().collect(),
                device_classes: self.class.iter().cloned().collect(),
                only_exceeded: self.only_exceeded,
                ..Filter::default()
            },
            window_ms: self.window.millis(),
        }
    }

    /// Whether a row passes every filter at `now_ms`.
    pub(super) fn keeps(&self, row: &RowKeys<'_>, now_ms: i64) -> bool {
        let same = |want: &Option<String>, have: Option<&str>| match (want, have) {
            (Some(w), Some(h)) => w == h,
            _ => true,
        };
        same(&self.clinic, Some(row.clinic))
            && same(&self.class, row.class)
            && same(&self.operator, row.operator)
            && (!self.only_exceeded || row.exceeded.unwrap_or(true))
            && match (self.window.millis(), row.time_ms) {
                (Some(w), Some(t)) => t >= now_ms - w,
                _ => true,
            }
            && (self.search.is_empty() || {
                let needle = self.search.to_lowercase();
                row.text.iter().any(|t| t.to_lowercase().contains(&needle))
            })
    }
}

/// What a row offers to the filters (`None`: the filter does not apply to it).
pub(super) struct RowKeys<'a> {
    pub(super) clinic: &'a str,
    pub(super) class: Option<&'a str>,
    pub(super) operator: Option<&'a str>,
    pub(super) exceeded: Option<bool>,
    pub(super) time_ms: Option<i64>,
    pub(super) text: Vec<&'a str>,
}

impl App {
    /// Back to the first rows, and a reload with the new filters.
    pub(super) fn filters_changed(&mut self) -> Vec<Command> {
        self.selected = [0; 5];
        self.paging = Paging::default();
        vec![Command::Reload(self.filters.query())]
    }

    /// Clinics to cycle through, sorted.
    pub(super) fn clinic_options(&self) -> Vec<String> {
        let mut clinics: Vec<String> = self
            .devices
            .values()
            .map(|d| d.clinic_id.clone())
            .chain(self.sessions.values().map(|s| s.clinic_id.clone()))
            .chain(self.identity.iter().flat_map(|i| i.clinics.iter().cloned()))
            .filter(|c| !c.is_empty())
            .collect();
        clinics.sort();
        clinics.dedup();
        clinics
    }

    /// Operators to cycle through (of the filtered clinic), sorted.
    pub(super) fn operator_options(&self) -> Vec<String> {
        let mut ops: Vec<String> = self
            .operators
            .iter()
            .filter(|o| {
                self.filters
                    .clinic
                    .as_deref()
                    .is_none_or(|c| c == o.clinic_id)
            })
            .map(|o| o.operator_id.clone())
            .chain(self.sessions.values().map(|s| s.operator_id.clone()))
            .filter(|o| !o.is_empty())
            .collect();
        ops.sort();
        ops.dedup();
        ops
    }
}

/// The option after `current` (None → first → … → last → None).
pub(super) fn cycle(options: &[String], current: Option<String>) -> Option<String> {
    match current {
        None => options.first().cloned(),
        Some(c) => options
            .iter()
            .position(|o| *o == c)
            .and_then(|i| options.get(i + 1))
            .cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Mode, Msg, Tab};
    use crate::fixtures::{self, NOW, ids};

    #[test]
    fn filters_cycle_and_reload() {
        let mut app = fixtures::app("clinic-manager");
        app.update(Msg::SelectTab(Tab::Sessions));
        let cmds = app.update(Msg::CycleClinic);
        let [Command::Reload(q)] = cmds.as_slice() else {
            panic!("{cmds:?}")
        };
        assert_eq!(q.filter.clinic_ids, ["c01"]);
        assert!(app.session_rows().iter().all(|s| s.clinic_id == "c01"));
        app.update(Msg::CycleClinic);
        assert_eq!(app.filters.clinic.as_deref(), Some("c02"));
        app.update(Msg::CycleClinic);
        assert_eq!(app.filters.clinic, None);

        app.update(Msg::ToggleExceeded);
        assert_eq!(
            ids(&app.session_rows(), |s| &s.session_id),
            ["s-h1", "s-old2"]
        );
        app.update(Msg::CycleWindow);
        assert_eq!(app.filters.window, Window::Hour);
        assert_eq!(ids(&app.session_rows(), |s| &s.session_id), ["s-h1"]);
        let q = app.filters.query();
        assert_eq!(q.filter_at(NOW).from_ms, NOW - 3_600_000);
        assert!(q.filter_at(NOW).only_exceeded);

        app.update(Msg::ClearFilters);
        app.update(Msg::CycleClass);
        app.update(Msg::CycleClass);
        assert_eq!(app.filters.class.as_deref(), Some("salon"));
        assert_eq!(
            ids(&app.fleet_rows(), |d| &d.device_id),
            ["pen-s1", "pen-s2"]
        );
    }

    #[test]
    fn search_is_typed_then_applied_or_cancelled() {
        let mut app = fixtures::app("clinic-manager");
        app.update(Msg::StartSearch);
        assert_eq!(app.mode, Mode::Search);
        for c in "PEN-M".chars() {
            app.update(Msg::SearchInput(c));
        }
        app.update(Msg::SearchBackspace);
        app.update(Msg::SearchInput('M'));
        assert!(app.filters.search.is_empty(), "not applied while typing");
        app.update(Msg::SearchDone);
        assert_eq!(app.filters.search, "PEN-M");
        assert_eq!(
            ids(&app.fleet_rows(), |d| &d.device_id),
            ["pen-m2", "pen-m1"]
        );
        app.update(Msg::StartSearch);
        app.update(Msg::SearchInput('x'));
        app.update(Msg::SearchCancel);
        assert_eq!(app.filters.search, "PEN-M");
        assert_eq!(app.mode, Mode::Normal);
    }
}
