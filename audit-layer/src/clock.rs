//! Wall-clock time as OTLP carries it: nanoseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ns since the epoch; a clock before 1970 reads as 0, and one past
/// year 2262 saturates rather than wraps.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
