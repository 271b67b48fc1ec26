//! Dashboard state and its reducer.
//!
//! Everything that changes the screen goes through [`App::update`]: gateway data, keys and the
//! clock arrive as [`Msg`]s, and the reducer answers with the [`Command`]s the client should
//! carry out. It does no I/O, so it is tested without a terminal or a gateway.
//!
//! - `state`: screens, modes, the link, the opened session and the banner.
//! - `message`: what the reducer takes and what it answers with.
//! - `filter`: the user's filters and the server-side query they make.
//! - `rows`: what each screen lists, in order.
//! - `ingest`: gateway data merged into the state.
//! - `selection`: moving between screens and rows, opening a row.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::format::Zone;

use penwatch_proto::v1::{
    DeviceState, ListCartridgesResponse, OperatorSummary, Session, Violation,
};

mod filter;
mod ingest;
mod message;
mod rows;
mod selection;
mod state;

pub use filter::{Filters, Window};
pub use message::{Command, Msg, Query};
use state::SessionKey;
pub use state::{
    ALERT_MS, Alert, Attention, CLOCK_SKEW_MS, Detail, GatewayLink, Identity, LOAD_AHEAD,
    LOW_BATTERY_PCT, Link, MAX_POINTS, MAX_SESSIONS, MAX_VIOLATIONS, Mode, Paging, Tab,
    WEAR_WARN_PCT, skewed,
};

/// The dashboard's whole state.
#[derive(Debug, Clone)]
pub struct App {
    /// The clock, Unix ms (from [`Msg::Tick`]).
    pub now_ms: i64,
    /// Current screen.
    pub tab: Tab,
    /// Where keys go.
    pub mode: Mode,
    /// Connection state.
    pub link: Link,
    /// With several gateways, which answer (empty with one).
    pub gateways: Vec<GatewayLink>,
    /// Who the token is (None until WhoAmI answered).
    pub identity: Option<Identity>,
    /// Pens by id.
    pub devices: HashMap<String, DeviceState>,
    /// Pens held but not listed by the gateways that answered while another did not: shown as
    /// last seen and unconfirmed, until a gateway speaks of them again.
    pub unconfirmed: HashSet<String>,
    sessions: HashMap<SessionKey, Session>,
    /// Violation feed, newest first.
    pub violations: VecDeque<Violation>,
    /// Cartridge lists.
    pub cartridges: ListCartridgesResponse,
    /// Operators.
    pub operators: Vec<OperatorSummary>,
    /// The opened session.
    pub detail: Option<Detail>,
    /// Active filters.
    pub filters: Filters,
    /// The search being typed.
    pub search_draft: String,
    /// New-violation banner.
    pub alert: Option<Alert>,
    /// Selected row per tab.
    pub selected: [usize; 5],
    /// Ring the bell on new violations.
    pub bell: bool,
    /// The user asked to leave.
    pub quit: bool,
    /// The zone times are shown in.
    pub zone: Zone,
    /// How far the session list is loaded.
    pub paging: Paging,
}

impl App {
    /// An empty dashboard at `now_ms`.
    pub fn new(now_ms: i64, bell: bool) -> Self {
        Self {
            now_ms,
            tab: Tab::Fleet,
            mode: Mode::Normal,
            link: Link::Connecting,
            gateways: Vec::new(),
            identity: None,
            devices: HashMap::new(),
            unconfirmed: HashSet::new(),
            sessions: HashMap::new(),
            violations: VecDeque::new(),
            cartridges: ListCartridgesResponse::default(),
            operators: Vec::new(),
            detail: None,
            filters: Filters::default(),
            search_draft: String::new(),
            alert: None,
            selected: [0; 5],
            bell,
            quit: false,
            zone: Zone::utc(),
            paging: Paging::default(),
        }
    }

    /// Whether operator ids may be shown: never to a manufacturer, and not before the role
    /// is known.
    pub fn shows_operators(&self) -> bool {
        self.identity
            .as_ref()
            .is_some_and(|i| i.role != "manufacturer")
    }

    /// Tabs available to this role.
    pub fn tabs(&self) -> Vec<Tab> {
        Tab::ALL
            .into_iter()
            .filter(|t| *t != Tab::Operators || self.shows_operators())
            .collect()
    }

