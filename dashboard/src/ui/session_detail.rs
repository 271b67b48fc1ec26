//! One session: depth over time with the permitted depth drawn as a line, its pen, operator,
//! zones, strokes and cartridge, and the verdict with its evidence.

use penwatch_proto::v1::Session;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph, Wrap};

use crate::app::{App, Detail};
use crate::format;
use crate::ui::theme;

/// Width of the side panel on wide terminals.
const PANEL: u16 = 44;

/// Draws the session detail.
pub fn draw(frame: &mut Frame, area: Rect, app: &App, detail: &Detail) {
    let (info, verdict) = panel(app, detail);
    let block = |title: &str| {
        Block::new()
            .borders(Borders::TOP)
            .title(Line::from(title.to_owned()).style(theme::TITLE))
    };
    let title = format!(
        " Session {} on {} · Esc back ",
        format::text(&detail.session_id),
        format::text(&detail.device_id)
    );
    if area.width >= 100 {
        let [chart, side] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(PANEL)])
            .spacing(1)
            .areas(area);
        draw_chart(frame, chart, detail, block(&title));
        let lines: Vec<Line> = info
            .into_iter()
            .chain([Line::raw("")])
            .chain(verdict)
            .collect();
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(block(" Record ")),
            side,
        );
    } else {
        let height = (info.len().max(verdict.len()) as u16 + 2).min(area.height / 2);
        let [top, chart] =
            Layout::vertical([Constraint::Length(height), Constraint::Fill(1)]).areas(area);
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .spacing(1)
                .areas(top);
        frame.render_widget(
            Paragraph::new(info)
                .wrap(Wrap { trim: false })
                .block(block(&title)),
            left,
        );
        frame.render_widget(Paragraph::new(verdict).block(block(" Verdict ")), right);
        draw_chart(frame, chart, detail, Block::new());
    }
}

fn panel(app: &App, detail: &Detail) -> (Vec<Line<'static>>, Vec<Line<'static>>) {
    let Some(s) = &detail.session else {
        let text = match &detail.error {
            Some(e) => Line::styled(format!("cannot load: {}", format::text(e)), theme::DANGER),
            None => Line::styled("loading…", theme::DIM),
        };
        return (vec![text], Vec::new());
    };
    (info_lines(app, s), verdict_lines(app, s))
}

fn info_lines(app: &App, s: &Session) -> Vec<Line<'static>> {
    let state = if s.state == "open" {
        Span::styled("live", theme::OK)
    } else if s.close_reason.is_empty() {
        Span::styled("closed", theme::DIM)
    } else {
        Span::styled(format!("closed ({})", s.close_reason), theme::DIM)
    };
    let mut lines = vec![
        Line::from(vec![
            Span::raw(format!("{} · ", format::text(&s.session_id))),
            state,
        ]),
        Line::raw(format!(
            "pen {} · clinic {} · {}",
            format::text(&s.device_id),
            format::text(&s.clinic_id),
            format::text(&s.device_class)
        )),
    ];
    if app.shows_operators() {
        let unknown = if s.unknown_operator {
            " (unknown to policy)"
        } else {
            ""
        };
        lines.push(Line::raw(format!(
            "operator {}{unknown}",
            format::text(&s.operator_id)
        )));
    }
    lines.extend([
        Line::raw(format!(
            "{} → {} {}",
            app.zone.date_time(s.started_ms),
            app.zone.clock(s.last_ms),
            app.zone.abbreviation(s.last_ms)
        )),
        Line::raw(format!(
            "{} strokes · cartridge {} {}",
            format::count(s.strokes),
            format::text(&s.cartridge_id),
            format::text(&s.cartridge_model)
        )),
        Line::raw(format!(
            "zones {}",
            if s.zones.is_empty() {
                "-".to_owned()
            } else {
                s.zones.join(", ")
            }
        )),
    ]);
    lines
}

fn verdict_lines(app: &App, s: &Session) -> Vec<Line<'static>> {
    let mut lines = record_verdict_lines(app, s);
    if s.amendments > 0 {
        let (text, style) = if s.exceeded_by_amendment {
            ("late messages EXCEEDED", theme::DANGER)
        } else {
            ("late messages", theme::WARN)
        };
        lines.push(Line::styled(
            format!(
                "{} amended ×{}: {text} (penwatch session shows them)",
                theme::AMENDED,
                s.amendments
            ),
            style,
        ));
    }
    lines
}

