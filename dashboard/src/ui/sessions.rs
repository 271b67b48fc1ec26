//! Sessions: live and recent, every exceeded one flagged with colour and `▲ EXCEEDED`.

use penwatch_proto::v1::Session;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Cell;

use crate::app::{App, MAX_SESSIONS};
use crate::format;
use crate::ui::table::{Column, col};
use crate::ui::{selected, table, theme};

/// Draws the Sessions screen.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.session_rows();
    let live = rows.iter().filter(|s| s.state == "open").count();
    let exceeded = rows.iter().filter(|s| s.exceeded).count();
    let ops = app.shows_operators();
    let zones: Vec<String> = rows.iter().map(|s| s.zones.join(",")).collect();
    let mut columns: Vec<Column> = vec![
        col("Verdict", 10, 0),
        col("State", 7, 1),
        col("Session", 12, 0)
            .grow(20)
            .ids(rows.iter().map(|s| s.session_id.as_str())),
        col("Device", 12, 0)
            .grow(20)
            .ids(rows.iter().map(|s| s.device_id.as_str())),
        col("Clinic", 6, 4).ids(rows.iter().map(|s| s.clinic_id.as_str())),
        col("Class", 7, 3),
    ];
    if ops {
        let shown: Vec<String> = rows
            .iter()
            .map(|s| format::operator(&s.operator_id, s.unknown_operator))
            .collect();
        columns.push(
            col("Operator", 10, 2)
                .grow(16)
                .ids(shown.iter().map(String::as_str)),
        );
    }
    columns.extend([
        col("Started", 11, 4),
        col("Peak/limit mm", 13, 0),
        col("Rule", 8, 1),
        col("Strokes", 7, 5),
        col("Cartridge", 10, 6)
            .grow(20)
            .ids(rows.iter().map(|s| s.cartridge_id.as_str())),
        col("Zones", 14, 7).ids(zones.iter().map(String::as_str)),
    ]);
    let cells = rows.iter().map(|s| row(app, s, ops)).collect();
    let title = Line::from(vec![
        Span::raw(format!(" Sessions: {} shown, {live} live, ", rows.len())),
        Span::styled(
            format!("{exceeded} exceeded"),
            if exceeded > 0 {
                theme::DANGER
            } else {
                Style::new()
            },
        ),
        Span::raw(" · Enter opens "),
        Span::styled(more(app), theme::DIM),
    ]);
    table::render(
        frame,
        area,
        title,
        &columns,
        cells,
        selected(app, rows.len()),
    );
}

/// What the list does not hold yet: older pages load as the selection nears the end.
fn more(app: &App) -> &'static str {
    if app.paging.next.is_empty() {
        ""
    } else if app.paging.loading {
        "· loading older sessions… "
    } else if app.session_count() >= MAX_SESSIONS {
        "· older sessions not loaded: narrow the filters "
    } else {
        "· older sessions load as you scroll "
    }
}

/// The verdict cell of a session.
pub fn verdict(s: &Session) -> Cell<'static> {
    if s.exceeded {
        Cell::from(theme::EXCEEDED).style(theme::DANGER)
    } else if s.exceeded_by_amendment {
        Cell::from(theme::EXCEEDED_LATE).style(theme::DANGER)
    } else if s.samples == 0 && s.strokes == 0 && s.state == "open" {
        Cell::from("")
    } else {
        Cell::from("✓ ok").style(theme::OK)
    }
}

/// Peak against limit, with the binding rule's limit.
pub fn peak_limit(peak: f64, limit: f64, exceeded: bool) -> Cell<'static> {
    let text = format!("{} / {}", format::mm(peak), format::mm(limit));
    let style = if exceeded {
        theme::DANGER
    } else {
        Style::new()
    };
    Cell::from(text).style(style)
}

fn row(app: &App, s: &Session, ops: bool) -> Vec<Cell<'static>> {
    // An exceeded session shows its worst excursion: a peak only beside its own limit.
    let (peak, limit, rule) = match &s.evidence {
        Some(e) if s.exceeded => (e.peak_depth_mm, e.limit_mm, e.binding_rule.clone()),
        _ => (s.max_depth_mm, s.permitted_mm, s.binding_rule.clone()),
    };
    let state = if s.state == "open" {
        Cell::from("live").style(theme::OK)
    } else if s.amendments > 0 {
        Cell::from(format!("ended{}", theme::AMENDED)).style(theme::WARN)
    } else {
        Cell::from("ended").style(theme::DIM)
    };
    let mut cells = vec![
        verdict(s),
        state,
        Cell::from(format::text(&s.session_id)),
        Cell::from(format::text(&s.device_id)),
        Cell::from(format::text(&s.clinic_id)),
        Cell::from(format::text(&s.device_class)),
    ];
    if ops {
        cells.push(Cell::from(format::operator(
            &s.operator_id,
            s.unknown_operator,
        )));
    }
    cells.extend([
        Cell::from(app.zone.date_time(s.started_ms)),
        peak_limit(peak, limit, s.exceeded),
        Cell::from(rule).style(if s.exceeded {
            theme::DANGER
        } else {
            Style::new()
        }),
        Cell::from(format::count(s.strokes)),
        Cell::from(format::text(&s.cartridge_id)),
        Cell::from(s.zones.join(",")),
    ]);
    cells
}
