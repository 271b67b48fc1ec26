//! Gateway data merged into the state: pens, sessions, violations and the opened session's
//! samples, each list bounded.

use std::collections::HashSet;

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::{
    DepthPoint, DeviceState, JudgedSample, ListSessionsResponse, Session, SessionDetail, Violation,
};

use super::App;
use super::message::Command;
use super::state::{Alert, MAX_POINTS, MAX_SESSIONS, MAX_VIOLATIONS, Paging, SessionKey};

impl App {
    /// Takes the reloaded list of every pen (see [`super::Msg::FleetList`]).
    pub(super) fn put_fleet_list(&mut self, devices: Vec<DeviceState>, complete: bool) {
        let listed: HashSet<String> = devices.iter().map(|d| d.device_id.clone()).collect();
        devices.into_iter().for_each(|d| self.put_device(d));
        self.unconfirmed = if complete {
            HashSet::new()
        } else {
            self.devices
                .keys()
                .filter(|id| !listed.contains(*id))
                .cloned()
                .collect()
        };
        self.trim_sessions();
    }

    /// Takes a pen's state unless an older one, and follows its live session. A gateway
    /// speaks of the pen: it is no longer unconfirmed.
    pub(super) fn put_device(&mut self, d: DeviceState) {
        self.unconfirmed.remove(&d.device_id);
        if self.devices.get(&d.device_id).is_some_and(|known| {
            (known.last_seen_ms, known.status_ms) > (d.last_seen_ms, d.status_ms)
        }) {
            return;
        }
        if let Some(previous) = self.devices.get(&d.device_id)
            && !previous.session_id.is_empty()
            && previous.session_id != d.session_id
            && let Some(s) = self
                .sessions
                .get_mut(&(previous.device_id.clone(), previous.session_id.clone()))
            && s.state == "open"
        {
            s.state = "closed".into();
        }
        if !d.session_id.is_empty() {
            let key = (d.device_id.clone(), d.session_id.clone());
            let s = self.sessions.entry(key).or_insert_with(|| Session {
                session_id: d.session_id.clone(),
                device_id: d.device_id.clone(),
                clinic_id: d.clinic_id.clone(),
                device_class: d.device_class.clone(),
                state: "open".into(),
                ..Session::default()
            });
            s.operator_id.clone_from(&d.operator_id);
            s.cartridge_id.clone_from(&d.cartridge_id);
            s.strokes = s.strokes.max(d.session_strokes);
            s.last_ms = s.last_ms.max(d.last_seen_ms);
            s.max_depth_mm = s.max_depth_mm.max(d.depth_mm);
            if d.session_started_ms > 0 {
                s.started_ms = d.session_started_ms;
            }
            if !d.session_rule.is_empty() {
                s.permitted_mm = d.session_permitted_mm;
                s.binding_rule.clone_from(&d.session_rule);
            } else if d.permitted_mm > 0.0
                && (s.permitted_mm == 0.0 || d.permitted_mm < s.permitted_mm)
            {
                s.permitted_mm = d.permitted_mm;
            }
            if !d.session_zones.is_empty() {
                s.zones.clone_from(&d.session_zones);
            }
            s.exceeded |= d.exceeded;
        }
        self.devices.insert(d.device_id.clone(), d);
    }

    /// Replaces the session list with its reloaded first page, keeping the live sessions the
    /// page does not have and, once further pages are loaded, the sessions older than the page.
    pub(super) fn replace_sessions(&mut self, page: ListSessionsResponse) {
        let floor = match page.sessions.iter().map(|s| s.started_ms).min() {
            Some(oldest) if self.paging.deep && !page.next_page_token.is_empty() => oldest,
            _ => i64::MIN,
        };
        if !self.paging.deep {
            self.paging.next = page.next_page_token;
        }
        self.paging.loading = false;
        let live: Vec<Session> = self
            .sessions
            .drain()
            .map(|(_, s)| s)
            .filter(|s| {
                s.started_ms < floor
                    || (s.state == "open"
                        && self
                            .devices
                            .get(&s.device_id)
                            .is_some_and(|d| d.session_id == s.session_id))
            })
            .collect();
        self.put_sessions(page.sessions);
        for s in live {
            let key = (s.device_id.clone(), s.session_id.clone());
            self.sessions.entry(key).or_insert(s);
        }
        self.trim_sessions();
    }

