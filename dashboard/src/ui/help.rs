//! The `?` overlay: every key and what it does.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::input::KEYS;
use crate::ui::theme;

/// Draws the key help centred over `area`.
pub fn draw(frame: &mut Frame, area: Rect) {
    let width = area.width.min(62);
    let height = area.height.min(KEYS.len() as u16 + 2);
    let [_, column, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, popup, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(column);
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!("{keys:>14}  "), theme::TITLE),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered().title(Line::from(" Keys (any key closes) ").style(theme::TITLE)),
        ),
        popup,
    );
}
