//! How untrusted text and times are written in answers, log lines and audit rows: control
//! characters escaped, length bounded, saying what was cut; timestamps as RFC 3339.

/// The most characters kept of an actor or target.
pub const MAX_FIELD: usize = 256;
/// The most characters kept of a detail.
pub const MAX_DETAIL: usize = 2048;

/// `text` fit for a log line or an audit row: control characters escaped, at most `max`
/// characters, with what was cut said at the end.
pub fn bounded(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 32));
    for (kept, (i, c)) in text.char_indices().enumerate() {
        if kept >= max {
            out.push_str(&format!("…(+{} bytes)", text.len() - i));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` cut to at most `max` characters, saying how much was cut (no escaping: for
/// answers, whose JSON encoding escapes control characters itself).
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((i, _)) => {
            std::borrow::Cow::Owned(format!("{}…(+{} bytes)", &text[..i], text.len() - i))
        }
    }
}

/// A Unix time as RFC 3339 (`2027-03-03T19:23:36Z`); the number itself if out of range.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
