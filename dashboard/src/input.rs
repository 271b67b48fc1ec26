//! Keys to messages. What a key means depends only on the [`Mode`].

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::{Mode, Msg, Tab};

/// The message a key press sends, if any.
pub fn map_key(key: KeyEvent, mode: Mode) -> Option<Msg> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c' | 'd')).then_some(Msg::Quit);
    }
    match mode {
        Mode::Search => search_key(key.code),
        Mode::Help => Some(match key.code {
            KeyCode::Char('q') => Msg::Quit,
            _ => Msg::ToggleHelp,
        }),
        Mode::Normal => normal_key(key.code),
    }
}

fn search_key(code: KeyCode) -> Option<Msg> {
    Some(match code {
        KeyCode::Enter => Msg::SearchDone,
        KeyCode::Esc => Msg::SearchCancel,
        KeyCode::Backspace => Msg::SearchBackspace,
        KeyCode::Char(c) => Msg::SearchInput(c),
        _ => return None,
    })
}

fn normal_key(code: KeyCode) -> Option<Msg> {
    Some(match code {
        KeyCode::Char('q') => Msg::Quit,
        KeyCode::Esc | KeyCode::Backspace => Msg::Back,
        KeyCode::Char('?') => Msg::ToggleHelp,
        KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => Msg::NextTab,
        KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') => Msg::PrevTab,
        KeyCode::Char('1') => Msg::SelectTab(Tab::Fleet),
        KeyCode::Char('2') => Msg::SelectTab(Tab::Sessions),
        KeyCode::Char('3') => Msg::SelectTab(Tab::Violations),
        KeyCode::Char('4') => Msg::SelectTab(Tab::Cartridges),
        KeyCode::Char('5') => Msg::SelectTab(Tab::Operators),
        KeyCode::Up | KeyCode::Char('k') => Msg::Up,
        KeyCode::Down | KeyCode::Char('j') => Msg::Down,
        KeyCode::PageUp => Msg::PageUp,
        KeyCode::PageDown => Msg::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Msg::Top,
        KeyCode::End | KeyCode::Char('G') => Msg::Bottom,
        KeyCode::Enter => Msg::Open,
        KeyCode::Char('/') => Msg::StartSearch,
        KeyCode::Char('c') => Msg::CycleClinic,
        KeyCode::Char('d') => Msg::CycleClass,
        KeyCode::Char('o') => Msg::CycleOperator,
        KeyCode::Char('t') => Msg::CycleWindow,
        KeyCode::Char('x') => Msg::ToggleExceeded,
        KeyCode::Char('C') => Msg::ClearFilters,
        KeyCode::Char('a') => Msg::Dismiss,
        KeyCode::Char('r') => Msg::Reload,
        _ => return None,
    })
}

/// Keys and what they do, for the help overlay.
pub const KEYS: &[(&str, &str)] = &[
    ("1-5 Tab ←→", "switch screen"),
    ("↑↓ j k", "select row"),
    ("PgUp PgDn g G", "page / first / last"),
    ("Enter", "open session (operator: its sessions)"),
    ("Esc Backspace", "back (quits at the top)"),
    ("/", "search ids (Enter applies, Esc cancels)"),
    ("c", "next clinic filter"),
    ("d", "next device class filter"),
    ("o", "next operator filter"),
    ("t", "time range: all, 1h, 24h, 7d, 30d"),
    ("x", "only exceeded sessions"),
    ("C", "clear all filters"),
    ("a", "dismiss the violation banner"),
    ("r", "reload lists now"),
    ("?", "this help"),
    ("q Ctrl-C", "quit"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_depend_on_mode() {
        assert_eq!(
            map_key(key(KeyCode::Char('q')), Mode::Normal),
            Some(Msg::Quit)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('q')), Mode::Search),
            Some(Msg::SearchInput('q'))
        );
        assert_eq!(
            map_key(key(KeyCode::Esc), Mode::Search),
            Some(Msg::SearchCancel)
        );
        assert_eq!(
            map_key(key(KeyCode::Esc), Mode::Help),
            Some(Msg::ToggleHelp)
        );
        assert_eq!(map_key(key(KeyCode::Esc), Mode::Normal), Some(Msg::Back));
        assert_eq!(
            map_key(key(KeyCode::Char('3')), Mode::Normal),
            Some(Msg::SelectTab(Tab::Violations))
        );
        assert_eq!(map_key(key(KeyCode::F(5)), Mode::Normal), None);
    }

    #[test]
    fn ctrl_c_quits_in_every_mode() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for mode in [Mode::Normal, Mode::Search, Mode::Help] {
            assert_eq!(map_key(ctrl_c, mode), Some(Msg::Quit));
        }
    }
}
