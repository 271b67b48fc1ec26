//! The two header lines (tabs; connection, identity, filters, clock), the banners (connection
//! lost, new violation) and the footer (key hints or the search being typed).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, CLOCK_SKEW_MS, Link, Mode, skewed};
use crate::format;
use crate::ui::theme;

const LOST: Style = Style::new()
    .fg(Color::White)
    .bg(Color::Red)
    .add_modifier(Modifier::BOLD);
const NOTICE: Style = Style::new().fg(Color::Black).bg(Color::Cyan);
const ALERT: Style = Style::new()
    .fg(Color::Black)
    .bg(Color::Yellow)
    .add_modifier(Modifier::BOLD);

/// Draws the tabs line and the status line.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let [tabs_area, status_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let mut tabs = vec![Span::styled(
        " PenWatch ",
        Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
    )];
    for (n, tab) in app.tabs().into_iter().enumerate() {
        tabs.push(Span::raw(if n == 0 { " " } else { " │ " }));
        let style = if tab == app.tab {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            Style::new()
        };
        let number = crate::app::Tab::ALL
            .iter()
            .position(|t| *t == tab)
            .unwrap_or(0)
            + 1;
        tabs.push(Span::styled(format!("{number} {}", tab.title()), style));
    }
    frame.render_widget(Paragraph::new(Line::from(tabs)), tabs_area);

    let clock = format!(
        "{} {} ",
        app.zone.clock(app.now_ms),
        app.zone.label(app.now_ms)
    );
    let [left, right] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(clock.chars().count() as u16 + 1),
    ])
    .areas(status_area);
    let (up, total) = app.answering();
    let link = match &app.link {
        Link::Connecting => Span::styled("○ connecting", theme::WARN),
        Link::Connected if up < total => {
            Span::styled(format!("◐ {up}/{total} gateways"), theme::DANGER)
        }
        Link::Connected if total > 1 => Span::styled(format!("● live {total} gateways"), theme::OK),
        Link::Connected => Span::styled("● live", theme::OK),
        Link::Lost { .. } => Span::styled("✖ OFFLINE", theme::DANGER),
        Link::Refused { .. } => Span::styled("✖ REFUSED", theme::DANGER),
    };
    let who = match &app.identity {
        Some(i) if i.clinics.is_empty() => format!(" │ {}", i.role),
        Some(i) => format!(" │ {} @{}", i.role, i.clinics.join(",")),
        None => String::new(),
    };
    let status = Line::from(vec![
        Span::raw(" "),
        link,
        Span::styled(who, theme::DIM),
        Span::raw(" │ "),
        Span::raw(filter_summary(app)),
    ]);
    frame.render_widget(Paragraph::new(status), left);
    frame.render_widget(Paragraph::new(clock).right_aligned(), right);
}

fn filter_summary(app: &App) -> String {
    let f = &app.filters;
    if f.is_empty() {
        return "no filter".into();
    }
    let mut parts: Vec<String> = Vec::new();
    parts.extend(
        f.clinic
            .iter()
            .map(|c| format!("clinic {}", format::text(c))),
    );
    parts.extend(f.class.iter().cloned());
    if app.shows_operators() {
        parts.extend(
            f.operator
                .iter()
                .map(|o| format!("operator {}", format::text(o))),
        );
    }
    if f.window.millis().is_some() {
        parts.push(format!("last {}", f.window.label()));
    }
    if f.only_exceeded {
        parts.push("exceeded only".into());
    }
    if !f.search.is_empty() {
        parts.push(format!("/{}", f.search));
    }
    format!("filter: {}", parts.join(" · "))
}

