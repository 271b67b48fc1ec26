//! Operators: sessions and violations per operator (never shown to a manufacturer).

use penwatch_proto::v1::OperatorSummary;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Cell;

use crate::app::App;
use crate::format;
use crate::ui::table::col;
use crate::ui::{selected, table, theme};

/// Draws the Operators screen.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.operator_rows();
    let columns = [
        col("Operator", 12, 0)
            .grow(20)
            .ids(rows.iter().map(|o| o.operator_id.as_str())),
        col("Clinic", 6, 1).ids(rows.iter().map(|o| o.clinic_id.as_str())),
        col("Qualification", 22, 2),
        col("Max mm", 6, 1),
        col("Sessions", 8, 0),
        col("Violations", 10, 0),
        col("Deepest mm", 10, 1),
    ];
    let cells = rows.iter().map(|o| row(o)).collect();
    let title = Line::from(format!(
        " Operators: {} · Enter shows their sessions ",
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

fn row(o: &OperatorSummary) -> Vec<Cell<'static>> {
    let qualification = if o.known {
        Cell::from(format::text(&o.qualification))
    } else {
        Cell::from("? unknown").style(theme::WARN)
    };
    let violations = if o.violations > 0 {
        Cell::from(format!("▲ {}", o.violations)).style(theme::DANGER)
    } else {
        Cell::from("0")
    };
    let deepest_style = if o.max_mm > 0.0 && o.max_depth_mm > o.max_mm {
        theme::DANGER
    } else {
        Style::new()
    };
    vec![
        Cell::from(format::text(&o.operator_id)),
        Cell::from(format::text(&o.clinic_id)),
        qualification,
        Cell::from(format::mm(o.max_mm)),
        Cell::from(o.sessions.to_string()),
        violations,
        Cell::from(format::mm(o.max_depth_mm)).style(deepest_style),
    ]
}
