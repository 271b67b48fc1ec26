//! What the dashboard holds besides the lists: screens, key modes, the link to the gateway,
//! who the token is, the opened session, the banner, and how urgent a pen is.

use std::collections::VecDeque;

use penwatch_proto::v1::{DepthPoint, DeviceState, Session, Violation};

/// Most sessions kept (live ones first, then the newest); beyond it the screen asks for
/// narrower filters instead of loading more pages.
pub const MAX_SESSIONS: usize = 20_000;
/// Rows from the end of the session list at which the next page is asked for.
pub const LOAD_AHEAD: usize = 20;
/// Most violations kept in the feed.
pub const MAX_VIOLATIONS: usize = 500;
/// Most depth points kept for the open session's chart.
pub const MAX_POINTS: usize = 4_000;
/// How long the new-violation banner stays up unless dismissed, ms.
pub const ALERT_MS: i64 = 30_000;
/// Battery level below which a pen needs attention, %.
pub const LOW_BATTERY_PCT: f64 = 15.0;
/// How far a pen's clock may be from the gateway's before the dashboard says so, ms.
pub const CLOCK_SKEW_MS: i64 = 60_000;
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

    /// Its position in [`Tab::ALL`].
    pub(super) fn index(self) -> usize {
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
    /// The gateway refused the token; no more attempts.
    Refused {
        /// The gateway's answer.
        reason: String,
    },
}
/// One of several gateways, as the client last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayLink {
    /// Its address.
    pub address: String,
    /// Why it does not answer (None: it answers).
    pub problem: Option<String>,
    /// Since when it does not answer, Unix ms (0 while it answers).
    pub since_ms: i64,
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

/// How far the session list is loaded: the first page is reloaded every refresh, further
/// pages are loaded as the selection nears the end and kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Paging {
    /// The token of the next page not loaded yet ("" when every session is loaded).
    pub next: String,
    /// Pages beyond the first are loaded.
    pub deep: bool,
    /// A page was asked for and has not arrived.
    pub loading: bool,
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
    /// It sent messages that reuse a seq with other content, or its seq was reset: its
    /// evidence needs a reviewer's look.
    SeqAnomaly,
    /// Cartridge near its rated life, low battery, a class mismatch, or a clock far from the
    /// gateway's.
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
        } else if d.conflicts > 0 || d.seq_resets > 0 {
            Attention::SeqAnomaly
        } else if d.cartridge_wear_pct >= WEAR_WARN_PCT
            || (online && d.battery_pct < LOW_BATTERY_PCT)
            || d.class_mismatch
            || skewed(d)
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

/// Whether a pen's clock was more than [`CLOCK_SKEW_MS`] from the gateway's at its latest
/// telemetry: its session and excursion times are its own clock's.
pub fn skewed(d: &DeviceState) -> bool {
    d.last_seen_ms > 0 && d.clock_offset_ms.abs() > CLOCK_SKEW_MS
}

/// A session's key: its pen and its id.
pub(super) type SessionKey = (String, String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn depth_above_permitted_counts_as_exceeded_before_the_verdict() {
        let d = fixtures::device("p", "c", "home", "online", "s", "o", 0.6, 0.5);
        assert_eq!(Attention::of(&d), Attention::Exceeded);
    }
}
