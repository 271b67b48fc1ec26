//! The two header lines (tabs; connection, identity, filters, clock), the banners (connection
//! lost, new violation) and the footer (key hints or the search being typed).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, Link, Mode};
use crate::format;
use crate::ui::theme;

const LOST: Style = Style::new()
    .fg(Color::White)
    .bg(Color::Red)
    .add_modifier(Modifier::BOLD);
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

    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(14)]).areas(status_area);
    let link = match &app.link {
        Link::Connecting => Span::styled("○ connecting", theme::WARN),
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
    frame.render_widget(
        Paragraph::new(format!("{} UTC ", format::clock(app.now_ms))).right_aligned(),
        right,
    );
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
                format::clock(*since_ms),
            ),
            LOST,
        ));
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
