//! Dashboard state and its reducer.
//!
//! Everything that changes the screen goes through [`App::update`]: gateway data, keys and the
//! clock arrive as [`Msg`]s, and the reducer answers with the [`Command`]s the client should
//! carry out. It does no I/O, so it is tested without a terminal or a gateway.

use std::collections::{HashMap, VecDeque};

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::{
    Cartridge, DepthPoint, DeviceState, Filter, JudgedSample, ListCartridgesResponse,
    OperatorSummary, Session, SessionDetail, Violation, WhoAmIResponse,
};

/// Most sessions kept (live ones first, then the newest).
pub const MAX_SESSIONS: usize = 1_000;
/// Most violations kept in the feed.
pub const MAX_VIOLATIONS: usize = 500;
/// Most depth points kept for the open session's chart.
pub const MAX_POINTS: usize = 4_000;
/// How long the new-violation banner stays up unless dismissed, ms.
pub const ALERT_MS: i64 = 30_000;
/// Battery level below which a pen needs attention, %.
pub const LOW_BATTERY_PCT: f64 = 15.0;
/// Cartridge wear from which a cartridge is "warn", %.
pub const WEAR_WARN_PCT: f64 = 80.0;

/// A screen of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// One row per pen.
    Fleet,
    /// Live and recent sessions.
    Sessions,
    /// The violation feed.
    Violations,
    /// Cartridge wear and reuse.
    Cartridges,
    /// Sessions and violations per operator.
    Operators,
}

impl Tab {
    /// Every tab, in display order.
    pub const ALL: [Tab; 5] = [
        Tab::Fleet,
        Tab::Sessions,
        Tab::Violations,
        Tab::Cartridges,
        Tab::Operators,
    ];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Fleet => "Fleet",
            Tab::Sessions => "Sessions",
            Tab::Violations => "Violations",
            Tab::Cartridges => "Cartridges",
            Tab::Operators => "Operators",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// Where keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Navigation keys.
    Normal,
    /// Typing a `/` search.
    Search,
    /// The key help overlay is shown.
    Help,
}

/// State of the connection to the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// Not connected yet.
    Connecting,
    /// Connected and streaming.
    Connected,
    /// Lost; the client retries at `retry_at_ms`.
    Lost {
        /// Why, as the client saw it.
        reason: String,
        /// When the connection was lost (the data on screen is from before), Unix ms.
        since_ms: i64,
        /// When the next attempt starts, Unix ms.
        retry_at_ms: i64,
    },
}

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

    fn next(self) -> Self {
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

    fn keeps(&self, row: &RowKeys<'_>, now_ms: i64) -> bool {
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
struct RowKeys<'a> {
    clinic: &'a str,
    class: Option<&'a str>,
    operator: Option<&'a str>,
    exceeded: Option<bool>,
    time_ms: Option<i64>,
    text: Vec<&'a str>,
}

/// What the client loads lists with: the server-side filter and a time window ending now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Filter without its time range.
    pub filter: Filter,
    /// Length of the time range ending now, ms.
    pub window_ms: Option<i64>,
}

impl Query {
    /// The filter for a call made at `now_ms`.
    pub fn filter_at(&self, now_ms: i64) -> Filter {
        Filter {
            from_ms: self.window_ms.map_or(0, |w| now_ms - w),
            ..self.filter.clone()
        }
    }
}

/// Who the token belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// "clinic-manager", "manufacturer", "reviewer" or "admin".
    pub role: String,
    /// Token name.
    pub name: String,
    /// Clinics in scope (empty: all).
    pub clinics: Vec<String>,
}

/// The session opened with Enter.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// Its pen.
    pub device_id: String,
    /// Its id.
    pub session_id: String,
    /// The session record once loaded.
    pub session: Option<Session>,
    /// Depth timeline, then live samples.
    pub points: VecDeque<DepthPoint>,
    /// Why it could not be loaded.
    pub error: Option<String>,
}

