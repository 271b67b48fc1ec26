//! Text for times, depths and percentages, the same on every screen.

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Device-supplied text as shown: control characters escaped (ESC as `\u{1b}`), so the
/// terminal shows them instead of obeying them.
pub fn text(s: &str) -> String {
    penwatch_proto::text::escape_controls(s).into_owned()
}

/// The time zone the dashboard shows times in: the system's (`TZ`, else `/etc/localtime`)
/// by default, UTC with `--utc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone(TimeZone);

impl Zone {
    /// Coordinated Universal Time.
    pub fn utc() -> Self {
        Zone(TimeZone::UTC)
    }

    /// The system's zone; UTC when it cannot be determined.
    pub fn system() -> Self {
        Zone(TimeZone::try_system().unwrap_or(TimeZone::UTC))
    }

    /// A zone by its IANA name.
    #[cfg(test)]
    pub(crate) fn named(name: &str) -> Self {
        Zone(TimeZone::get(name).expect("a zone the tzdb has"))
    }

    /// The zone as the header names it at `ms`: its abbreviation, and its IANA name when that
    /// says more (`CET Europe/Berlin`, `UTC`).
    pub fn label(&self, ms: i64) -> String {
        let abbreviation = self.at(ms).map(|z| z.strftime("%Z").to_string());
        match (abbreviation, self.0.iana_name()) {
            // `UTC` for `Etc/UTC`; `CEST Europe/Berlin`.
            (Some(a), Some(name)) if name.rsplit('/').next() != Some(a.as_str()) => {
                format!("{a} {name}")
            }
            (Some(a), _) => a,
            (None, Some(name)) => name.to_owned(),
            (None, None) => "UTC".to_owned(),
        }
    }

    /// The zone's abbreviation at `ms` (`CEST`, `UTC`).
    pub fn abbreviation(&self, ms: i64) -> String {
        self.at(ms)
            .map_or_else(|| "UTC".to_owned(), |z| z.strftime("%Z").to_string())
    }

    /// `HH:MM:SS` of a Unix ms time; `--:--:--` for 0.
    pub fn clock(&self, ms: i64) -> String {
        self.show(ms, "%H:%M:%S", "--:--:--")
    }

    /// `MM-DD HH:MM` of a Unix ms time; `-` for 0.
    pub fn date_time(&self, ms: i64) -> String {
        self.show(ms, "%m-%d %H:%M", "-")
    }

    fn show(&self, ms: i64, pattern: &str, none: &str) -> String {
        match self.at(ms) {
            Some(z) if ms > 0 => z.strftime(pattern).to_string(),
            _ => none.to_owned(),
        }
    }

    fn at(&self, ms: i64) -> Option<Zoned> {
        Timestamp::from_millisecond(ms)
            .ok()
            .map(|t| t.to_zoned(self.0.clone()))
    }
}

/// How long ago `ms` was at `now_ms`: `12s`, `5m`, `3h`, `2d`; `-` for 0.
pub fn ago(now_ms: i64, ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let s = (now_ms - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// An operator id as shown, with `?` when the policy does not know the operator.
pub fn operator(id: &str, unknown: bool) -> String {
    if unknown {
        format!("{}?", text(id))
    } else {
        text(id)
    }
}

/// A depth in mm with two decimals.
pub fn mm(v: f64) -> String {
    format!("{v:.2}")
}

/// A whole percentage.
pub fn pct(v: f64) -> String {
    format!("{:.0}%", v.max(0.0))
}

/// A count with thousands separated by `,`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_the_chosen_zone_with_its_name() {
        // 2026-09-21T14:13:20Z
        let t = 1_790_000_000_000;
        let utc = Zone::utc();
        assert_eq!(utc.clock(t), "14:13:20");
        assert_eq!(utc.date_time(t), "09-21 14:13");
        assert_eq!(utc.label(t), "UTC");
        assert_eq!(Zone::named("Etc/UTC").label(t), "UTC");
        assert_eq!(utc.clock(0), "--:--:--");
        assert_eq!(utc.date_time(0), "-");
        let berlin = Zone::named("Europe/Berlin");
        assert_eq!(berlin.clock(t), "16:13:20");
        assert_eq!(berlin.date_time(t), "09-21 16:13");
        assert_eq!(berlin.label(t), "CEST Europe/Berlin");
        assert_eq!(berlin.label(1_800_000_000_000), "CET Europe/Berlin");
    }

    #[test]
    fn ages_and_numbers() {
        assert_eq!(ago(100_000, 95_000), "5s");
        assert_eq!(ago(10_000_000, 10_000_000 - 7_200_000), "2h");
        assert_eq!(ago(5, 0), "-");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(mm(2.5), "2.50");
        assert_eq!(pct(82.4), "82%");
    }
}
