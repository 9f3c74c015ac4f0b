//! Who looked, for the console: each request's access row, made by
//! [`audit_query::access`] (the same writer and dataset as the CLI's
//! questions) before the answer is sent. The question is the view
//! (`console.find`, `console.timeline.csv`, …), its subject the event id,
//! agent or owner asked about, and the HTTP status is kept beside the
//! parameters and the rows returned.

use std::collections::BTreeMap;

use audit_query::access::{Asked, CONSOLE};
use chrono::{DateTime, Utc};

/// Rows an answer returned, set by each view on its response.
#[derive(Clone, Copy, Debug)]
pub struct Rows(pub u64);

/// The access row of one console request.
pub fn asked(
    viewer: &str,
    path: &str,
    query: &str,
    at: DateTime<Utc>,
    status: u16,
    rows: Option<u64>,
) -> Asked {
    Asked {
        viewer: viewer.to_owned(),
        service: CONSOLE,
        question: format!("console.{}", path.trim_start_matches('/').replace('/', ".")),
        subject: subject(query),
        parameters: query.to_owned(),
        asked: at,
        ok: status < 400,
        rows,
        extra: BTreeMap::from([("access.status".to_owned(), status.to_string())]),
    }
}

/// What a question was about: its event id, agent or owner, as `key=value`.
fn subject(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    ["event_id", "agent", "owner"].iter().find_map(|k| {
        pairs
            .iter()
            .find(|(name, v)| name == k && !v.trim().is_empty())
            .map(|(name, v)| format!("{name}={}", v.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_the_event_id_or_the_agent_or_the_owner() {
        assert_eq!(
            subject("event_id=019a&x=1").as_deref(),
            Some("event_id=019a")
        );
        assert_eq!(
            subject("from=a&owner=usr%20x&agent=").as_deref(),
            Some("owner=usr x")
        );
        assert_eq!(subject("from=2026-12-04"), None);
    }

    #[test]
    fn a_request_is_a_console_question_with_its_status() {
        let a = asked("ann", "/timeline.csv", "agent=a1", Utc::now(), 404, Some(0));
        assert_eq!(a.question, "console.timeline.csv");
        assert_eq!(a.subject.as_deref(), Some("agent=a1"));
        assert!(!a.ok);
        assert_eq!(a.extra["access.status"], "404");
    }
}
