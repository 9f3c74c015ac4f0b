//! A privileged span's fields as the layer holds them from the span's
//! creation until its record is checked.
//!
//! The record's [`Draft`] holds a `String` per field; building it on the
//! application's thread cost about fifteen allocations per span. Here a
//! value is kept inline when it is short (ids, targets, scope lists of a
//! few scopes), shared when a long value repeats (the same actor's
//! delegation chain, span after span), and the trace and span ids stay
//! binary. The `Draft` is made from these after the hand-off, on the export
//! worker's thread ([`SpanFields::take_draft`]), by the same
//! [`Draft::set`] the span fields went through before, in the order they
//! were recorded, so the record does not change.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use audit_schema::record::is_true;
use audit_schema::{Draft, Field, FIELDS};
use tracing_core::field::Visit;
use tracing_core::Metadata;

use crate::ids;

/// Longest value kept inline: a hyphenated UUID (36) fits.
const INLINE: usize = 38;

/// One slot per schema field.
const SLOTS: usize = FIELDS.len();

/// A field's value, as a string.
#[derive(Clone, Debug)]
pub(crate) enum Text {
    /// Known when the program was built (a span name, `true`).
    Static(&'static str),
    /// Short: the bytes here, valid UTF-8.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// Long and seen before on this thread for the same field.
    Shared(Arc<str>),
    /// Long, once.
    Heap(Box<str>),
}

impl Text {
    /// `s`, inline when it fits.
    fn new(s: &str) -> Text {
        Text::inline(s).unwrap_or_else(|| Text::Heap(s.into()))
    }

