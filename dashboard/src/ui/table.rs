//! Tables whose columns drop, least important first, when the terminal is narrow.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};

use crate::ui::theme;

/// A column: its title, width, and rank (0 never dropped; higher ranks drop first).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Header text.
    pub title: &'static str,
    /// Width in cells.
    pub width: u16,
    /// Width it grows to when the terminal has room to spare (ids).
    pub max: u16,
    /// Drop rank.
    pub rank: u8,
}

/// Shorthand for a [`Column`].
pub const fn col(title: &'static str, width: u16, rank: u8) -> Column {
    Column {
        title,
        width,
        max: width,
        rank,
    }
}

/// Widest an id column gets to show its longest id whole.
pub const MAX_ID_WIDTH: u16 = 40;

impl Column {
    /// The same column, growing up to `max` cells on wide terminals.
    pub const fn grow(self, max: u16) -> Self {
        Column { max, ..self }
    }

    /// An id column: wide enough for the longest of `ids` (up to [`MAX_ID_WIDTH`]), so the
    /// column is dropped on a narrow terminal rather than cutting ids.
    pub fn ids<'a>(self, ids: impl IntoIterator<Item = &'a str>) -> Self {
        let widest = ids
            .into_iter()
            .map(|id| penwatch_proto::text::escape_controls(id).chars().count())
            .max()
            .unwrap_or(0)
            .min(usize::from(MAX_ID_WIDTH)) as u16;
        let width = self.width.max(widest);
        Column {
            width,
            max: self.max.max(width),
            ..self
        }
    }
}

/// The columns that fit in `width` (one cell between columns), in their order, with their
/// widths: spare room goes to growing columns, most important first.
pub fn layout(columns: &[Column], width: u16) -> Vec<(usize, u16)> {
    let kept = fit(columns, width);
    let used: u16 = kept
        .iter()
        .map(|&i| columns[i].width)
        .sum::<u16>()
        .saturating_add(kept.len().saturating_sub(1) as u16);
    let mut spare = width.saturating_sub(used);
    let mut widths: Vec<(usize, u16)> = kept.iter().map(|&i| (i, columns[i].width)).collect();
    let mut by_rank: Vec<usize> = (0..widths.len()).collect();
    by_rank.sort_by_key(|&k| (columns[widths[k].0].rank, k));
    for k in by_rank {
        let extra = (columns[widths[k].0].max.saturating_sub(widths[k].1)).min(spare);
        widths[k].1 += extra;
        spare -= extra;
    }
    widths
}

/// Indices of the columns that fit in `width` (one cell between columns), in their order.
pub fn fit(columns: &[Column], width: u16) -> Vec<usize> {
    let mut by_rank: Vec<usize> = (0..columns.len()).collect();
    by_rank.sort_by_key(|&i| (columns[i].rank, i));
    let mut used: u16 = 0;
    let mut kept = Vec::new();
    for i in by_rank {
        let extra = columns[i].width + u16::from(!kept.is_empty());
        if used + extra <= width || columns[i].rank == 0 {
            used = used.saturating_add(extra);
            kept.push(i);
        }
    }
    kept.sort_unstable();
    kept
}

/// A table with a titled top rule; `rows` hold a cell for every column.
pub fn render(
    frame: &mut Frame,
    area: Rect,
    title: Line<'_>,
    columns: &[Column],
    rows: Vec<Vec<Cell<'_>>>,
    selected: Option<usize>,
) {
    let sized = layout(columns, area.width);
    let kept: Vec<usize> = sized.iter().map(|(i, _)| *i).collect();
    let last = kept.last().copied();
    let widths: Vec<Constraint> = sized
        .iter()
        .map(|&(i, w)| {
            if Some(i) == last {
                Constraint::Min(w)
            } else {
                Constraint::Length(w)
            }
        })
        .collect();
    let header = Row::new(kept.iter().map(|&i| Cell::from(columns[i].title))).style(theme::HEADER);
    let rows = rows.into_iter().map(|cells| {
        Row::new(
            cells
                .into_iter()
                .enumerate()
                .filter(|(i, _)| kept.contains(i))
                .map(|(_, c)| c),
        )
    });
    let table = Table::new(rows, widths)
        .header(header)
        .block(
            Block::new()
                .borders(Borders::TOP)
                .title(title.style(theme::TITLE)),
        )
        .row_highlight_style(theme::SELECTED);
    let mut state = TableState::new().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_tables_drop_high_ranks_first() {
        let cols = [
            col("a", 10, 0),
            col("b", 10, 2),
            col("c", 10, 1),
            col("d", 10, 0),
        ];
        assert_eq!(fit(&cols, 100), vec![0, 1, 2, 3]);
        assert_eq!(fit(&cols, 32), vec![0, 2, 3]);
        assert_eq!(fit(&cols, 21), vec![0, 3]);
        assert_eq!(fit(&cols, 5), vec![0, 3], "rank 0 always stays");
    }

    #[test]
    fn id_columns_fit_their_longest_id() {
        let ids = ["pen-1", "cartridge-0042-long"];
        let c = col("Cartridge", 10, 3).ids(ids);
        assert_eq!((c.width, c.max), (19, 19));
        let c = col("Device", 12, 0).grow(20).ids(["p"]);
        assert_eq!((c.width, c.max), (12, 20));
        let long = "x".repeat(200);
        assert_eq!(col("Id", 4, 0).ids([long.as_str()]).width, MAX_ID_WIDTH);
    }

    #[test]
    fn spare_room_goes_to_growing_columns() {
        let cols = [col("id", 10, 1).grow(20), col("a", 10, 0), col("x", 10, 2)];
        assert_eq!(layout(&cols, 21), vec![(0, 10), (1, 10)]);
        assert_eq!(layout(&cols, 40), vec![(0, 18), (1, 10), (2, 10)]);
        assert_eq!(layout(&cols, 90), vec![(0, 20), (1, 10), (2, 10)]);
    }
}