    /// Which of several gateways answer, each down one keeping when it stopped answering.
    fn put_gateways(&mut self, states: Vec<(String, Option<String>)>) {
        let now = self.now_ms;
        let before = std::mem::take(&mut self.gateways);
        self.gateways = states
            .into_iter()
            .map(|(address, problem)| {
                let since_ms = match (&problem, before.iter().find(|g| g.address == address)) {
                    (None, _) => 0,
                    (Some(_), Some(g)) if g.problem.is_some() => g.since_ms,
                    (Some(_), _) => now,
                };
                GatewayLink {
                    address,
                    problem,
                    since_ms,
                }
            })
            .collect();
    }

    /// How many of several gateways answer, and how many there are.
    pub fn answering(&self) -> (usize, usize) {
        let up = self.gateways.iter().filter(|g| g.problem.is_none()).count();
        (up, self.gateways.len())
    }

    /// Applies one message; returns what the client should do.
    pub fn update(&mut self, msg: Msg) -> Vec<Command> {
        match msg {
            Msg::Tick(now) => {
                self.now_ms = now;
                if self
                    .alert
                    .as_ref()
                    .is_some_and(|a| now - a.at_ms > ALERT_MS)
                {
                    self.alert = None;
                }
            }
            Msg::Connected => self.link = Link::Connected,
            Msg::Disconnected {
                reason,
                retry_in_ms,
            } => {
                let since_ms = match &self.link {
                    Link::Lost { since_ms, .. } => *since_ms,
                    _ => self.now_ms,
                };
                self.link = Link::Lost {
                    reason,
                    since_ms,
                    retry_at_ms: self.now_ms + retry_in_ms,
                };
            }
            Msg::Refused { reason } => self.link = Link::Refused { reason },
            Msg::Gateways(states) => self.put_gateways(states),
            Msg::Identity(who) => {
                self.identity = Some(Identity {
                    role: who.role,
                    name: who.name,
                    clinics: who.clinic_ids,
                });
                if !self.shows_operators() {
                    self.filters.operator = None;
                    if self.tab == Tab::Operators {
                        self.tab = Tab::Fleet;
                    }
                }
            }
            Msg::Fleet(batch) => {
                batch.into_iter().for_each(|d| self.put_device(d));
                self.trim_sessions();
            }
            Msg::FleetList { devices, complete } => self.put_fleet_list(devices, complete),
            Msg::Sessions(page) => self.replace_sessions(page),
            Msg::MoreSessions(page) => self.more_sessions(page),
            Msg::Violations(list) => {
                self.violations = list.into_iter().take(MAX_VIOLATIONS).collect();
                let marks: Vec<Violation> = self.violations.iter().cloned().collect();
                marks.iter().for_each(|v| self.mark_exceeded(v));
            }
            Msg::NewViolations(batch) => return self.new_violations(batch),
            Msg::Cartridges(c) => self.cartridges = c,
            Msg::Operators(list) => self.operators = list,
            Msg::SessionDetail(d) => self.load_detail(*d),
            Msg::DetailFailed(reason) => {
                if let Some(detail) = self.detail.as_mut() {
                    detail.error = Some(reason);
                }
            }
            Msg::Samples(batch) => self.add_samples(batch),
            Msg::Resized => {}
            Msg::Quit => self.quit = true,
            Msg::NextTab | Msg::PrevTab => self.step_tab(msg == Msg::NextTab),
            Msg::SelectTab(tab) => {
                if self.tabs().contains(&tab) {
                    self.tab = tab;
                    return self.close_detail();
                }
            }
            Msg::Up => self.move_selection(-1),
            Msg::Down => return self.move_down(1),
            Msg::PageUp => self.move_selection(-10),
            Msg::PageDown => return self.move_down(10),
            Msg::Top => self.move_selection(i64::MIN / 2),
            Msg::Bottom => return self.move_down(i64::MAX / 2),
            Msg::Open => return self.open(),
            Msg::Back => match self.mode {
                Mode::Help => self.mode = Mode::Normal,
                Mode::Search => self.mode = Mode::Normal,
                Mode::Normal if self.detail.is_some() => return self.close_detail(),
                Mode::Normal => self.quit = true,
            },
            Msg::ToggleHelp => {
                self.mode = if self.mode == Mode::Help {
                    Mode::Normal
                } else {
                    Mode::Help
                }
            }
            Msg::StartSearch => {
                self.search_draft = self.filters.search.clone();
                self.mode = Mode::Search;
            }
            Msg::SearchInput(c) => self.search_draft.push(c),
            Msg::SearchBackspace => {
                self.search_draft.pop();
            }
            Msg::SearchDone => {
                self.mode = Mode::Normal;
                self.filters.search = self.search_draft.trim().to_owned();
                self.selected = [0; 5];
            }
            Msg::SearchCancel => {
                self.mode = Mode::Normal;
                self.search_draft.clear();
            }
            Msg::CycleClinic => {
                let options = self.clinic_options();
                self.filters.clinic = filter::cycle(&options, self.filters.clinic.take());
                return self.filters_changed();
            }
            Msg::CycleClass => {
                let options = ["home", "salon", "medical"].map(String::from);
                self.filters.class = filter::cycle(&options, self.filters.class.take());
                return self.filters_changed();
            }
            Msg::CycleOperator => {
                if self.shows_operators() {
                    let options = self.operator_options();
                    self.filters.operator = filter::cycle(&options, self.filters.operator.take());
                    return self.filters_changed();
                }
            }
            Msg::CycleWindow => {
                self.filters.window = self.filters.window.next();
                return self.filters_changed();
            }
            Msg::ToggleExceeded => {
                self.filters.only_exceeded = !self.filters.only_exceeded;
                return self.filters_changed();
            }
            Msg::ClearFilters => {
                self.filters = Filters::default();
                return self.filters_changed();
            }
            Msg::Dismiss => self.alert = None,
            Msg::Reload => return vec![Command::Reload(self.filters.query())],
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, NOW};
    use penwatch_proto::v1::WhoAmIResponse;

    #[test]
    fn connection_loss_keeps_data_and_the_first_loss_time() {
        let mut app = fixtures::app("clinic-manager");
        app.update(Msg::Disconnected {
            reason: "refused".into(),
            retry_in_ms: 500,
        });
        app.update(Msg::Tick(NOW + 5_000));
        app.update(Msg::Disconnected {
            reason: "refused".into(),
            retry_in_ms: 1_000,
        });
        assert_eq!(
            app.link,
            Link::Lost {
                reason: "refused".into(),
                since_ms: NOW,
                retry_at_ms: NOW + 6_000
            }
        );
        assert_eq!(app.fleet_rows().len(), 6, "data kept");
        app.update(Msg::Connected);
        assert_eq!(app.link, Link::Connected);
    }

    #[test]
    fn manufacturer_never_gets_operators() {
        let mut app = fixtures::app("clinic-manager");
        app.update(Msg::SelectTab(Tab::Operators));
        app.update(Msg::CycleOperator);
        assert_eq!(app.filters.operator.as_deref(), Some("op-ana"));
        app.update(Msg::Identity(WhoAmIResponse {
            role: "manufacturer".into(),
            ..WhoAmIResponse::default()
        }));
        assert!(!app.shows_operators());
        assert_eq!(app.tab, Tab::Fleet);
        assert_eq!(app.filters.operator, None);
        assert!(!app.tabs().contains(&Tab::Operators));
        assert!(app.update(Msg::CycleOperator).is_empty());
        app.update(Msg::SelectTab(Tab::Operators));
        assert_eq!(app.tab, Tab::Fleet);
        assert!(app.operator_rows().is_empty());
    }

    #[test]
    fn a_gateway_that_stops_answering_keeps_the_time_it_stopped() {
        let mut app = fixtures::app("reviewer");
        let states = |down: Option<&str>| {
            vec![
                ("http://gw-1:50051".to_owned(), None),
                ("http://gw-2:50051".to_owned(), down.map(str::to_owned)),
            ]
        };
        app.update(Msg::Gateways(states(None)));
        assert_eq!(app.answering(), (2, 2));
        app.update(Msg::Gateways(states(Some("refused"))));
        app.update(Msg::Tick(NOW + 7_000));
        app.update(Msg::Gateways(states(Some("timed out"))));
        assert_eq!(app.answering(), (1, 2));
        assert_eq!(app.gateways[1].since_ms, NOW, "down since it first failed");
        assert_eq!(app.gateways[1].problem.as_deref(), Some("timed out"));
        app.update(Msg::Gateways(states(None)));
        assert_eq!((app.answering(), app.gateways[1].since_ms), ((2, 2), 0));
    }

    #[test]
    fn operators_hidden_until_the_role_is_known() {
        let app = App::new(NOW, false);
        assert!(!app.shows_operators());
    }
}
