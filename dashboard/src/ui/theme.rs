//! Colours and the marks that must read on a monochrome terminal too: every coloured state
//! also has a symbol or a word.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use crate::format;

/// Exceeded, over limit, reused: red and bold.
pub const DANGER: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
/// Needs a look soon.
pub const WARN: Style = Style::new().fg(Color::Yellow);
/// Within limits.
pub const OK: Style = Style::new().fg(Color::Green);
/// Secondary text.
pub const DIM: Style = Style::new().fg(Color::DarkGray);
/// Table headers.
pub const HEADER: Style = Style::new().add_modifier(Modifier::BOLD.union(Modifier::UNDERLINED));
/// The selected row.
pub const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
/// Block titles.
pub const TITLE: Style = Style::new().add_modifier(Modifier::BOLD);

/// The mark of a session that exceeded its permitted depth.
pub const EXCEEDED: &str = "▲ EXCEEDED";
/// The mark of a reused cartridge.
pub const REUSED: &str = "‼ REUSED";
/// Verdict of a session whose closed record was within limits and whose late messages (an
/// amendment) exceeded.
pub const EXCEEDED_LATE: &str = "▲ LATE";
/// Mark of a closed session or violation amended by late messages.
pub const AMENDED: &str = "+A";

/// A bar of `width` cells filled to `value / full`.
pub fn bar(value: f64, full: f64, width: usize) -> String {
    let ratio = if full > 0.0 {
        (value / full).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = (ratio * width as f64).round() as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// Current depth against the permitted depth: a coloured bar, a mark when above, the numbers.
pub fn depth_gauge(depth: f64, permitted: f64, exceeded: bool) -> Line<'static> {
    let over = exceeded || (permitted > 0.0 && depth > permitted);
    let style = if over {
        DANGER
    } else if depth <= 0.0 {
        DIM
    } else if permitted > 0.0 && depth >= 0.8 * permitted {
        WARN
    } else {
        OK
    };
    let mark = if over { "▲" } else { " " };
    Line::from(vec![
        Span::styled(mark, style),
        Span::styled(bar(depth, permitted.max(depth), 8), style),
        Span::raw(" "),
        Span::styled(
            format!("{}/{}", format::mm(depth), format::mm(permitted)),
            if over { DANGER } else { Style::new() },
        ),
    ])
}

/// An exceeded session's worst excursion: its peak against the limit it broke, the same
/// figures as its flag.
pub fn peak_gauge(peak: f64, limit: f64) -> Line<'static> {
    Line::styled(
        format!("▲ peak {}/{}", format::mm(peak), format::mm(limit)),
        DANGER,
    )
}

/// Style of a wear percentage.
pub fn wear_style(pct: f64) -> Style {
    if pct >= 100.0 {
        DANGER
    } else if pct >= 80.0 {
        WARN
    } else {
        Style::new()
    }
}

/// A cartridge wear percentage with a word from 80 %.
pub fn wear_text(pct: f64) -> String {
    if pct >= 100.0 {
        format!("{} WORN", format::pct(pct))
    } else if pct >= 80.0 {
        format!("{} warn", format::pct(pct))
    } else {
        format::pct(pct)
    }
}
