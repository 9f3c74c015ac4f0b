//! Bounds on one record's size, shape and time, part of the [`Rules`]
//! (`[rules.limits]` in the collector's config) so that the layer and the
//! collector refuse the same records for the same reasons.
//!
//! | limit | default | applies to |
//! |---|---|---|
//! | `max_attributes` | 128 | attributes of one log record (the layer: a span's non-schema fields) |
//! | `max_key_bytes` | 256 | every attribute key |
//! | `max_value_bytes` | 8192 | every string value, schema fields included, after arrays are flattened |
//! | `max_depth` | 8 | nesting of OTLP array / kvlist values (a scalar is depth 0) |
//! | `min_time_unix_secs` | 946684800 (2000-01-01) | start and end time, violation time |
//! | `max_future_secs` | 86400 | how far past the collector's clock a time may be |
//! | `max_delegation_hops` | 8 | hops of one delegation chain, origin and actor included |
//!
//! A record that breaks one is refused by itself with a [`Problem`] that
//! names the limit; the rest of its batch is kept.
//!
//! [`Rules`]: crate::Rules

use serde::{Deserialize, Serialize};

use crate::problem::Problem;
use crate::record::{Draft, Field, ViolationRecord};

/// Values quoted in refusal reasons are cut to this many bytes, so that a
/// hostile value is not echoed back (or stored in a violation row) whole.
pub const QUOTE_BYTES: usize = 64;

/// The collector's default `max_request_bytes`: the largest OTLP request
/// (protobuf, as decoded) it takes. The layer cuts its requests to this
/// size unless told the collector's own setting.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 20;

/// Per-record bounds (see the module docs for the defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Attributes on one record.
    pub max_attributes: usize,
    /// Bytes of one attribute key.
    pub max_key_bytes: usize,
    /// Bytes of one string value.
    pub max_value_bytes: usize,
    /// Nesting of array and kvlist values.
    pub max_depth: usize,
    /// Earliest accepted time, seconds since the epoch. Zero or 1970 times
    /// are what a client with an unset clock or field sends, not evidence.
    pub min_time_unix_secs: i64,
    /// Latest accepted time, seconds past the checker's clock (skew allowance).
    pub max_future_secs: i64,
    /// Hops of one delegation chain, origin and acting actor included.
    pub max_delegation_hops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attributes: 128,
            max_key_bytes: 256,
            max_value_bytes: 8192,
            max_depth: 8,
            min_time_unix_secs: 946_684_800,
            max_future_secs: 86_400,
            max_delegation_hops: 8,
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Limits {
    /// Accepted times, ns since the epoch, as of now.
    pub fn time_range_ns(&self) -> (i64, i64) {
        let min = self.min_time_unix_secs.saturating_mul(1_000_000_000);
        let max = now_ns().saturating_add(self.max_future_secs.saturating_mul(1_000_000_000));
        (min, max)
    }

    /// Whether `ns` is an accepted time.
    pub fn time_ok(&self, ns: i64) -> bool {
        let (min, max) = self.time_range_ns();
        (min..=max).contains(&ns)
    }

    fn time(&self, field: &'static str, ns: i64, out: &mut Vec<Problem>) {
        if !self.time_ok(ns) {
            let (min_ns, max_ns) = self.time_range_ns();
            out.push(Problem::TimeOutOfRange {
                field,
                ns,
                min_ns,
                max_ns,
            });
        }
    }

    fn value(&self, key: &str, value: &str, out: &mut Vec<Problem>) {
        if value.len() > self.max_value_bytes {
            out.push(Problem::ValueTooLong {
                key: clip(key, QUOTE_BYTES).to_owned(),
                len: value.len(),
                max: self.max_value_bytes,
            });
        }
    }

    fn attributes<'a>(
        &self,
        attrs: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
        out: &mut Vec<Problem>,
    ) {
        if attrs.len() > self.max_attributes {
            out.push(Problem::TooManyAttributes {
                count: attrs.len(),
                max: self.max_attributes,
            });
            // Every attribute would be named again below; one reason is enough.
            return;
        }
        for (k, v) in attrs {
            if k.len() > self.max_key_bytes {
                out.push(Problem::KeyTooLong {
                    key: clip(k, QUOTE_BYTES).to_owned(),
                    len: k.len(),
                    max: self.max_key_bytes,
                });
            }
            self.value(k, v, out);
        }
    }

    /// Problems of a draft action: attribute count, key and value lengths,
    /// times. (Nesting is not visible in a draft: see `check_log_record`.)
    pub fn check_draft(&self, d: &Draft) -> Vec<Problem> {
        let mut out = Vec::new();
        d.for_each_text(|key, v| {
            if let (Some(key), Some(v)) = (key, v) {
                self.value(key, v, &mut out);
            }
        });
        let scopes: usize = d.scopes.iter().map(|s| s.len() + 1).sum();
        if scopes > self.max_value_bytes {
            out.push(Problem::ValueTooLong {
                key: Field::Scopes.wire().to_owned(),
                len: scopes,
                max: self.max_value_bytes,
            });
        }
        self.attributes(d.attributes.iter(), &mut out);
        if let Some(t) = d.start_time_ns.filter(|t| *t > 0) {
            self.time("time_unix_nano", t, &mut out);
        }
        if let Some(t) = d.end_time_ns {
            self.time(Field::EndTime.wire(), t, &mut out);
        }
        out
    }

    /// Problems of a violation a client reported (same bounds as an action).
    pub fn check_violation(&self, x: &ViolationRecord) -> Vec<Problem> {
        let mut out = Vec::new();
        x.for_each_text(|key, val| {
            if let (Some(key), Some(val)) = (key, val) {
                self.value(key, val, &mut out);
            }
        });
        let missing: usize = x.missing.iter().map(|s| s.len() + 1).sum();
        if missing > self.max_value_bytes {
            out.push(Problem::ValueTooLong {
                key: crate::wire::violation::MISSING.to_owned(),
                len: missing,
                max: self.max_value_bytes,
            });
        }
        self.attributes(x.attributes.iter(), &mut out);
        self.time("time_unix_nano", x.time_ns, &mut out);
        out
    }

    /// Cuts every string of a violation row to the limits, so that the row
    /// the collector writes about a refused record stays small whatever the
    /// record held. Attributes beyond `max_attributes` are dropped.
    pub fn clip_violation(&self, x: &mut ViolationRecord) {
        let max = self.max_value_bytes;
        let cut = |s: &mut String| {
            let n = clip(s, max).len();
            s.truncate(n);
        };
        x.for_each_text_mut(&cut);
        x.missing.truncate(self.max_attributes);
        x.missing.iter_mut().for_each(&cut);
        let attrs = std::mem::take(&mut x.attributes);
        x.attributes = attrs
            .into_iter()
            .take(self.max_attributes)
            .map(|(k, mut v)| {
                cut(&mut v);
                (clip(&k, self.max_key_bytes).to_owned(), v)
            })
            .collect();
    }
}

