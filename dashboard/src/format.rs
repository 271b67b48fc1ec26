//! Text for times, depths and percentages, the same on every screen.

/// Device-supplied text as shown: control characters escaped (ESC as `\u{1b}`), so the
/// terminal shows them instead of obeying them.
pub fn text(s: &str) -> String {
    penwatch_proto::text::escape_controls(s).into_owned()
}

/// `HH:MM:SS` (UTC) of a Unix ms time; `--:--:--` for 0.
pub fn clock(ms: i64) -> String {
    if ms <= 0 {
        return "--:--:--".into();
    }
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `MM-DD HH:MM` (UTC) of a Unix ms time; `-` for 0.
pub fn date_time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let (_, month, day) = civil_date(ms.div_euclid(86_400_000));
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{month:02}-{day:02} {:02}:{:02}",
        secs / 3600,
        secs / 60 % 60
    )
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

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        // 2026-09-21T14:13:20Z
        let t = 1_790_000_000_000;
        assert_eq!(clock(t), "14:13:20");
        assert_eq!(date_time(t), "09-21 14:13");
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(20_513), (2026, 3, 1));
        assert_eq!(clock(0), "--:--:--");
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