/// The new-violation banner.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The newest violation.
    pub violation: Violation,
    /// New violations since the banner was last dismissed.
    pub count: u32,
    /// When the newest arrived, Unix ms.
    pub at_ms: i64,
}

/// How urgently a pen needs attention (lower first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attention {
    /// Its open session exceeded, or its current depth is above the permitted one.
    Exceeded,
    /// Offline with a session open.
    OfflineInSession,
    /// Cartridge at or past its rated life.
    WornCartridge,
    /// Cartridge near its rated life, low battery or a class mismatch.
    Warning,
    /// Treating.
    InSession,
    /// Online and idle.
    Idle,
    /// Offline or never seen.
    Offline,
}

impl Attention {
    /// How a pen ranks.
    pub fn of(d: &DeviceState) -> Attention {
        let online = d.status == "online";
        if d.exceeded || (d.permitted_mm > 0.0 && d.depth_mm > d.permitted_mm) {
            Attention::Exceeded
        } else if !online && !d.session_id.is_empty() {
            Attention::OfflineInSession
        } else if d.cartridge_wear_pct >= 100.0 {
            Attention::WornCartridge
        } else if d.cartridge_wear_pct >= WEAR_WARN_PCT
            || (online && d.battery_pct < LOW_BATTERY_PCT)
            || d.class_mismatch
        {
            Attention::Warning
        } else if !d.session_id.is_empty() {
            Attention::InSession
        } else if online {
            Attention::Idle
        } else {
            Attention::Offline
        }
    }
}

/// Something that happened: gateway data, a key, or the clock.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// The clock, Unix ms.
    Tick(i64),
    /// Connected to the gateway.
    Connected,
    /// The connection was lost; the next attempt is in `retry_in_ms`.
    Disconnected {
        /// Why.
        reason: String,
        /// Delay before the next attempt, ms.
        retry_in_ms: i64,
    },
    /// WhoAmI's answer.
    Identity(WhoAmIResponse),
    /// Pen states (streamed changes, coalesced, or a full list); an older state than the one
    /// held is ignored.
    Fleet(Vec<DeviceState>),
    /// A fresh page of sessions, newest first.
    Sessions(Vec<Session>),
    /// A fresh page of violations, newest first.
    Violations(Vec<Violation>),
    /// New or updated violations from the live stream.
    NewViolations(Vec<Violation>),
    /// Cartridges, aggregates and reuse events.
    Cartridges(ListCartridgesResponse),
    /// Operators with their counts.
    Operators(Vec<OperatorSummary>),
    /// The opened session in full.
    SessionDetail(Box<SessionDetail>),
    /// The opened session could not be loaded.
    DetailFailed(String),
    /// Live samples of the opened session's pen.
    Samples(Vec<JudgedSample>),
    /// The terminal was resized (redraw).
    Resized,
    /// Leave the dashboard.
    Quit,
    /// Next tab.
    NextTab,
    /// Previous tab.
    PrevTab,
    /// A tab by its number.
    SelectTab(Tab),
    /// Selection up.
    Up,
    /// Selection down.
    Down,
    /// Selection a page up.
    PageUp,
    /// Selection a page down.
    PageDown,
    /// First row.
    Top,
    /// Last row.
    Bottom,
    /// Open the selected row.
    Open,
    /// Close the detail, help or search; at the top level, quit.
    Back,
    /// Show or hide the key help.
    ToggleHelp,
    /// Start typing a search.
    StartSearch,
    /// A character of the search.
    SearchInput(char),
    /// Delete the last search character.
    SearchBackspace,
    /// Apply the search.
    SearchDone,
    /// Cancel the search being typed.
    SearchCancel,
    /// Next clinic filter.
    CycleClinic,
    /// Next device class filter.
    CycleClass,
    /// Next operator filter.
    CycleOperator,
    /// Next time range.
    CycleWindow,
    /// Toggle "only exceeded".
    ToggleExceeded,
    /// Clear every filter.
    ClearFilters,
    /// Dismiss the new-violation banner.
    Dismiss,
    /// Reload the lists now.
    Reload,
}

