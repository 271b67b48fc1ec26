//! Fleet: one row per pen, the ones that need attention first.

use penwatch_proto::v1::DeviceState;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Cell;

use crate::app::{App, Attention, LOW_BATTERY_PCT, WEAR_WARN_PCT, skewed};
use crate::format;
use crate::ui::table::{Column, col};
use crate::ui::{selected, table, theme};

/// Draws the Fleet screen.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.fleet_rows();
    let urgent = rows
        .iter()
        .filter(|d| Attention::of(d) <= Attention::Warning)
        .count();
    let unconfirmed = rows
        .iter()
        .filter(|d| app.unconfirmed.contains(&d.device_id))
        .count();
    let online = rows
        .iter()
        .filter(|d| d.status == "online" && !app.unconfirmed.contains(&d.device_id))
        .count();
    let ops = app.shows_operators();
    let mut columns: Vec<Column> = vec![
        col("Attention", 10, 0),
        col("Device", 12, 0)
            .grow(20)
            .ids(rows.iter().map(|d| d.device_id.as_str())),
        col("Clinic", 6, 4).ids(rows.iter().map(|d| d.clinic_id.as_str())),
        col("Class", 7, 2),
        col("Status", 7, 1),
        col("Batt", 4, 4),
    ];
    if ops {
        let shown: Vec<String> = rows
            .iter()
            .map(|d| format::operator(&d.operator_id, app.operator_unknown(d)))
            .collect();
        columns.push(
            col("Operator", 10, 3)
                .grow(16)
                .ids(shown.iter().map(String::as_str)),
        );
    }
    columns.extend([
        col("Depth/permitted mm", 19, 0),
        col("Strokes", 7, 4),
        col("Wear", 5, 3),
        col("Session", 12, 6)
            .grow(20)
            .ids(rows.iter().map(|d| d.session_id.as_str())),
        col("Model", 10, 7)
            .grow(16)
            .ids(rows.iter().map(|d| d.model.as_str())),
        col("Firmware", 8, 8).ids(rows.iter().map(|d| d.firmware.as_str())),
        col("Seen", 5, 5),
    ]);
    let cells = rows.iter().map(|d| row(app, d, ops)).collect();
    let title = Line::from(if unconfirmed > 0 {
        format!(
            " Fleet: {} pens, {online} online, {urgent} need attention, {unconfirmed} as last seen (gateway not answering) ",
            rows.len()
        )
    } else {
        format!(
            " Fleet: {} pens, {online} online, {urgent} need attention ",
            rows.len()
        )
    });
    table::render(
        frame,
        area,
        title,
        &columns,
        cells,
        selected(app, rows.len()),
    );
}

fn row(app: &App, d: &DeviceState, ops: bool) -> Vec<Cell<'static>> {
    // A pen only a silent gateway knows: its state is as last seen, not as it is now.
    let unconfirmed = app.unconfirmed.contains(&d.device_id);
    let attention = Attention::of(d);
    let (mark, style) = match attention {
        _ if unconfirmed => ("? STALE".to_owned(), theme::WARN),
        Attention::Exceeded => (theme::EXCEEDED.to_owned(), theme::DANGER),
        Attention::OfflineInSession => ("! OFFLINE".to_owned(), theme::DANGER),
        Attention::WornCartridge => ("◆ WORN".to_owned(), theme::WARN),
        Attention::SeqAnomaly => ("≠ SEQ".to_owned(), theme::DANGER),
        Attention::Warning => (warning(d).to_owned(), theme::WARN),
        _ => (String::new(), Style::new()),
    };
    let status = match d.status.as_str() {
        _ if unconfirmed => Cell::from("unknown").style(theme::DIM),
        "online" => Cell::from("online").style(theme::OK),
        "offline" => Cell::from("OFFLINE").style(theme::DIM),
        other => Cell::from(format::text(other)).style(theme::DIM),
    };
    let battery_style = if d.battery_pct < LOW_BATTERY_PCT {
        theme::WARN
    } else {
        Style::new()
    };
    let mut cells = vec![
        Cell::from(mark).style(style),
        Cell::from(format::text(&d.device_id)),
        Cell::from(format::text(&d.clinic_id)),
        Cell::from(class_text(d)),
        status,
        Cell::from(format::pct(d.battery_pct)).style(battery_style),
    ];
    if ops {
        cells.push(Cell::from(format::operator(
            &d.operator_id,
            app.operator_unknown(d),
        )));
    }
    let session = !d.session_id.is_empty();
    cells.extend([
        if let Some((peak, limit)) = app.worst_excursion(d) {
            Cell::from(theme::peak_gauge(peak, limit))
        } else if session || d.depth_mm > 0.0 {
            Cell::from(theme::depth_gauge(d.depth_mm, d.permitted_mm, d.exceeded))
        } else {
            Cell::from(" idle").style(theme::DIM)
        },
        Cell::from(if session {
            format::count(d.session_strokes)
        } else {
            String::new()
        }),
        if d.cartridge_id.is_empty() {
            Cell::from("")
        } else {
            Cell::from(format::pct(d.cartridge_wear_pct))
                .style(theme::wear_style(d.cartridge_wear_pct))
        },
        Cell::from(format::text(&d.session_id)),
        Cell::from(format::text(&d.model)),
        Cell::from(format::text(&d.firmware)),
        Cell::from(format::ago(app.now_ms, d.last_seen_ms)),
    ]);
    cells
}

fn class_text(d: &DeviceState) -> String {
    if d.class_mismatch {
        format!("{}?", d.device_class)
    } else {
        d.device_class.clone()
    }
}

fn warning(d: &DeviceState) -> &'static str {
    if d.cartridge_wear_pct >= WEAR_WARN_PCT {
        "· wear"
    } else if d.class_mismatch {
        "· class?"
    } else if skewed(d) {
        "· clock"
    } else {
        "· battery"
    }
}