/// The verdict of the session's record (as it closed, or open now).
fn record_verdict_lines(app: &App, s: &Session) -> Vec<Line<'static>> {
    let Some(e) = s.evidence.as_ref().filter(|_| s.exceeded) else {
        let verdict = if s.exceeded {
            Line::styled(
                format!("{} permitted depth", theme::EXCEEDED),
                theme::DANGER,
            )
        } else {
            Line::styled("✓ within permitted depth", theme::OK)
        };
        return vec![
            verdict,
            Line::raw(format!(
                "peak {} mm · limit {} mm ({})",
                format::mm(s.max_depth_mm),
                format::mm(s.permitted_mm),
                s.binding_rule
            )),
        ];
    };
    let mut lines = vec![
        Line::styled(
            format!("{} permitted depth", theme::EXCEEDED),
            theme::DANGER,
        ),
        Line::styled(
            format!("worst excursion: +{} mm", format::mm(e.excess_mm)),
            theme::DANGER,
        ),
        Line::from(vec![
            Span::styled(
                format!("peak {} mm", format::mm(e.peak_depth_mm)),
                theme::DANGER,
            ),
            Span::raw(format!(
                " > limit {} mm ({})",
                format::mm(e.limit_mm),
                e.binding_rule
            )),
        ]),
        Line::raw(format!(
            "above {} → {} {}",
            app.zone.clock(e.first_above_ms),
            app.zone.clock(e.last_above_ms),
            app.zone.abbreviation(e.last_above_ms)
        )),
        Line::raw(format!(
            "{} strokes, {} samples above",
            format::count(e.strokes_above),
            format::count(e.samples_above)
        )),
        Line::raw(format!("policy {}", e.policy_version)),
    ];
    let others = e.other_excursions.len() as u64 + e.unlisted_excursions;
    if others > 0 {
        lines.push(Line::styled(
            format!("other excursions: {others}"),
            theme::DIM,
        ));
    }
    for x in &e.other_excursions {
        lines.push(Line::raw(format!(
            "{} {} > {} mm ({}) +{}",
            app.zone.clock(x.first_above_ms),
            format::mm(x.peak_depth_mm),
            format::mm(x.limit_mm),
            x.binding_rule,
            format::mm(x.excess_mm),
        )));
    }
    if !s.samples_digest.is_empty() {
        let short: String = s.samples_digest.chars().take(16).collect();
        lines.push(Line::styled(format!("digest {short}…"), theme::DIM));
    }
    lines
}

fn draw_chart(frame: &mut Frame, area: Rect, detail: &Detail, block: Block<'_>) {
    let Some(first) = detail.points.front() else {
        frame.render_widget(
            Paragraph::new(Line::styled("no samples yet", theme::DIM)).block(block),
            area,
        );
        return;
    };
    let t0 = first.timestamp_ms;
    let secs = |t: i64| (t - t0) as f64 / 1000.0;
    let depth: Vec<(f64, f64)> = detail
        .points
        .iter()
        .map(|p| (secs(p.timestamp_ms), p.depth_mm))
        .collect();
    let mut limit: Vec<(f64, f64)> = Vec::with_capacity(depth.len() * 2);
    for (i, p) in detail.points.iter().enumerate() {
        if i > 0 {
            limit.push((secs(p.timestamp_ms), detail.points[i - 1].permitted_mm));
        }
        limit.push((secs(p.timestamp_ms), p.permitted_mm));
    }
    let x_max = depth.last().map_or(1.0, |p| p.0).max(1.0);
    let y_top = detail
        .points
        .iter()
        .map(|p| p.depth_mm.max(p.permitted_mm))
        .fold(0.5, f64::max)
        * 1.15;
    let permitted = detail.points.back().map_or(0.0, |p| p.permitted_mm);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [legend_area, chart_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    let legend = Line::from(vec![
        Span::styled("⠤⠤ depth mm (set protrusion)", Style::new().fg(Color::Cyan)),
        Span::raw("   "),
        Span::styled(
            format!("••• permitted {} mm", format::mm(permitted)),
            Style::new().fg(Color::Red),
        ),
    ]);
    frame.render_widget(Paragraph::new(legend).right_aligned(), legend_area);
    let chart = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Red))
            .data(&limit),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Cyan))
            .data(&depth),
    ])
    .legend_position(None)
    .x_axis(Axis::default().bounds([0.0, x_max]).labels([
        elapsed(0.0),
        elapsed(x_max / 2.0),
        elapsed(x_max),
    ]))
    .y_axis(Axis::default().bounds([0.0, y_top]).labels([
        "0".to_owned(),
        format::mm(y_top / 2.0),
        format::mm(y_top),
    ]));
    frame.render_widget(chart, chart_area);
}

/// Time since the session's first point: `2.5s`, `45s`, `12m30s`, `1h05m`.
fn elapsed(secs: f64) -> String {
    let s = secs.round() as i64;
    match s {
        ..10 => format!("{secs:.1}s"),
        10..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}