/// What the reducer asks of the outside world.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Reload the lists with this query (and use it from now on).
    Reload(Query),
    /// Load a session and stream its pen's samples.
    OpenSession {
        /// Its pen.
        device_id: String,
        /// Its id.
        session_id: String,
    },
    /// Stop streaming the closed detail's samples.
    CloseSession,
    /// Ring the terminal bell.
    Bell,
}

type SessionKey = (String, String);

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
    /// Who the token is (None until WhoAmI answered).
    pub identity: Option<Identity>,
    /// Pens by id.
    pub devices: HashMap<String, DeviceState>,
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
}

impl App {
    /// An empty dashboard at `now_ms`.
    pub fn new(now_ms: i64, bell: bool) -> Self {
        Self {
            now_ms,
            tab: Tab::Fleet,
            mode: Mode::Normal,
            link: Link::Connecting,
            identity: None,
            devices: HashMap::new(),
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

    /// The selected row of the current tab.
    pub fn selection(&self) -> usize {
        self.selected[self.tab.index()]
    }

    /// Pens shown on the Fleet screen, most urgent first.
    pub fn fleet_rows(&self) -> Vec<&DeviceState> {
        let mut rows: Vec<&DeviceState> = self
            .devices
            .values()
            .filter(|d| {
                let exceeded = Attention::of(d) == Attention::Exceeded;
                self.filters.keeps(
                    &RowKeys {
                        clinic: &d.clinic_id,
                        class: Some(&d.device_class),
                        operator: Some(&d.operator_id),
                        exceeded: Some(exceeded),
                        time_ms: None,
                        text: vec![&d.device_id, &d.clinic_id, &d.operator_id, &d.session_id],
                    },
                    self.now_ms,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            (Attention::of(a), &a.clinic_id, &a.device_id).cmp(&(
                Attention::of(b),
                &b.clinic_id,
                &b.device_id,
            ))
        });
        rows
    }

    /// Sessions shown on the Sessions screen: live ones first, then newest first.
    pub fn session_rows(&self) -> Vec<&Session> {
        let mut rows: Vec<&Session> = self
            .sessions
            .values()
            .filter(|s| {
                self.filters.keeps(
                    &RowKeys {
                        clinic: &s.clinic_id,
                        class: Some(&s.device_class),
                        operator: Some(&s.operator_id),
                        exceeded: Some(s.exceeded),
                        time_ms: Some(s.last_ms.max(s.started_ms)),
                        text: vec![&s.session_id, &s.device_id, &s.clinic_id, &s.operator_id],
                    },
                    self.now_ms,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            (
                a.state != "open",
                std::cmp::Reverse(a.started_ms),
                &a.session_id,
            )
                .cmp(&(
                    b.state != "open",
                    std::cmp::Reverse(b.started_ms),
                    &b.session_id,
                ))
        });
        rows
    }

    /// Violations shown, newest first.
    pub fn violation_rows(&self) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| {
                self.filters.keeps(
                    &RowKeys {
                        clinic: &v.clinic_id,
                        class: Some(&v.device_class),
                        operator: Some(&v.operator_id),
                        exceeded: Some(true),
                        time_ms: v
                            .evidence
                            .as_ref()
                            .map(|e| e.last_above_ms)
                            .filter(|t| *t > 0),
                        text: vec![&v.session_id, &v.device_id, &v.clinic_id, &v.operator_id],
                    },
                    self.now_ms,
                )
            })
            .collect()
    }

    /// Cartridges shown: reused first, then by wear.
    pub fn cartridge_rows(&self) -> Vec<&Cartridge> {
        let mut rows: Vec<&Cartridge> = self
            .cartridges
            .cartridges
            .iter()
            .filter(|c| {
                self.filters.keeps(
                    &RowKeys {
                        clinic: &c.clinic_id,
                        class: self
                            .devices
                            .get(&c.last_device_id)
                            .map(|d| d.device_class.as_str()),
                        operator: None,
                        exceeded: None,
                        time_ms: None,
                        text: vec![&c.cartridge_id, &c.model, &c.last_device_id, &c.clinic_id],
                    },
                    self.now_ms,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            (!a.reused, std::cmp::Reverse(wear_key(a)), &a.cartridge_id).cmp(&(
                !b.reused,
                std::cmp::Reverse(wear_key(b)),
                &b.cartridge_id,
            ))
        });
        rows
    }

    /// Operators shown: most violations first.
    pub fn operator_rows(&self) -> Vec<&OperatorSummary> {
        if !self.shows_operators() {
            return Vec::new();
        }
        let mut rows: Vec<&OperatorSummary> = self
            .operators
            .iter()
            .filter(|o| {
                self.filters.keeps(
                    &RowKeys {
                        clinic: &o.clinic_id,
                        class: None,
                        operator: Some(&o.operator_id),
                        exceeded: Some(o.violations > 0),
                        time_ms: None,
                        text: vec![&o.operator_id, &o.clinic_id, &o.qualification],
                    },
                    self.now_ms,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            (
                std::cmp::Reverse(a.violations),
                &a.clinic_id,
                &a.operator_id,
            )
                .cmp(&(
                    std::cmp::Reverse(b.violations),
                    &b.clinic_id,
                    &b.operator_id,
                ))
        });
        rows
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
            Msg::Sessions(list) => self.replace_sessions(list),
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
            Msg::Down => self.move_selection(1),
            Msg::PageUp => self.move_selection(-10),
            Msg::PageDown => self.move_selection(10),
            Msg::Top => self.move_selection(i64::MIN / 2),
            Msg::Bottom => self.move_selection(i64::MAX / 2),
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
                self.filters.clinic = cycle(&options, self.filters.clinic.take());
                return self.filters_changed();
            }
            Msg::CycleClass => {
                let options = ["home", "salon", "medical"].map(String::from);
                self.filters.class = cycle(&options, self.filters.class.take());
                return self.filters_changed();
            }
            Msg::CycleOperator => {
                if self.shows_operators() {
                    let options = self.operator_options();
                    self.filters.operator = cycle(&options, self.filters.operator.take());
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

    fn put_device(&mut self, d: DeviceState) {
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
            if d.permitted_mm > 0.0 && (s.permitted_mm == 0.0 || d.permitted_mm < s.permitted_mm) {
                s.permitted_mm = d.permitted_mm;
            }
            s.exceeded |= d.exceeded;
        }
        self.devices.insert(d.device_id.clone(), d);
    }

    fn replace_sessions(&mut self, list: Vec<Session>) {
        let live: Vec<Session> = self
            .sessions
            .drain()
            .map(|(_, s)| s)
            .filter(|s| {
                s.state == "open"
                    && self
                        .devices
                        .get(&s.device_id)
                        .is_some_and(|d| d.session_id == s.session_id)
            })
            .collect();
        for s in list {
            self.sessions
                .insert((s.device_id.clone(), s.session_id.clone()), s);
        }
        for s in live {
            let key = (s.device_id.clone(), s.session_id.clone());
            self.sessions.entry(key).or_insert(s);
        }
        let marks: Vec<Violation> = self.violations.iter().cloned().collect();
        marks.iter().for_each(|v| self.mark_exceeded(v));
        self.trim_sessions();
    }

    fn trim_sessions(&mut self) {
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

    fn mark_exceeded(&mut self, v: &Violation) {
        if let Some(s) = self
            .sessions
            .get_mut(&(v.device_id.clone(), v.session_id.clone()))
        {
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

    fn new_violations(&mut self, batch: Vec<Violation>) -> Vec<Command> {
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

    fn load_detail(&mut self, d: SessionDetail) {
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

    fn add_samples(&mut self, batch: Vec<JudgedSample>) {
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
                .map(|z| z.short_name())
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

    fn step_tab(&mut self, forward: bool) {
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

    fn rows_len(&self) -> usize {
        match self.tab {
            Tab::Fleet => self.fleet_rows().len(),
            Tab::Sessions => self.session_rows().len(),
            Tab::Violations => self.violation_rows().len(),
            Tab::Cartridges => self.cartridge_rows().len(),
            Tab::Operators => self.operator_rows().len(),
        }
    }

    fn move_selection(&mut self, by: i64) {
        let len = self.rows_len() as i64;
        let i = self.tab.index();
        let current = (self.selected[i] as i64).min(len - 1).max(0);
        self.selected[i] = (current + by).clamp(0, (len - 1).max(0)) as usize;
    }

    fn open(&mut self) -> Vec<Command> {
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

    fn close_detail(&mut self) -> Vec<Command> {
        match self.detail.take() {
            Some(_) => vec![Command::CloseSession],
            None => Vec::new(),
        }
    }

    fn filters_changed(&mut self) -> Vec<Command> {
        self.selected = [0; 5];
        vec![Command::Reload(self.filters.query())]
    }

    fn clinic_options(&self) -> Vec<String> {
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

    fn operator_options(&self) -> Vec<String> {
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

fn wear_key(c: &Cartridge) -> i64 {
    (c.wear_pct * 100.0) as i64
}

/// The option after `current` (None → first → … → last → None).
fn cycle(options: &[String], current: Option<String>) -> Option<String> {
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
    use crate::fixtures::{self, NOW};
    use penwatch_proto::v1::Telemetry;

    fn ids<T>(rows: &[&T], id: impl Fn(&T) -> &str) -> Vec<String> {
        rows.iter().map(|r| id(r).to_owned()).collect()
    }

    #[test]
    fn fleet_puts_what_needs_attention_first() {
        let app = fixtures::app("clinic-manager");
        let rows = app.fleet_rows();
        assert_eq!(
            ids(&rows, |d| &d.device_id),
            ["pen-h1", "pen-s1", "pen-s2", "pen-m2", "pen-m1", "pen-h2"]
        );
        let ranks: Vec<Attention> = rows.iter().map(|d| Attention::of(d)).collect();
        assert_eq!(
            ranks,
            [
                Attention::Exceeded,
                Attention::OfflineInSession,
                Attention::WornCartridge,
                Attention::Warning,
                Attention::InSession,
                Attention::Offline
            ]
        );
    }

    #[test]
    fn depth_above_permitted_counts_as_exceeded_before_the_verdict() {
        let d = fixtures::device("p", "c", "home", "online", "s", "o", 0.6, 0.5);
        assert_eq!(Attention::of(&d), Attention::Exceeded);
    }

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
        assert_eq!(app.violations.len(), 3);

        v.evidence = Some(fixtures::evidence(2.9, 2.5, "class", NOW));
        assert!(
            app.update(Msg::NewViolations(vec![v])).is_empty(),
            "grown evidence is not a new violation"
        );
        assert_eq!(app.violations.len(), 3);
        let peak = app.violations[0].evidence.as_ref().map(|e| e.peak_depth_mm);
        assert_eq!(peak, Some(2.9));
        assert_eq!(app.alert.as_ref().map(|a| a.count), Some(1));

        app.update(Msg::Tick(NOW + ALERT_MS + 1));
        assert!(app.alert.is_none(), "the banner expires");
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
    fn operators_hidden_until_the_role_is_known() {
        let app = App::new(NOW, false);
        assert!(!app.shows_operators());
    }

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
        app.update(Msg::Sessions(list));
        let rows = app.session_rows();
        assert_eq!(rows.len(), MAX_SESSIONS);
        assert_eq!(rows[0].session_id, "s-live");
        assert!(rows.iter().all(|s| s.session_id != "s0"), "oldest dropped");
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
