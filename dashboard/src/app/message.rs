//! What the reducer takes ([`Msg`]) and what it answers with ([`Command`], carrying the
//! [`Query`] the lists are loaded with).

use penwatch_proto::v1::{
    DeviceState, Filter, JudgedSample, ListCartridgesResponse, ListSessionsResponse,
    OperatorSummary, SessionDetail, Violation, WhoAmIResponse,
};

use super::state::Tab;

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
    /// The gateway refused the token (unknown, or not allowed what the dashboard asks): the
    /// client stops trying until the dashboard is restarted with another token.
    Refused {
        /// The gateway's answer.
        reason: String,
    },
    /// Which of several gateways answer: each address with why it does not (None: it
    /// answers). Not sent with one gateway.
    Gateways(Vec<(String, Option<String>)>),
    /// WhoAmI's answer.
    Identity(WhoAmIResponse),
    /// Pen states (streamed changes, coalesced); an older state than the one held is ignored.
    Fleet(Vec<DeviceState>),
    /// Every pen the answering gateways list, reloaded. Without `complete` (a gateway did not
    /// answer) the pens held but not listed are that gateway's: kept as last seen, shown as
    /// unconfirmed until a gateway speaks of them again.
    FleetList {
        /// The listed pens.
        devices: Vec<DeviceState>,
        /// Every gateway answered.
        complete: bool,
    },
    /// The first page of sessions (newest first), reloaded.
    Sessions(ListSessionsResponse),
    /// A further page of sessions, asked for with [`Command::MoreSessions`].
    MoreSessions(ListSessionsResponse),
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
    /// Load the next page of sessions (older ones) under this query.
    MoreSessions {
        /// The query the pages belong to.
        query: Query,
        /// The token of the page wanted.
        page_token: String,
    },
    /// Ring the terminal bell.
    Bell,
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
