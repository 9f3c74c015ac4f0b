//! S3 Object Lock on sealed objects, matching the retention policy.
//!
//! With `[store] object_lock = "governance"` (or `"compliance"`), every
//! sealed file and manifest entry is uploaded with
//! - `x-amz-object-lock-mode`: the configured mode;
//! - `x-amz-object-lock-retain-until-date`: midnight (UTC) after the day
//!   the retention policy first lets the object go (`min_days` after the
//!   file's newest row, or after the entry was written) — never earlier
//!   than tomorrow, since S3 refuses a date in the past;
//! - `x-amz-object-lock-legal-hold: ON` for a file whose rows overlap a
//!   legal hold of the policy.
//!
//! object_store has no per-request option for these headers; they go
//! through `ClientOptions::with_default_headers` on a client used only for
//! uploads (see [`super::Location::s3_with_headers`]), with a SHA-256
//! checksum on each upload as S3 requires. The bucket must have Object Lock
//! enabled (it can only be turned on when the bucket is created, or later
//! through AWS support); a bucket default retention is the alternative for
//! stores that ignore these headers.

use chrono::{DateTime, Days, NaiveDate, Utc};
use object_store::{HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::manifest::FileEntry;
use crate::retention::LegalHold;

/// S3 Object Lock retention mode.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete.
    Governance,
    /// Nobody, not even the root account, deletes before the date.
    Compliance,
}

impl LockMode {
    fn header(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// The lock settings of uploads: the mode, and the policy that dates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectLock {
    /// Retention mode.
    pub mode: LockMode,
    /// The retention policy's minimum, in days.
    pub min_days: u64,
    /// The retention policy's legal holds.
    pub legal_holds: Vec<LegalHold>,
}

/// The lock headers of one upload.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LockHeaders {
    /// Retention mode.
    pub mode: LockMode,
    /// Retained until midnight UTC at the start of this day.
    pub retain_until: NaiveDate,
    /// Whether a legal hold is set.
    pub legal_hold: bool,
}

fn day(ns: i64) -> NaiveDate {
    DateTime::from_timestamp_nanos(ns).date_naive()
}

impl ObjectLock {
    /// Headers of a sealed data file.
    pub fn for_file(&self, f: &FileEntry, today: NaiveDate) -> LockHeaders {
        let (first, last) = (day(f.time_min_ns), day(f.time_max_ns));
        LockHeaders {
            mode: self.mode,
            retain_until: self.until(last, today),
            legal_hold: self
                .legal_holds
                .iter()
                .any(|h| first <= h.to && h.from <= last),
        }
    }

    /// Headers of a manifest entry written at `time_ns`.
    pub fn for_entry(&self, time_ns: i64, today: NaiveDate) -> LockHeaders {
        LockHeaders {
            mode: self.mode,
            retain_until: self.until(day(time_ns), today),
            legal_hold: false,
        }
    }

    fn until(&self, newest: NaiveDate, today: NaiveDate) -> NaiveDate {
        let released = newest
            .checked_add_days(Days::new(self.min_days + 1))
            .unwrap_or(NaiveDate::MAX);
        released.max(today.succ_opt().unwrap_or(NaiveDate::MAX))
    }
}

impl LockHeaders {
    /// The request headers.
    pub fn header_map(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let until = self
            .retain_until
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        h.insert(
            "x-amz-object-lock-mode",
            HeaderValue::from_static(self.mode.header()),
        );
        if let Ok(v) = HeaderValue::from_str(&until) {
            h.insert("x-amz-object-lock-retain-until-date", v);
        }
        if self.legal_hold {
            h.insert(
                "x-amz-object-lock-legal-hold",
                HeaderValue::from_static("ON"),
            );
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(first: &str, last: &str) -> FileEntry {
        let ns = |d: &str| {
            d.parse::<NaiveDate>()
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_nanos_opt()
                .unwrap()
        };
        FileEntry {
            path: "audit/x".into(),
            sha256: String::new(),
            rows: 1,
            seq_min: 1,
            seq_max: 1,
            time_min_ns: ns(first),
            time_max_ns: ns(last),
            bytes: 1,
        }
    }

    #[test]
    fn retention_runs_min_days_past_the_newest_row_and_holds_follow_the_policy() {
        let lock = ObjectLock {
            mode: LockMode::Compliance,
            min_days: 30,
            legal_holds: vec![LegalHold {
                from: "2026-03-01".parse().unwrap(),
                to: "2026-03-31".parse().unwrap(),
                reason: "case 1142".into(),
            }],
        };
        let today = "2026-02-01".parse().unwrap();
        let h = lock.for_file(&file("2026-01-30", "2026-02-01"), today);
        assert_eq!(h.retain_until, "2026-03-04".parse::<NaiveDate>().unwrap());
        assert!(!h.legal_hold);
        let map = h.header_map();
        assert_eq!(map["x-amz-object-lock-mode"], "COMPLIANCE");
        assert_eq!(
            map["x-amz-object-lock-retain-until-date"],
            "2026-03-04T00:00:00Z"
        );
        assert!(map.get("x-amz-object-lock-legal-hold").is_none());
        let held = lock.for_file(&file("2026-02-28", "2026-03-02"), today);
        assert!(held.legal_hold);
        assert_eq!(held.header_map()["x-amz-object-lock-legal-hold"], "ON");
        // Old rows sealed late are still locked from now on.
        let late = lock.for_file(&file("2025-01-01", "2025-01-01"), today);
        assert_eq!(
            late.retain_until,
            "2026-02-02".parse::<NaiveDate>().unwrap()
        );
    }
}