#[cfg(feature = "otlp")]
mod wire_checks {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;

    use super::{clip, Limits, QUOTE_BYTES};
    use crate::otlp::{Attr, AttrValue};
    use crate::problem::Problem;

    /// Nesting of a value: a scalar is 0, an array of scalars 1. Stops
    /// counting past `max`, so a hostile value costs at most `max` levels.
    fn depth(v: Option<&AnyValue>, max: usize) -> usize {
        v.and_then(|v| v.value.as_ref())
            .map_or(0, |v| depth_of(v, max))
    }

    fn depth_of(v: &Value, max: usize) -> usize {
        if max == 0 {
            return matches!(v, Value::ArrayValue(_) | Value::KvlistValue(_)) as usize;
        }
        let children: Box<dyn Iterator<Item = Option<&AnyValue>>> = match v {
            Value::ArrayValue(a) => Box::new(a.values.iter().map(Some)),
            Value::KvlistValue(l) => Box::new(l.values.iter().map(|kv| kv.value.as_ref())),
            _ => return 0,
        };
        1 + children.map(|c| depth(c, max - 1)).max().unwrap_or(0)
    }

    impl Limits {
        /// Problems only the wire form shows: attributes counted as sent
        /// (duplicates included) and nesting depth. The rest is checked on
        /// the draft by [`crate::Rules::check`].
        pub fn check_log_record(&self, lr: &LogRecord) -> Vec<Problem> {
            self.check_attributes(&Attr::all(&lr.attributes))
        }

        /// Whether an attribute's value nests deeper than `max_depth`.
        pub fn too_deep(&self, attr: &Attr<'_>) -> bool {
            let nested = attr.value.as_ref().and_then(AttrValue::nested);
            nested.is_some_and(|v| depth_of(v, self.max_depth) > self.max_depth)
        }

