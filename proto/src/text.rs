//! Device-supplied text made safe for its readers: what a spreadsheet would run as a
//! formula, and what a terminal would obey as a control sequence.
//!
//! Validation ([`starts_like_formula`], [`is_printable`]) keeps such text out of the journal;
//! [`escape_controls`] is for printing, because journals written before that validation may
//! still hold it.

use std::borrow::Cow;
use std::fmt::Write;

/// First characters that make a spreadsheet read a cell as a formula (the OWASP CSV
/// injection list): `=`, `+`, `-`, `@`, tab and carriage return.
pub const FORMULA_STARTS: &[char] = &['=', '+', '-', '@', '\t', '\r'];

/// Whether a spreadsheet would read `s` as a formula: it begins with one of
/// [`FORMULA_STARTS`].
pub fn starts_like_formula(s: &str) -> bool {
    s.starts_with(FORMULA_STARTS)
}

/// Whether `c` would steer a terminal or the reading order rather than show as itself:
/// C0 and C1 control characters, DEL, and the Unicode bidirectional formatting characters.
pub fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `s` is printable text: no character for which [`is_control`] holds.
pub fn is_printable(s: &str) -> bool {
    !s.chars().any(is_control)
}

/// `s` with every character for which [`is_control`] holds written as a Rust escape
/// (ESC becomes `\u{1b}`), so a terminal shows it instead of obeying it; borrowed when
/// there is nothing to escape.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if is_printable(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_are_shown_not_obeyed() {
        assert_eq!(escape_controls("\u{1b}[2Jpen"), "\\u{1b}[2Jpen");
        assert_eq!(
            escape_controls("\u{1b}]0;owned\u{7}"),
            "\\u{1b}]0;owned\\u{7}"
        );
        assert_eq!(escape_controls("a\u{9b}31mb\u{7f}"), "a\\u{9b}31mb\\u{7f}");
        assert_eq!(escape_controls("id\u{202e}txt"), "id\\u{202e}txt");
        assert_eq!(
            escape_controls("line\nbreak\ttab"),
            "line\\u{a}break\\u{9}tab"
        );
        assert!(matches!(
            escape_controls("DermaPro S 2.1 – µ"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn printable_text_and_formula_starts() {
        assert!(is_printable("DermaPro S 2.1.0-rc1 (ü)"));
        assert!(!is_printable("fw\u{1b}[31m"));
        assert!(!is_printable("fw\u{0}"));
        for s in ["=1-1", "+1", "-cmd|calc!A0", "@SUM(1)", "\tx", "\rx"] {
            assert!(starts_like_formula(s), "{s:?}");
        }
        for s in ["pen-1", "", "1=1", "c01"] {
            assert!(!starts_like_formula(s), "{s:?}");
        }
    }
}
