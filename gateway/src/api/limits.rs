//! Bounds on what a request may carry, and how request values are quoted back.
//!
//! Every id in a request is at most [`MAX_ID_BYTES`] bytes and every filter list at most
//! [`MAX_FILTER_IDS`] entries, or the call is `INVALID_ARGUMENT`; an error message quotes at
//! most the first [`QUOTE_CHARS`] characters of a request value.

use tonic::Status;

/// Most entries in one filter list (clinics, devices, operators, classes).
pub const MAX_FILTER_IDS: usize = 1000;
/// Longest id in a request, bytes (stored ids are at most 64).
pub const MAX_ID_BYTES: usize = 128;
/// Longest page token, bytes.
pub const MAX_PAGE_TOKEN_BYTES: usize = 1024;
/// Most characters of a request value quoted in an error message.
pub const QUOTE_CHARS: usize = 64;

/// `value` quoted for an error message: its first [`QUOTE_CHARS`] characters, escaped, with
/// `…` and its length in bytes when it was longer.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_CHARS) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &value[..end], value.len()),
    }
}

/// `INVALID_ARGUMENT` unless `id` (the request field `field`) is at most [`MAX_ID_BYTES`].
pub fn check_id(field: &str, id: &str) -> Result<(), Status> {
    if id.len() > MAX_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "{field} {} is longer than {MAX_ID_BYTES} bytes",
            quote(id)
        )));
    }
    Ok(())
}

/// `INVALID_ARGUMENT` unless the list has at most [`MAX_FILTER_IDS`] entries, each at most
/// [`MAX_ID_BYTES`].
pub fn check_ids(field: &str, ids: &[String]) -> Result<(), Status> {
    if ids.len() > MAX_FILTER_IDS {
        return Err(Status::invalid_argument(format!(
            "{field} has {} entries; at most {MAX_FILTER_IDS} are accepted",
            ids.len()
        )));
    }
    ids.iter().try_for_each(|id| check_id(field, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_whatever_the_value() {
        assert_eq!(quote("c01"), "\"c01\"");
        let long = "é".repeat(20_000);
        let q = quote(&long);
        assert!(
            q.starts_with(&format!("\"{}", "é".repeat(QUOTE_CHARS))),
            "{q}"
        );
        assert!(q.ends_with("\"… (40000 bytes)"), "{q}");
        assert!(q.chars().count() < QUOTE_CHARS + 32);
        assert!(quote("a\u{1b}[2J").contains("\\u{1b}"));
    }

    #[test]
    fn oversized_ids_and_lists_are_invalid_arguments() {
        let code = |r: Result<(), Status>| r.err().map(|s| s.code());
        assert_eq!(code(check_id("device_id", &"x".repeat(128))), None);
        let long = check_id("device_id", &"x".repeat(129)).expect_err("too long");
        assert_eq!(long.code(), tonic::Code::InvalidArgument);
        assert!(long.message().len() < 200, "{}", long.message());
        let many: Vec<String> = (0..40_000).map(|i| format!("pen-{i}")).collect();
        let err = check_ids("filter.device_ids", &many).expect_err("too many");
        assert_eq!(
            err.message(),
            "filter.device_ids has 40000 entries; at most 1000 are accepted"
        );
        assert_eq!(code(check_ids("filter.device_ids", &many[..1000])), None);
    }
}
