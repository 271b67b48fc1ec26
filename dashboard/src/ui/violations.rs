//! Violations: the live feed, newest first.

use penwatch_proto::v1::Violation;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Cell;

use crate::app::App;
use crate::format;
use crate::ui::sessions::peak_limit;
use crate::ui::table::{Column, col};
use crate::ui::{selected, table, theme};

/// Draws the Violations screen.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.violation_rows();
    let open = rows.iter().filter(|v| !v.r#final).count();
    let ops = app.shows_operators();
    let mut columns: Vec<Column> = vec![
        col("Last above", 11, 0),
        col("State", 7, 2),
        col("Session", 12, 0)
            .grow(20)
            .ids(rows.iter().map(|v| v.session_id.as_str())),
        col("Device", 12, 0)
            .grow(20)
            .ids(rows.iter().map(|v| v.device_id.as_str())),
        col("Clinic", 6, 3).ids(rows.iter().map(|v| v.clinic_id.as_str())),
        col("Class", 7, 4),
    ];
    if ops {
        let shown: Vec<String> = rows
            .iter()
            .map(|v| format::operator(&v.operator_id, v.unknown_operator))
            .collect();
        columns.push(
            col("Operator", 10, 1)
                .grow(16)
                .ids(shown.iter().map(String::as_str)),
        );
    }
    columns.extend([
        col("▲ Peak/limit mm", 15, 0),
        col("Rule", 8, 1),
        col("Excess", 6, 2),
        col("Strokes above", 13, 3),
        col("Excursions", 10, 4),
        col("First above", 11, 5),
        col("Policy", 10, 6),
    ]);
    let cells = rows.iter().map(|v| row(app, v, ops)).collect();
    let title = Line::from(format!(
        " Violations: {} shown, {open} still open · newest first · Enter opens ",
        rows.len()
    ));
    table::render(
        frame,
        area,
        title,
        &columns,
        cells,
        selected(app, rows.len()),
    );
}

fn row(app: &App, v: &Violation, ops: bool) -> Vec<Cell<'static>> {
    let e = v.evidence.clone().unwrap_or_default();
    let state = if v.amendment > 0 {
        Cell::from(format!("late{}{}", theme::AMENDED, v.amendment)).style(theme::DANGER)
    } else if v.r#final && v.session_amendments > 0 {
        Cell::from(format!("final{}", theme::AMENDED)).style(theme::WARN)
    } else if v.r#final {
        Cell::from("final").style(theme::DIM)
    } else {
        Cell::from("OPEN").style(theme::DANGER)
    };
    let mut cells = vec![
        Cell::from(app.zone.date_time(e.last_above_ms)),
        state,
        Cell::from(format::text(&v.session_id)),
        Cell::from(format::text(&v.device_id)),
        Cell::from(format::text(&v.clinic_id)),
        Cell::from(format::text(&v.device_class)),
    ];
    if ops {
        cells.push(Cell::from(format::operator(
            &v.operator_id,
            v.unknown_operator,
        )));
    }
    cells.extend([
        peak_limit(e.peak_depth_mm, e.limit_mm, true),
        Cell::from(e.binding_rule.clone()).style(theme::DANGER),
        Cell::from(format!("+{}", format::mm(e.excess_mm))).style(theme::DANGER),
        Cell::from(format::count(e.strokes_above)),
        Cell::from(format::count(
            e.other_excursions.len() as u64 + e.unlisted_excursions + 1,
        )),
        Cell::from(app.zone.date_time(e.first_above_ms)),
        Cell::from(format::text(&e.policy_version)),
    ]);
    cells
}
