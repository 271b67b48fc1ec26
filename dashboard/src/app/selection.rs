//! Moving between screens and rows, and opening the selected row.

use std::collections::VecDeque;

use super::App;
use super::message::Command;
use super::state::{Detail, LOAD_AHEAD, MAX_SESSIONS, Tab};

impl App {
    /// The selected row of the current tab.
    pub fn selection(&self) -> usize {
        self.selected[self.tab.index()]
    }

    /// The next (or previous) tab this role has, closing the detail.
    pub(super) fn step_tab(&mut self, forward: bool) {
        let tabs = self.tabs();
        let i = tabs.iter().position(|t| *t == self.tab).unwrap_or(0);
        let n = tabs.len();
        let next = if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        };
        self.tab = tabs[next];
        self.detail = None;
    }

    /// Rows on the current tab.
    fn rows_len(&self) -> usize {
        match self.tab {
            Tab::Fleet => self.fleet_rows().len(),
            Tab::Sessions => self.session_rows().len(),
            Tab::Violations => self.violation_rows().len(),
            Tab::Cartridges => self.cartridge_rows().len(),
            Tab::Operators => self.operator_rows().len(),
        }
    }

    /// Moves the current tab's selection by `by` rows, within the rows.
    pub(super) fn move_selection(&mut self, by: i64) {
        let len = self.rows_len() as i64;
        let i = self.tab.index();
        let current = (self.selected[i] as i64).min(len - 1).max(0);
        self.selected[i] = (current + by).clamp(0, (len - 1).max(0)) as usize;
    }

    /// Moves the selection down; near the end of the session list, asks for its next page.
    pub(super) fn move_down(&mut self, by: i64) -> Vec<Command> {
        self.move_selection(by);
        let near_end = self.selection() + LOAD_AHEAD >= self.rows_len();
        let p = &self.paging;
        if self.tab != Tab::Sessions
            || !near_end
            || p.next.is_empty()
            || p.loading
            || self.sessions.len() >= MAX_SESSIONS
        {
            return Vec::new();
        }
        self.paging.loading = true;
        vec![Command::MoreSessions {
            query: self.filters.query(),
            page_token: self.paging.next.clone(),
        }]
    }

    /// Opens the selected row: a session, or an operator's sessions.
    pub(super) fn open(&mut self) -> Vec<Command> {
        let sel = self.selection();
        let target = match self.tab {
            Tab::Fleet => self
                .fleet_rows()
                .get(sel)
                .filter(|d| !d.session_id.is_empty())
                .map(|d| (d.device_id.clone(), d.session_id.clone())),
            Tab::Sessions => self
                .session_rows()
                .get(sel)
                .map(|s| (s.device_id.clone(), s.session_id.clone())),
            Tab::Violations => self
                .violation_rows()
                .get(sel)
                .map(|v| (v.device_id.clone(), v.session_id.clone())),
            Tab::Operators => {
                if let Some(o) = self.operator_rows().get(sel) {
                    self.filters.operator = Some(o.operator_id.clone());
                    self.tab = Tab::Sessions;
                    return self.filters_changed();
                }
                None
            }
            Tab::Cartridges => None,
        };
        let Some((device_id, session_id)) = target else {
            return Vec::new();
        };
        let session = self
            .sessions
            .get(&(device_id.clone(), session_id.clone()))
            .cloned();
        self.detail = Some(Detail {
            device_id: device_id.clone(),
            session_id: session_id.clone(),
            session,
            points: VecDeque::new(),
            error: None,
        });
        vec![Command::OpenSession {
            device_id,
            session_id,
        }]
    }

    /// Closes the opened session, if any.
    pub(super) fn close_detail(&mut self) -> Vec<Command> {
        match self.detail.take() {
            Some(_) => vec![Command::CloseSession],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Msg;
    use crate::fixtures::{self, NOW, ids};
    use penwatch_proto::v1::{DeviceState, JudgedSample, Telemetry};

    #[test]
    fn open_session_streams_its_samples_and_back_closes() {
        let mut app = fixtures::app("clinic-manager");
        app.update(Msg::SelectTab(Tab::Sessions));
        app.update(Msg::Down);
        app.update(Msg::Up);
        assert_eq!(
            app.update(Msg::Open),
            [Command::OpenSession {
                device_id: "pen-h1".into(),
                session_id: "s-h1".into()
            }]
        );
        app.update(Msg::SessionDetail(Box::new(fixtures::detail())));
        let sample = |session: &str, t: i64, depth: f64| JudgedSample {
            telemetry: Some(Telemetry {
                device_id: "pen-h1".into(),
                session_id: session.into(),
                timestamp_ms: t,
                depth_mm: depth,
                session_strokes: 2_000,
                ..Telemetry::default()
            }),
            permitted_mm: 0.5,
            exceeded: depth > 0.5,
            ..JudgedSample::default()
        };
        app.update(Msg::Samples(vec![
            sample("s-h1", NOW, 0.9),
            sample("other", NOW + 1, 0.2),
            sample("s-h1", NOW - 3_600_000, 0.1),
        ]));
        let detail = app.detail.as_ref().expect("open");
        assert_eq!(detail.points.len(), fixtures::detail().timeline.len() + 1);
        assert_eq!(detail.points.back().map(|p| p.depth_mm), Some(0.9));
        let session = detail.session.as_ref().expect("loaded");
        assert_eq!((session.max_depth_mm, session.strokes), (0.9, 2_000));

        assert_eq!(app.update(Msg::Back), [Command::CloseSession]);
        assert!(app.detail.is_none() && !app.quit);
        app.update(Msg::Back);
        assert!(app.quit, "Esc at the top quits");
    }

    #[test]
    fn thousand_pens_stream_through_the_reducer() {
        let mut app = App::new(NOW, false);
        for round in 0..5 {
            let batch: Vec<DeviceState> = (0..1_000)
                .map(|i| {
                    fixtures::device(
                        &format!("pen-{i:04}"),
                        &format!("c{:02}", i % 20),
                        "medical",
                        "online",
                        &format!("s-{i}"),
                        "op",
                        0.1 * f64::from(round),
                        2.5,
                    )
                })
                .collect();
            app.update(Msg::Fleet(batch));
        }
        assert_eq!(app.fleet_rows().len(), 1_000);
        assert_eq!(app.session_rows().len(), 1_000);
        app.update(Msg::Bottom);
        assert_eq!(app.selection(), 999);
        app.update(Msg::PageUp);
        assert_eq!(app.selection(), 989);
        app.update(Msg::Top);
        assert_eq!(app.selection(), 0);
    }

    #[test]
    fn tabs_wrap_and_enter_on_an_operator_filters_sessions() {
        let mut app = fixtures::app("clinic-manager");
        app.update(Msg::PrevTab);
        assert_eq!(app.tab, Tab::Operators);
        app.update(Msg::NextTab);
        assert_eq!(app.tab, Tab::Fleet);
        app.update(Msg::SelectTab(Tab::Operators));
        let cmds = app.update(Msg::Open);
        assert_eq!(app.tab, Tab::Sessions);
        assert_eq!(app.filters.operator.as_deref(), Some("op-ana"));
        assert!(matches!(cmds.as_slice(), [Command::Reload(_)]));
        assert_eq!(ids(&app.session_rows(), |s| &s.session_id), ["s-h1"]);
    }
}
