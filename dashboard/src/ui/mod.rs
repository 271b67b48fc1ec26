//! Drawing: one module per screen, plus the header, banners, footer and help overlay.
//! Drawing reads the [`App`] and never changes it.

mod cartridges;
mod fleet;
mod header;
mod help;
mod operators;
mod session_detail;
mod sessions;
pub mod table;
pub mod theme;
mod violations;

#[cfg(test)]
mod tests;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};

use crate::app::{App, Mode, Tab};

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let banners = header::banners(app);
    let [top, banner_area, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(banners.len() as u16),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    header::draw(frame, top, app);
    header::draw_banners(frame, banner_area, banners);
    match (&app.detail, app.tab) {
        (Some(detail), _) => session_detail::draw(frame, body, app, detail),
        (None, Tab::Fleet) => fleet::draw(frame, body, app),
        (None, Tab::Sessions) => sessions::draw(frame, body, app),
        (None, Tab::Violations) => violations::draw(frame, body, app),
        (None, Tab::Cartridges) => cartridges::draw(frame, body, app),
        (None, Tab::Operators) => operators::draw(frame, body, app),
    }
    header::draw_footer(frame, footer, app);
    if app.mode == Mode::Help {
        help::draw(frame, frame.area());
    }
}

/// The selected row, kept within `len` rows.
fn selected(app: &App, len: usize) -> Option<usize> {
    (len > 0).then(|| app.selection().min(len - 1))
}