        /// [`Limits::check_log_record`] on a record's attributes as read.
        pub fn check_attributes(&self, attributes: &[Attr<'_>]) -> Vec<Problem> {
            let mut out = Vec::new();
            if attributes.len() > self.max_attributes {
                out.push(Problem::TooManyAttributes {
                    count: attributes.len(),
                    max: self.max_attributes,
                });
                return out;
            }
            for attr in attributes {
                if self.too_deep(attr) {
                    out.push(Problem::TooDeep {
                        key: clip(attr.key, QUOTE_BYTES).to_owned(),
                        max: self.max_depth,
                    });
                }
            }
            out
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValue};

        fn nested(levels: usize) -> AnyValue {
            let mut v = AnyValue {
                value: Some(Value::StringValue("x".into())),
            };
            for _ in 0..levels {
                v = AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
                };
            }
            v
        }

        #[test]
        fn nesting_past_the_limit_is_named() {
            let limits = Limits::default();
            let lr = |levels| LogRecord {
                attributes: vec![KeyValue {
                    key: "deep".into(),
                    value: Some(nested(levels)),
                    ..KeyValue::default()
                }],
                ..LogRecord::default()
            };
            assert!(limits.check_log_record(&lr(limits.max_depth)).is_empty());
            assert_eq!(
                limits.check_log_record(&lr(limits.max_depth + 1)),
                [Problem::TooDeep {
                    key: "deep".into(),
                    max: limits.max_depth
                }]
            );
            assert_eq!(depth(Some(&nested(1000)), 8), 9, "counting stops past max");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            start_time_ns: Some(1_764_000_000_000_000_000),
            action: Some("db.drop".into()),
            agent_id: Some("agt_1".into()),
            owner_id: Some("usr_1".into()),
            ..Draft::default()
        }
    }

    #[test]
    fn a_draft_within_the_limits_passes() {
        assert!(Limits::default().check_draft(&draft()).is_empty());
    }

    #[test]
    fn each_limit_is_named() {
        let l = Limits::default();
        let mut d = draft();
        d.owner_id = Some("x".repeat(l.max_value_bytes + 1));
        assert!(matches!(
            &l.check_draft(&d)[..],
            [Problem::ValueTooLong { key, .. }] if key == "audit.owner.id"
        ));
        let mut d = draft();
        d.attributes
            .insert("k".repeat(l.max_key_bytes + 1), "v".into());
        assert!(matches!(&l.check_draft(&d)[..], [Problem::KeyTooLong { len, .. }] if *len == 257));
        let mut d = draft();
        d.attributes = (0..=l.max_attributes)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(matches!(
            &l.check_draft(&d)[..],
            [Problem::TooManyAttributes {
                count: 129,
                max: 128
            }]
        ));
    }

    #[test]
    fn times_before_2000_or_past_tomorrow_are_refused() {
        let l = Limits::default();
        for bad in [
            1,
            946_684_799_000_000_000,
            now_ns() + 2 * 86_400 * 1_000_000_000,
        ] {
            let mut d = draft();
            d.start_time_ns = Some(bad);
            assert!(
                matches!(&l.check_draft(&d)[..], [Problem::TimeOutOfRange { ns, .. }] if *ns == bad),
                "{bad}"
            );
        }
        let mut d = draft();
        d.end_time_ns = Some(i64::MAX);
        assert_eq!(l.check_draft(&d).len(), 1);
    }

    #[test]
    fn clip_keeps_char_boundaries_and_violation_rows_stay_small() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
        let l = Limits::default();
        let mut x = ViolationRecord {
            owner_id: Some("é".repeat(l.max_value_bytes)),
            attributes: (0..1000)
                .map(|i| (format!("k{i}"), "v".repeat(20_000)))
                .collect(),
            ..ViolationRecord::default()
        };
        l.clip_violation(&mut x);
        assert!(x
            .owner_id
            .as_ref()
            .is_some_and(|s| s.len() <= l.max_value_bytes));
        assert_eq!(x.attributes.len(), l.max_attributes);
        x.time_ns = 1_764_000_000_000_000_000;
        x.service_name = "svc".into();
        assert!(
            l.check_violation(&x).is_empty(),
            "{:?}",
            l.check_violation(&x)
        );
    }
}
