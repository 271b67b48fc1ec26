//! Cartridges: wear against rated life, reuse events, and aggregates by model and firmware.

use penwatch_proto::v1::{Cartridge, CartridgeAggregate, ReuseEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Cell;

use crate::app::App;
use crate::format;
use crate::ui::table::col;
use crate::ui::{selected, table, theme};

/// Draws the Cartridges screen.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.cartridge_rows();
    let models = &app.cartridges.by_model_firmware;
    let reuses = &app.cartridges.reuse_events;
    let lower = (models.len().max(reuses.len()) as u16 + 2).clamp(4, area.height / 2);
    let [top, bottom] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(lower)]).areas(area);
    let [left, right] = if bottom.width >= 120 {
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom)
    } else {
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom)
    };

    let reused = rows.iter().filter(|c| c.reused).count();
    let worn = rows.iter().filter(|c| c.wear_pct >= 100.0).count();
    let columns = [
        col("Reuse", 8, 0),
        col("Cartridge", 12, 0)
            .grow(20)
            .ids(rows.iter().map(|c| c.cartridge_id.as_str())),
        col("Model", 10, 1),
        col("Wear", 15, 0),
        col("Strokes/rated", 15, 2),
        col("Sess", 4, 3),
        col("Clinic", 6, 4),
        col("Last pen", 12, 4)
            .grow(20)
            .ids(rows.iter().map(|c| c.last_device_id.as_str())),
        col("Firmware", 8, 5),
    ];
    let title = Line::from(vec![
        Span::raw(format!(" Cartridges: {}, ", rows.len())),
        Span::styled(
            format!("{reused} reused"),
            if reused > 0 {
                theme::DANGER
            } else {
                Style::new()
            },
        ),
        Span::raw(format!(", {worn} worn ")),
    ]);
    let cells = rows.iter().map(|c| cartridge_row(c)).collect();
    table::render(
        frame,
        top,
        title,
        &columns,
        cells,
        selected(app, rows.len()),
    );

    let model_columns = [
        col("Model", 10, 0),
        col("Firmware", 8, 2),
        col("Carts", 5, 0),
        col("Mean wear", 9, 0),
        col("Warn", 4, 1),
        col("Worn", 4, 1),
        col("Reused", 6, 0),
    ];
    let model_cells = models.iter().map(aggregate_row).collect();
    table::render(
        frame,
        left,
        Line::from(" By model "),
        &model_columns,
        model_cells,
        None,
    );

    let reuse_columns = [
        col("When", 11, 0),
        col("Cartridge", 12, 0)
            .grow(20)
            .ids(reuses.iter().map(|r| r.cartridge_id.as_str())),
        col("Pen", 12, 1)
            .grow(20)
            .ids(reuses.iter().map(|r| r.device_id.as_str())),
        col("Session", 12, 2)
            .grow(20)
            .ids(reuses.iter().map(|r| r.session_id.as_str())),
        col("Detail", 20, 3),
    ];
    let reuse_cells = reuses.iter().map(|r| reuse_row(app, r)).collect();
    table::render(
        frame,
        right,
        Line::from(format!(" Reuse events: {} ", reuses.len())),
        &reuse_columns,
        reuse_cells,
        None,
    );
}

fn cartridge_row(c: &Cartridge) -> Vec<Cell<'static>> {
    let style = theme::wear_style(c.wear_pct);
    vec![
        if c.reused {
            Cell::from(theme::REUSED).style(theme::DANGER)
        } else {
            Cell::from("")
        },
        Cell::from(format::text(&c.cartridge_id)),
        Cell::from(format::text(&c.model)),
        Cell::from(Line::from(vec![
            Span::styled(theme::bar(c.wear_pct, 100.0, 5), style),
            Span::styled(format!(" {}", theme::wear_text(c.wear_pct)), style),
        ])),
        Cell::from(format!(
            "{}/{}",
            format::count(c.strokes),
            format::count(c.rated_strokes)
        )),
        Cell::from(c.sessions.to_string()).style(if c.sessions > 1 {
            theme::DANGER
        } else {
            Style::new()
        }),
        Cell::from(format::text(&c.clinic_id)),
        Cell::from(format::text(&c.last_device_id)),
        Cell::from(format::text(&c.firmware)),
    ]
}

fn aggregate_row(a: &CartridgeAggregate) -> Vec<Cell<'static>> {
    vec![
        Cell::from(format::text(&a.model)),
        Cell::from(format::text(&a.firmware)),
        Cell::from(a.cartridges.to_string()),
        Cell::from(format::pct(a.mean_wear_pct)).style(theme::wear_style(a.mean_wear_pct)),
        Cell::from(a.warn.to_string()),
        Cell::from(a.worn.to_string()),
        Cell::from(a.reused.to_string()).style(if a.reused > 0 {
            theme::DANGER
        } else {
            Style::new()
        }),
    ]
}

fn reuse_row(app: &App, r: &ReuseEvent) -> Vec<Cell<'static>> {
    vec![
        Cell::from(app.zone.date_time(r.timestamp_ms)),
        Cell::from(format::text(&r.cartridge_id)).style(theme::DANGER),
        Cell::from(format::text(&r.device_id)),
        Cell::from(format::text(&r.session_id)),
        Cell::from(format::text(&r.detail)),
    ]
}