    fn inline(s: &str) -> Option<Text> {
        let mut bytes = [0u8; INLINE];
        bytes.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        Some(Text::Inline {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The value of schema field `field`: inline when it fits, else shared
    /// with the last long value this thread recorded for the field when
    /// they are equal (an actor's strings repeat span after span).
    fn for_field(field: Field, s: &str) -> Text {
        if let Some(t) = Text::inline(s) {
            return t;
        }
        LAST_LONG.with(|last| {
            let mut last = last.borrow_mut();
            let slot = &mut last[field as usize];
            match slot {
                Some(shared) if **shared == *s => Text::Shared(shared.clone()),
                _ => {
                    let shared: Arc<str> = s.into();
                    *slot = Some(shared.clone());
                    Text::Shared(shared)
                }
            }
        })
    }

    /// A value's `Display` or `Debug` text, formatted inline when it fits.
    fn formatted(args: fmt::Arguments<'_>) -> Text {
        let mut w = InlineWriter {
            len: 0,
            bytes: [0u8; INLINE],
        };
        if w.write_fmt(args).is_ok() {
            return Text::Inline {
                len: w.len as u8,
                bytes: w.bytes,
            };
        }
        Text::Heap(fmt::format(args).into_boxed_str())
    }

    pub fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            // Only whole `&str`s were copied in, so this is valid UTF-8.
            Text::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Text::Shared(s) => s,
            Text::Heap(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            Text::Heap(s) => s.into_string(),
            other => other.as_str().to_owned(),
        }
    }
}

impl From<crate::ids::EventId> for Text {
    fn from(id: crate::ids::EventId) -> Text {
        Text::new(id.as_str())
    }
}

/// Formats into an inline buffer; fails when the text does not fit, so
/// that the caller formats it on the heap instead.
struct InlineWriter {
    len: usize,
    bytes: [u8; INLINE],
}

impl fmt::Write for InlineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

thread_local! {
    /// Per schema field, the last long value this thread recorded.
    static LAST_LONG: RefCell<[Option<Arc<str>>; SLOTS]> =
        const { RefCell::new([const { None }; SLOTS]) };
}

/// The fields of one privileged span, as recorded so far.
#[derive(Debug)]
pub(crate) struct SpanFields {
    /// Schema fields, by [`Field`] discriminant (the flags' slots stay empty).
    values: [Option<Text>; SLOTS],
    /// Values recorded again later: applied first, so that what `Draft::set`
    /// does with a value it replaces (a time that does not parse is kept
    /// among the attributes) still happens.
    replaced: Vec<(Field, Text)>,
    /// Fields the schema does not name, in the order recorded.
    attributes: Vec<(&'static str, Text)>,
    /// `audit.privileged`: the last value recorded.
    pub privileged: bool,
    /// `audit.dangerous`, as [`Field::set_flag`] keeps it.
    dangerous: bool,
    /// An `outcome` was recorded: an ERROR event must not overwrite it.
    pub explicit_outcome: bool,
    pub start_ns: i64,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// What a child span that names no actor takes from its privileged
/// ancestor: the dual key and the chain behind it.
const INHERITED: &[Field] = &[
    Field::ActorKind,
    Field::AgentId,
    Field::OwnerId,
    Field::AgentCredentialId,
    Field::AgentName,
    Field::Delegation,
    Field::OriginId,
    Field::DelegationFrom,
];

/// Taken from the ancestor only when the child did not record them.
const INHERITED_IF_UNSET: &[Field] = &[Field::InitiatorId, Field::TaskId];

impl SpanFields {
    pub fn new(start_ns: i64) -> SpanFields {
        SpanFields {
            values: [const { None }; SLOTS],
            replaced: Vec::new(),
            attributes: Vec::new(),
            privileged: false,
            dangerous: false,
            explicit_outcome: false,
            start_ns,
            trace_id: [0; 16],
            span_id: [0; 8],
        }
    }

    /// The value of schema field `f`, as last recorded.
    pub fn get(&self, f: Field) -> Option<&str> {
        self.values[f as usize].as_ref().map(Text::as_str)
    }

    /// The span names an actor of its own.
    pub fn names_actor(&self) -> bool {
        [Field::ActorKind, Field::AgentId, Field::OwnerId]
            .iter()
            .any(|f| self.values[*f as usize].is_some())
    }

    /// Takes the dual key and the chain from a privileged ancestor (see
    /// [`INHERITED`]).
    pub fn inherit(&mut self, parent: &SpanFields) {
        for f in INHERITED {
            self.values[*f as usize].clone_from(&parent.values[*f as usize]);
        }
        for f in INHERITED_IF_UNSET {
            if self.values[*f as usize].is_none() {
                self.values[*f as usize].clone_from(&parent.values[*f as usize]);
            }
        }
    }

    /// The draft the rules check, with the values in the order recorded.
    /// Takes the values out one by one where they are: the ~1 KB of
    /// inline values is never copied whole.
    pub fn take_draft(&mut self) -> Draft {
        let mut d = Draft {
            start_time_ns: Some(self.start_ns),
            trace_id: Some(ids::hex(&self.trace_id)),
            span_id: Some(ids::hex(&self.span_id)),
            privileged: self.privileged,
            dangerous: self.dangerous,
            ..Draft::default()
        };
        for (f, text) in self.replaced.drain(..) {
            d.set(f, text.into_string());
        }
        for (spec, value) in FIELDS.iter().zip(&mut self.values) {
            if let Some(text) = value.take() {
                d.set(spec.field, text.into_string());
            }
        }
        for (name, text) in self.attributes.drain(..) {
            d.attributes.insert(name.to_owned(), text.into_string());
        }
        d
    }

    fn put(&mut self, field: &tracing_core::Field, value: Value<'_>) {
        let Some(f) = Field::from_span_field(field.name()) else {
            let text = match value {
                Value::Bool(b) => Text::Static(if b { "true" } else { "false" }),
                Value::Str(s) => Text::new(s),
                Value::Formatted(args) => Text::formatted(args),
            };
            self.attributes.push((field.name(), text));
            return;
        };
        if f.is_flag() {
            let on = match value {
                Value::Bool(b) => b,
                Value::Str(s) => is_true(s),
                Value::Formatted(args) => is_true(Text::formatted(args).as_str()),
            };
            f.set_flag(on, &mut self.privileged, &mut self.dangerous);
            return;
        }
        if f == Field::Outcome {
            self.explicit_outcome = true;
        }
        let text = match value {
            Value::Bool(b) => Text::Static(if b { "true" } else { "false" }),
            Value::Str(s) => Text::for_field(f, s),
            Value::Formatted(args) => Text::formatted(args),
        };
        if let Some(old) = self.values[f as usize].replace(text) {
            self.replaced.push((f, old));
        }
    }

    /// Sets the action, when the span recorded none, to its name.
    pub fn default_action(&mut self, meta: &'static Metadata<'static>) {
        let slot = &mut self.values[Field::Action as usize];
        if slot.as_ref().is_none_or(|a| a.as_str().trim().is_empty()) {
            *slot = Some(Text::Static(meta.name()));
        }
    }

    /// Sets the outcome to `error` unless one was recorded.
    pub fn error_outcome(&mut self) {
        if !self.explicit_outcome {
            self.values[Field::Outcome as usize] = Some(Text::Static("error"));
        }
    }

    pub fn set_dangerous(&mut self) {
        self.dangerous = true;
    }

    /// Gives the span a fresh event id unless the caller gave one (an
    /// idempotency key it may retry with).
    pub fn ensure_event_id(&mut self) {
        let slot = &mut self.values[Field::EventId as usize];
        if slot.as_ref().is_none_or(|e| e.as_str().trim().is_empty()) {
            *slot = Some(ids::event_id_text().into());
        }
    }
}

enum Value<'a> {
    Bool(bool),
    Str(&'a str),
    Formatted(fmt::Arguments<'a>),
}

/// Records span fields into [`SpanFields`]; every `record_*` goes through
/// [`SpanFields::put`], as `Draft::set` would take the value's text.
pub(crate) struct FieldVisitor<'a>(pub &'a mut SpanFields);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &tracing_core::Field, value: &str) {
        self.0.put(field, Value::Str(value));
    }

    fn record_bool(&mut self, field: &tracing_core::Field, value: bool) {
        self.0.put(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &tracing_core::Field, value: i64) {
        self.0.put(field, Value::Formatted(format_args!("{value}")));
    }

    fn record_u64(&mut self, field: &tracing_core::Field, value: u64) {
        self.0.put(field, Value::Formatted(format_args!("{value}")));
    }

    fn record_f64(&mut self, field: &tracing_core::Field, value: f64) {
        self.0.put(field, Value::Formatted(format_args!("{value}")));
    }

    fn record_error(
        &mut self,
        field: &tracing_core::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.0.put(field, Value::Formatted(format_args!("{value}")));
    }

    fn record_debug(&mut self, field: &tracing_core::Field, value: &dyn fmt::Debug) {
        // `%x` arrives here as a DisplayValue whose Debug is x's Display.
        self.0
            .put(field, Value::Formatted(format_args!("{value:?}")));
    }
}

/// A privileged span that closed: its fields and what its record needs
/// besides, handed to the exporter to be checked there.
#[derive(Debug)]
pub(crate) struct Closed {
    pub fields: SpanFields,
    /// Callsite, for the action's default and a violation record.
    pub meta: &'static Metadata<'static>,
    pub end_ns: i64,
    /// An ERROR-level event happened inside the span.
    pub error_seen: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_stay_inline_and_long_ones_repeat_shared() {
        assert!(matches!(Text::new("agt_7f3"), Text::Inline { .. }));
        let uuid = "0192e4c5-8f3a-7b21-9c4d-5e6f708192a3";
        assert!(matches!(Text::new(uuid), Text::Inline { .. }));
        assert_eq!(Text::new(uuid).as_str(), uuid);
        let chain = "[{\"kind\":\"human\",\"id\":\"usr_alice\"},{\"kind\":\"agent\"}]";
        let (Text::Shared(a), Text::Shared(b)) = (
            Text::for_field(Field::Delegation, chain),
            Text::for_field(Field::Delegation, chain),
        ) else {
            panic!("a long value is shared");
        };
        assert!(Arc::ptr_eq(&a, &b), "the second is the first, not a copy");
        let Text::Shared(c) = Text::for_field(Field::Delegation, &chain.replace("alice", "bobby"))
        else {
            panic!("a long value is shared");
        };
        assert!(!Arc::ptr_eq(&a, &c) && c.contains("bobby"));
    }

    /// A value as a span records it.
    enum V {
        Str(&'static str),
        Bool(bool),
        Int(i64),
    }

    /// The visitor's fields make the draft that `Draft::set` and
    /// `Draft::set_bool` make from the same values in the same order: the
    /// flags' rule (sticky `dangerous`), replaced values, unparsable times,
    /// scopes, long values and unknown fields included.
    #[test]
    fn span_fields_make_the_draft_that_draft_set_makes() {
        let meta = tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let span = tracing::info_span!(
                "s",
                audit.dangerous = 0,
                audit.privileged = 0,
                outcome = 0,
                end_time_unix_nano = 0,
                scopes = 0,
                agent.id = 0,
                owner.id = 0,
                extra = 0
            );
            span.metadata().expect("enabled")
        });
        let long = "agt_a_principal_id_longer_than_what_is_kept_inline_0123456789";
        let steps = [
            ("audit.dangerous", V::Bool(true)),
            ("audit.dangerous", V::Str("false")),
            ("audit.privileged", V::Str(" TRUE ")),
            ("audit.privileged", V::Bool(false)),
            ("audit.privileged", V::Int(1)),
            ("end_time_unix_nano", V::Str("soon")),
            ("end_time_unix_nano", V::Int(42)),
            ("outcome", V::Str("ok")),
            ("outcome", V::Str("denied")),
            ("scopes", V::Str("a:read, b:write c")),
            ("agent.id", V::Str(long)),
            ("owner.id", V::Bool(true)),
            ("extra", V::Int(-7)),
            ("extra", V::Str("again")),
        ];
        let mut fields = SpanFields::new(5);
        let mut expected = Draft {
            start_time_ns: Some(5),
            trace_id: Some(ids::hex(&[0; 16])),
            span_id: Some(ids::hex(&[0; 8])),
            ..Draft::default()
        };
        for (name, value) in &steps {
            let field = meta.fields().field(name).expect("declared");
            let mut visitor = FieldVisitor(&mut fields);
            let text = match *value {
                V::Str(s) => {
                    visitor.record_str(&field, s);
                    s.to_owned()
                }
                V::Bool(b) => {
                    visitor.record_bool(&field, b);
                    b.to_string()
                }
                V::Int(i) => {
                    visitor.record_i64(&field, i);
                    i.to_string()
                }
            };
            match (Field::from_span_field(name), value) {
                (Some(f), V::Bool(b)) => expected.set_bool(f, *b),
                (Some(f), _) => expected.set(f, text),
                (None, _) => {
                    expected.attributes.insert((*name).to_owned(), text);
                }
            }
        }
        assert!(expected.dangerous && !expected.privileged);
        assert_eq!(expected.attributes["audit.end_time_unix_nano"], "soon");
        assert_eq!(expected.attributes["extra"], "again");
        assert_eq!(fields.take_draft(), expected);
    }

    #[test]
    fn formatting_falls_back_to_the_heap_when_long() {
        let short = Text::formatted(format_args!("{}", 1234567));
        assert!(matches!(short, Text::Inline { .. }));
        assert_eq!(short.as_str(), "1234567");
        let long = Text::formatted(format_args!("{}", 1e300));
        assert!(matches!(long, Text::Heap(_)));
        assert_eq!(long.as_str(), 1e300.to_string());
    }
}
