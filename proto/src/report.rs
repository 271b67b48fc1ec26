//! One-line error reports, as every PenWatch program prints its final error.

use std::error::Error;

/// `message: cause: cause`, each cause once: a cause whose text an outer message already
/// includes (errors that print their source themselves) is not repeated. No backtrace.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading gateway.toml: {source}")]
    struct Repeats {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting")]
    struct Wraps(#[source] Repeats);

    #[test]
    fn each_cause_is_printed_once() {
        let e = Wraps(Repeats {
            source: std::io::Error::other("no such file"),
        });
        assert_eq!(one_line(&e), "starting: reading gateway.toml: no such file");
    }
}
