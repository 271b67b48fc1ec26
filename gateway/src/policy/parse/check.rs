//! Checks shared by every section: turning byte spans into lines, and validating depth
//! limits and ids where they are written.

use std::ops::Range;

use penwatch_proto::topic::is_valid_id;
use toml::Spanned;

use crate::policy::{Fault, PolicyError};

/// Turns byte spans of the text into located errors.
pub(super) struct Checker<'a> {
    /// The policy text.
    pub(super) text: &'a str,
    /// The file name, or `"policy"` for text given directly.
    pub(super) origin: &'a str,
}

impl Checker<'_> {
    /// The 1-based line where `span` starts.
    pub(super) fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The fault, located at the line of `span`.
    pub(super) fn err(&self, span: &Range<usize>, fault: Fault) -> PolicyError {
        PolicyError::Invalid {
            origin: self.origin.to_owned(),
            line: self.line(span),
            fault,
        }
    }

    /// A TOML or format error, located at its line and column where the parser knows them.
    pub(super) fn syntax(&self, e: &toml::de::Error) -> PolicyError {
        let (line, column) = match e.span() {
            Some(span) => {
                let start = span.start.min(self.text.len());
                let bytes = &self.text.as_bytes()[..start];
                let line_start = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let column = self
                    .text
                    .get(line_start..start)
                    .map_or(start - line_start, |s| s.chars().count());
                (Some(self.line(&span)), Some(column + 1))
            }
            None => (None, None),
        };
        PolicyError::Syntax {
            origin: self.origin.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    }

    /// Checks a limit written in the file: a number above 0 and at most the mechanical maximum.
    pub(super) fn limit(
        &self,
        key: &str,
        value: &Spanned<f64>,
        mechanical_max_mm: f64,
    ) -> Result<f64, PolicyError> {
        let mm = *value.get_ref();
        let key = key.to_owned();
        if mm.is_nan() {
            return Err(self.err(&value.span(), Fault::NotANumber { key }));
        }
        if mm <= 0.0 {
            return Err(self.err(&value.span(), Fault::NotAboveZero { key, mm }));
        }
        if mm > mechanical_max_mm {
            return Err(self.err(
                &value.span(),
                Fault::AboveMechanicalMax {
                    key,
                    mm,
                    mechanical_max_mm,
                },
            ));
        }
        Ok(mm)
    }

    /// Checks an id written in the file (see [`is_valid_id`]).
    pub(super) fn id(&self, key: &str, value: &Spanned<String>) -> Result<String, PolicyError> {
        let id = value.get_ref();
        if is_valid_id(id) {
            Ok(id.clone())
        } else {
            Err(self.err(
                &value.span(),
                Fault::InvalidId {
                    key: key.to_owned(),
                    id: id.clone(),
                },
            ))
        }
    }
}