    /// Adds a further page of older sessions.
    pub(super) fn more_sessions(&mut self, page: ListSessionsResponse) {
        self.paging = Paging {
            next: page.next_page_token,
            deep: true,
            loading: false,
        };
        self.put_sessions(page.sessions);
        self.trim_sessions();
    }

    /// Puts listed sessions in (a listed record replaces the one held), with the violations'
    /// marks.
    fn put_sessions(&mut self, list: Vec<Session>) {
        for s in list {
            self.sessions
                .insert((s.device_id.clone(), s.session_id.clone()), s);
        }
        let marks: Vec<Violation> = self.violations.iter().cloned().collect();
        marks.iter().for_each(|v| self.mark_exceeded(v));
    }

    /// Drops the oldest closed sessions beyond [`MAX_SESSIONS`].
    pub(super) fn trim_sessions(&mut self) {
        if self.sessions.len() <= MAX_SESSIONS {
            return;
        }
        let mut closed: Vec<(i64, SessionKey)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.state != "open")
            .map(|(k, s)| (s.started_ms, k.clone()))
            .collect();
        closed.sort();
        let excess = self.sessions.len() - MAX_SESSIONS;
        for (_, key) in closed.into_iter().take(excess) {
            self.sessions.remove(&key);
        }
    }

    /// Flags the violation's session as exceeded, with its evidence; one an amendment raised
    /// (late messages) marks the session amended and leaves its closed record as it was.
    pub(super) fn mark_exceeded(&mut self, v: &Violation) {
        if let Some(s) = self
            .sessions
            .get_mut(&(v.device_id.clone(), v.session_id.clone()))
        {
            if v.amendment > 0 {
                s.amendments = s.amendments.max(v.amendment);
                s.exceeded_by_amendment |= !s.exceeded;
                return;
            }
            s.exceeded = true;
            if let Some(e) = &v.evidence {
                s.max_depth_mm = s.max_depth_mm.max(e.peak_depth_mm);
                if s.evidence.is_none() || !v.r#final {
                    s.evidence = Some(e.clone());
                }
                if s.binding_rule.is_empty() {
                    s.binding_rule.clone_from(&e.binding_rule);
                    s.permitted_mm = e.limit_mm;
                }
            }
        }
    }

    /// Adds streamed violations; a new one raises the banner (and the bell).
    pub(super) fn new_violations(&mut self, batch: Vec<Violation>) -> Vec<Command> {
        let mut fresh = 0;
        let mut newest = None;
        for v in batch {
            let known = self
                .violations
                .iter()
                .position(|o| o.device_id == v.device_id && o.session_id == v.session_id);
            match known {
                Some(i) => {
                    self.violations.remove(i);
                }
                None => {
                    fresh += 1;
                    newest = Some(v.clone());
                }
            }
            self.mark_exceeded(&v);
            self.violations.push_front(v);
        }
        self.violations.truncate(MAX_VIOLATIONS);
        let Some(violation) = newest else {
            return Vec::new();
        };
        let count = self.alert.as_ref().map_or(0, |a| a.count) + fresh;
        self.alert = Some(Alert {
            violation,
            count,
            at_ms: self.now_ms,
        });
        if self.bell {
            vec![Command::Bell]
        } else {
            Vec::new()
        }
    }

    /// The opened session's record and timeline, followed by the samples already streamed.
    pub(super) fn load_detail(&mut self, d: SessionDetail) {
        let Some(session) = d.session else { return };
        let Some(detail) = self.detail.as_mut() else {
            return;
        };
        if detail.device_id != session.device_id || detail.session_id != session.session_id {
            return;
        }
        let live: Vec<DepthPoint> = detail.points.drain(..).collect();
        detail.points = d.timeline.into_iter().collect();
        let last = detail.points.back().map_or(i64::MIN, |p| p.timestamp_ms);
        detail
            .points
            .extend(live.into_iter().filter(|p| p.timestamp_ms > last));
        while detail.points.len() > MAX_POINTS {
            detail.points.pop_front();
        }
        detail.session = Some(session);
        detail.error = None;
    }

    /// Appends the opened session's live samples to its chart.
    pub(super) fn add_samples(&mut self, batch: Vec<JudgedSample>) {
        let Some(detail) = self.detail.as_mut() else {
            return;
        };
        for s in batch {
            let Some(t) = s.telemetry else { continue };
            if t.device_id != detail.device_id || t.session_id != detail.session_id {
                continue;
            }
            if detail
                .points
                .back()
                .is_some_and(|p| p.timestamp_ms > t.timestamp_ms)
            {
                continue;
            }
            let zone = penwatch_proto::v1::Zone::try_from(t.zone)
                .ok()
                .filter(|z| *z != penwatch_proto::v1::Zone::Unspecified)
                .map(|z| z.short_name().to_owned())
                .unwrap_or_default();
            detail.points.push_back(DepthPoint {
                timestamp_ms: t.timestamp_ms,
                depth_mm: t.depth_mm,
                permitted_mm: s.permitted_mm,
                session_strokes: t.session_strokes,
                zone,
                exceeded: s.exceeded,
            });
            if let Some(session) = detail.session.as_mut() {
                session.strokes = session.strokes.max(t.session_strokes);
                session.max_depth_mm = session.max_depth_mm.max(t.depth_mm);
                session.exceeded |= s.exceeded;
                session.last_ms = session.last_ms.max(t.timestamp_ms);
            }
        }
        while detail.points.len() > MAX_POINTS {
            detail.points.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{ALERT_MS, Command, Msg, Tab};
    use crate::fixtures::{self, NOW, ids};
    use penwatch_proto::v1::Telemetry;

    #[test]
    fn new_violation_raises_banner_and_bell_once_per_session() {
        let mut app = fixtures::app("clinic-manager");
        app.bell = true;
        let s = fixtures::session("s-x", "pen-m2", "c01", "medical", "op-ben");
        let mut v = Violation {
            evidence: Some(fixtures::evidence(2.7, 2.5, "class", NOW)),
            ..fixtures::violation(&s, false)
        };
        assert_eq!(
            app.update(Msg::NewViolations(vec![v.clone()])),
            [Command::Bell]
        );
        let alert = app.alert.clone().expect("banner");
        assert_eq!(
            (alert.count, alert.violation.session_id.as_str()),
            (1, "s-x")
        );
        assert_eq!(
            app.violations.front().map(|v| v.session_id.as_str()),
            Some("s-x")
        );
        assert_eq!(app.violations.len(), 4);

        v.evidence = Some(fixtures::evidence(2.9, 2.5, "class", NOW));
        assert!(
            app.update(Msg::NewViolations(vec![v])).is_empty(),
            "grown evidence is not a new violation"
        );
        assert_eq!(app.violations.len(), 4);
        let peak = app.violations[0].evidence.as_ref().map(|e| e.peak_depth_mm);
        assert_eq!(peak, Some(2.9));
        assert_eq!(app.alert.as_ref().map(|a| a.count), Some(1));

        app.update(Msg::Tick(NOW + ALERT_MS + 1));
        assert!(app.alert.is_none(), "the banner expires");
    }

    #[test]
    fn a_violation_raised_by_an_amendment_marks_the_closed_session_amended_not_exceeded() {
        let mut app = fixtures::app("clinic-manager");
        let closed = fixtures::sessions()[2].clone();
        let key = (closed.device_id.clone(), closed.session_id.clone());
        app.update(Msg::NewViolations(vec![Violation {
            evidence: Some(fixtures::evidence(1.2, 1.0, "operator", NOW)),
            r#final: true,
            amendment: 2,
            session_amendments: 2,
            ..fixtures::violation(&closed, true)
        }]));
        let s = &app.sessions[&key];
        assert!(!s.exceeded, "the record as it closed is not rewritten");
        assert!(s.exceeded_by_amendment);
        assert_eq!(s.amendments, 2);
        assert_eq!(s.max_depth_mm, closed.max_depth_mm);
        assert_eq!(app.violations.front().map(|v| v.amendment), Some(2));
    }

    #[test]
    fn a_violation_flags_its_live_session() {
        let mut app = fixtures::app("clinic-manager");
        let s = app
            .session_rows()
            .into_iter()
            .find(|s| s.session_id == "s-m1")
            .cloned()
            .expect("s-m1");
        assert!(!s.exceeded);
        let v = Violation {
            evidence: Some(fixtures::evidence(2.75, 2.5, "zone", NOW)),
            ..fixtures::violation(&s, false)
        };
        app.update(Msg::NewViolations(vec![v]));
        let s = app
            .session_rows()
            .into_iter()
            .find(|s| s.session_id == "s-m1")
            .expect("s-m1");
        assert!(s.exceeded);
        assert_eq!(s.max_depth_mm, 2.75);
    }

    #[test]
    fn violations_are_bounded() {
        let mut app = App::new(NOW, false);
        let batch: Vec<Violation> = (0..MAX_VIOLATIONS + 50)
            .map(|i| Violation {
                session_id: format!("s{i}"),
                device_id: "p".into(),
                ..Violation::default()
            })
            .collect();
        app.update(Msg::NewViolations(batch));
        assert_eq!(app.violations.len(), MAX_VIOLATIONS);
        assert_eq!(
            app.violations.front().map(|v| v.session_id.as_str()),
            Some("s549")
        );
    }

    #[test]
    fn detail_points_are_bounded() {
        let mut app = fixtures::app("clinic-manager");
        app.update(Msg::SelectTab(Tab::Sessions));
        app.update(Msg::Open);
        let batch: Vec<JudgedSample> = (0..MAX_POINTS as i64 + 10)
            .map(|i| JudgedSample {
                telemetry: Some(Telemetry {
                    device_id: "pen-h1".into(),
                    session_id: "s-h1".into(),
                    timestamp_ms: NOW + i,
                    ..Telemetry::default()
                }),
                ..JudgedSample::default()
            })
            .collect();
        app.update(Msg::Samples(batch));
        let points = &app.detail.as_ref().expect("open").points;
        assert_eq!(points.len(), MAX_POINTS);
        assert_eq!(points.front().map(|p| p.timestamp_ms), Some(NOW + 10));
    }

    #[test]
    fn fleet_updates_open_and_close_live_sessions() {
        let mut app = App::new(NOW, false);
        let mut d = fixtures::device("p1", "c01", "home", "online", "s-a", "op", 0.3, 0.5);
        app.update(Msg::Fleet(vec![d.clone()]));
        assert_eq!(ids(&app.session_rows(), |s| &s.state), ["open"]);
        d.session_id = "s-b".into();
        d.exceeded = true;
        app.update(Msg::Fleet(vec![d]));
        let rows = app.session_rows();
        let states: Vec<(&str, &str, bool)> = rows
            .iter()
            .map(|s| (s.session_id.as_str(), s.state.as_str(), s.exceeded))
            .collect();
        assert_eq!(states, [("s-b", "open", true), ("s-a", "closed", false)]);
    }

    #[test]
    fn an_older_device_state_does_not_overwrite_a_newer_one() {
        let mut app = App::new(NOW, false);
        let newer = fixtures::device("p1", "c01", "home", "online", "s-a", "op", 0.7, 0.5);
        let older = DeviceState {
            last_seen_ms: newer.last_seen_ms - 1_000,
            depth_mm: 0.2,
            ..newer.clone()
        };
        app.update(Msg::Fleet(vec![newer]));
        app.update(Msg::Fleet(vec![older]));
        assert_eq!(app.devices["p1"].depth_mm, 0.7);
    }

    #[test]
    fn pens_a_silent_gateway_listed_stay_as_last_seen_but_unconfirmed_until_heard_of_again() {
        let mut app = App::new(NOW, false);
        let a = fixtures::device("pen-a", "c01", "home", "online", "s-a", "op", 0.3, 0.5);
        let b = fixtures::device("pen-b", "c02", "home", "online", "s-b", "op", 0.3, 0.5);
        app.update(Msg::FleetList {
            devices: vec![a.clone(), b.clone()],
            complete: true,
        });
        assert!(app.unconfirmed.is_empty());

        // pen-b's gateway does not answer: the other lists only pen-a.
        app.update(Msg::FleetList {
            devices: vec![a.clone()],
            complete: false,
        });
        assert_eq!(app.devices.len(), 2, "kept as last seen");
        assert!(app.unconfirmed.contains("pen-b"));
        assert!(!app.unconfirmed.contains("pen-a"));

        // Its gateway streams again.
        app.update(Msg::Fleet(vec![DeviceState {
            last_seen_ms: b.last_seen_ms + 1,
            ..b
        }]));
        assert!(app.unconfirmed.is_empty());

        app.update(Msg::FleetList {
            devices: vec![a],
            complete: false,
        });
        assert!(app.unconfirmed.contains("pen-b"));
        app.update(Msg::FleetList {
            devices: Vec::new(),
            complete: true,
        });
        assert!(app.unconfirmed.is_empty(), "every gateway answered");
    }

    fn closed(range: std::ops::Range<i64>) -> Vec<Session> {
        range
            .rev()
            .map(|i| Session {
                session_id: format!("s{i}"),
                device_id: "p".into(),
                started_ms: i,
                state: "closed".into(),
                ..Session::default()
            })
            .collect()
    }

    #[test]
    fn every_session_is_reachable_by_scrolling_and_refreshes_keep_older_pages() {
        let mut app = App::new(NOW, false);
        app.update(Msg::SelectTab(Tab::Sessions));
        app.update(Msg::Sessions(fixtures::page(closed(200..400), "t1")));
        assert!(app.update(Msg::Down).is_empty(), "far from the end");
        let asked = app.update(Msg::Bottom);
        assert!(matches!(
            asked.as_slice(),
            [Command::MoreSessions { page_token, .. }] if page_token == "t1"
        ));
        assert!(app.update(Msg::Down).is_empty(), "one page in flight");
        app.update(Msg::MoreSessions(fixtures::page(closed(0..200), "")));
        assert_eq!(app.session_rows().len(), 400);
        assert!(app.update(Msg::Bottom).is_empty(), "everything loaded");
        assert_eq!(app.session_rows()[399].session_id, "s0");

        // The refresh reloads the first page (one session newer) and keeps the older pages.
        app.update(Msg::Sessions(fixtures::page(closed(201..401), "t2")));
        assert_eq!(app.session_rows().len(), 401);
        assert!(
            app.update(Msg::Bottom).is_empty(),
            "still everything loaded"
        );

        // Other filters start again from their first page.
        let reload = app.update(Msg::ClearFilters);
        assert!(matches!(reload.as_slice(), [Command::Reload(_)]));
        app.update(Msg::Sessions(fixtures::page(closed(300..400), "t3")));
        assert_eq!(app.session_rows().len(), 100);
        assert!(matches!(
            app.update(Msg::Bottom).as_slice(),
            [Command::MoreSessions { page_token, .. }] if page_token == "t3"
        ));
    }

    #[test]
    fn sessions_are_bounded_keeping_live_ones() {
        let mut app = App::new(NOW, false);
        let d = fixtures::device("live", "c01", "home", "online", "s-live", "op", 0.3, 0.5);
        app.update(Msg::Fleet(vec![d]));
        let list: Vec<Session> = (0..MAX_SESSIONS as i64 + 20)
            .map(|i| Session {
                session_id: format!("s{i}"),
                device_id: "p".into(),
                started_ms: i,
                state: "closed".into(),
                ..Session::default()
            })
            .collect();
        app.update(Msg::Sessions(fixtures::page(list, "")));
        let rows = app.session_rows();
        assert_eq!(rows.len(), MAX_SESSIONS);
        assert_eq!(rows[0].session_id, "s-live");
        assert!(rows.iter().all(|s| s.session_id != "s0"), "oldest dropped");
    }
}