/// The banner lines to show now (connection first, then the violation alert), with their style.
pub fn banners(app: &App) -> Vec<(String, Style)> {
    let mut lines = Vec::new();
    if let Link::Lost {
        reason,
        since_ms,
        retry_at_ms,
    } = &app.link
    {
        let wait = (retry_at_ms - app.now_ms).max(0);
        let retry = if wait == 0 {
            "reconnecting".to_owned()
        } else {
            format!("retry in {}s", (wait + 999) / 1000)
        };
        lines.push((
            format!(
                " ✖ CONNECTION LOST · {retry} · data as of {} · {reason}",
                app.zone.clock(*since_ms),
            ),
            LOST,
        ));
    }
    if let Some(line) = gateways_down(app) {
        lines.push((line, LOST));
    }
    if let Link::Refused { reason } = &app.link {
        lines.push((
            format!(
                " ✖ ACCESS REFUSED · {} · check the token (--token or PENWATCH_TOKEN); not retrying",
                format::text(reason)
            ),
            LOST,
        ));
    }
    if let Some(line) = clock_notice(app) {
        lines.push((line, NOTICE));
    }
    if let Some(alert) = &app.alert {
        let v = &alert.violation;
        let (peak, limit, rule) = v.evidence.as_ref().map_or((0.0, 0.0, ""), |e| {
            (e.peak_depth_mm, e.limit_mm, e.binding_rule.as_str())
        });
        let more = if alert.count > 1 {
            format!(" · {} new", alert.count)
        } else {
            String::new()
        };
        lines.push((
            format!(
                " ▲ NEW VIOLATION {} @ {}: {} mm > {} mm ({rule}) · session {}{more} · a: dismiss",
                format::text(&v.device_id),
                format::text(&v.clinic_id),
                format::mm(peak),
                format::mm(limit),
                format::text(&v.session_id),
            ),
            ALERT,
        ));
    }
    lines
}

/// With several gateways, the ones not answering while others do: what is on screen lacks
/// their rows (their pens stay as last seen), so the banner says whose and since when.
fn gateways_down(app: &App) -> Option<String> {
    let (up, total) = app.answering();
    if up == total || !matches!(app.link, Link::Connected) {
        return None;
    }
    let down: Vec<_> = app
        .gateways
        .iter()
        .filter_map(|g| Some((g, g.problem.as_deref()?)))
        .collect();
    let which: Vec<String> = down
        .iter()
        .map(|(g, _)| {
            format!(
                "{} down since {}",
                format::text(&g.address),
                app.zone.clock(g.since_ms)
            )
        })
        .collect();
    let why: Vec<String> = down
        .iter()
        .map(|(g, problem)| match down.len() {
            1 => format::text(problem),
            _ => format!("{}: {}", format::text(&g.address), format::text(problem)),
        })
        .collect();
    let whose = if down.len() == 1 { "its" } else { "their" };
    Some(format!(
        " ✖ {up} of {total} gateways answering · {} · lists from the others only, {whose} pens as last seen · {}",
        which.join(", "),
        why.join("; ")
    ))
}

/// A notice when pens' clocks are far from the gateway's: the times a pen reports (session
/// start, excursions) are its own clock's.
fn clock_notice(app: &App) -> Option<String> {
    let pens: Vec<_> = app.devices.values().filter(|d| skewed(d)).collect();
    let worst = pens
        .iter()
        .max_by_key(|d| (d.clock_offset_ms.abs(), &d.device_id))?;
    let line = format!(
        " ⏱ CLOCK · {} pen{} off the gateway's clock by over {}s (worst {} {}) · times shown are the pens' own",
        pens.len(),
        if pens.len() == 1 { "" } else { "s" },
        CLOCK_SKEW_MS / 1000,
        format::text(&worst.device_id),
        offset(worst.clock_offset_ms),
    );
    Some(line)
}

/// A clock offset: `+5m 12s`, `-40s`.
fn offset(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    let s = ms.unsigned_abs() / 1000;
    match s {
        0..60 => format!("{sign}{s}s"),
        60..3600 => format!("{sign}{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{sign}{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{sign}{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

/// Draws the banner lines, one per row.
pub fn draw_banners(frame: &mut Frame, area: Rect, lines: Vec<(String, Style)>) {
    for (i, (text, style)) in lines.into_iter().enumerate() {
        let row = Rect {
            y: area.y + i as u16,
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new(text).style(style), row);
    }
}

/// Draws the footer: the search being typed, or key hints.
pub fn draw_footer(frame: &mut Frame, area: Rect, app: &App) {
    let line = if app.mode == Mode::Search {
        Line::from(vec![
            Span::styled(" / ", theme::TITLE),
            Span::raw(app.search_draft.clone()),
            Span::styled("█", theme::DIM),
            Span::styled("  Enter apply · Esc cancel", theme::DIM),
        ])
    } else {
        let back = if app.detail.is_some() {
            "Esc back"
        } else {
            "q quit"
        };
        Line::from(Span::styled(
            format!(
                " {back} · ? keys · ←→ screens · ↑↓ select · Enter open · / search · c d o t x filter · C clear"
            ),
            theme::DIM,
        ))
    };
    frame.render_widget(Paragraph::new(line), area);
}
