//! What a request may ask, checked before anything reaches SQL: an event
//! id must be a UUID, a time RFC 3339 or a date, a window non-empty, a page
//! a number. A refusal is a message for the person who typed it.

use chrono::{DateTime, Duration, Utc};

use audit_query::activity::Range;
pub use audit_query::End;

/// A parameter that cannot be used, and why, in words for the viewer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// An event id: a UUID (any case, surrounding spaces trimmed), returned as
/// typed so that the lookup matches the stored text.
pub fn event_id(raw: &str) -> Result<String, Refusal> {
    let id = raw.trim();
    uuid::Uuid::parse_str(id).map_err(|_| {
        Refusal(format!(
            "{id:?} is not an event id: event ids are UUIDs, like 019a0000-0000-7000-8000-000000000001"
        ))
    })?;
    Ok(id.to_owned())
}

/// A time: RFC 3339, a date-time read as UTC, or a date (the whole day),
/// as [`audit_query::parse_time`] reads it for the command line.
pub fn time(name: &'static str, raw: &str, end: End) -> Result<DateTime<Utc>, Refusal> {
    audit_query::parse_time(name, raw, end).map_err(|e| Refusal(e.to_string()))
}

/// A window from optional `from` / `to`: missing ends default to the
/// `default` span before now, and to now.
pub fn window(from: Option<&str>, to: Option<&str>, default: Duration) -> Result<Range, Refusal> {
    let to = match given(to) {
        Some(s) => time("to", s, End::To)?,
        None => Utc::now(),
    };
    let from = match given(from) {
        Some(s) => time("from", s, End::From)?,
        None => to - default,
    };
    if from >= to {
        return Err(Refusal(format!(
            "from {} is not before to {}",
            from.to_rfc3339(),
            to.to_rfc3339()
        )));
    }
    Ok(Range { from, to })
}

fn given(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// An optional filter value: empty means none; control characters are
/// refused (nothing stored has them, and they only hide in a page).
pub fn filter(name: &str, raw: Option<&str>) -> Result<Option<String>, Refusal> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if s.chars().any(char::is_control) || s.len() > 512 => Err(Refusal(format!(
            "{name}: at most 512 characters, no control characters"
        ))),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_must_be_uuids() {
        assert_eq!(
            event_id(" 019a0000-0000-7000-8000-000000000001 ").unwrap(),
            "019a0000-0000-7000-8000-000000000001"
        );
        for bad in ["", "x' OR '1'='1", "019a0000", "not-a-uuid"] {
            let e = event_id(bad).unwrap_err();
            assert!(e.0.contains("is not an event id"), "{e}");
        }
    }

    #[test]
    fn times_dates_and_windows() {
        let d = time("from", "2026-12-04", End::From).unwrap();
        assert_eq!(d.to_rfc3339(), "2026-12-04T00:00:00+00:00");
        let d = time("to", "2026-12-04", End::To).unwrap();
        assert_eq!(d.to_rfc3339(), "2026-12-05T00:00:00+00:00");
        let t = time("to", "2026-12-04T10:30", End::To).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-04T10:30:00+00:00");
        let t = time("to", "2026-12-04T10:30:00+01:00", End::To).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-04T09:30:00+00:00");
        assert!(time("from", "yesterday", End::From).is_err());
        assert!(window(Some("2026-12-05"), Some("2026-12-04"), Duration::days(1)).is_err());
        let w = window(None, Some("2026-12-04"), Duration::days(1)).unwrap();
        assert_eq!(w.from.to_rfc3339(), "2026-12-04T00:00:00+00:00");
        assert!(filter("target", Some("a\u{7}b")).is_err());
        assert_eq!(filter("target", Some("  ")).unwrap(), None);
    }
}
