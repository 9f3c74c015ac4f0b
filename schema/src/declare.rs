//! The macros that turn the field tables in [`crate::record`] into the
//! record structs, the [`Draft`](crate::Draft), the [`Field`](crate::Field)
//! names, the column lists and the per-field code that fills, checks,
//! writes and reads them, so that a field is declared in one row.
//!
//! A row's *kind* says how its field is held; everything else follows:
//!
//! | kind | in the record | in a draft | column |
//! |---|---|---|---|
//! | `text` | `Option<String>` | `Option<String>` | string, nullable |
//! | `string` | `String` | `Option<String>` | string |
//! | `actor` | `ActorKind` | `Option<String>`, as stated | string |
//! | `time` | `i64` | `Option<i64>` | timestamp |
//! | `opt_time` | `Option<i64>` | `Option<i64>` | timestamp, nullable |
//! | `opt_int` | `Option<i64>` | — | int64, nullable |
//! | `list` | `Vec<String>` | `Vec<String>` | list of strings |
//! | `map` | `BTreeMap<String, String>` | the same | string-to-string map |
//! | `bool` | `bool` | `bool` (false) | boolean |
//!
//! A draft's `string`, `actor` and `time` fields become the record's only
//! through [`Rules::check`](crate::Rules::check), which refuses a draft
//! without them or fills their documented defaults.

/// The record's type of a field of this kind.
macro_rules! record_ty {
    (text) => { Option<String> };
    (string) => { String };
    (actor) => { ActorKind };
    (time) => { i64 };
    (opt_time) => { Option<i64> };
    (opt_int) => { Option<i64> };
    (list) => { Vec<String> };
    (map) => { BTreeMap<String, String> };
    (bool) => { bool };
}

/// The draft's type of a field of this kind: as given, unchecked.
macro_rules! draft_ty {
    (text) => { Option<String> };
    (string) => { Option<String> };
    (actor) => { Option<String> };
    (time) => { Option<i64> };
    (opt_time) => { Option<i64> };
    (list) => { Vec<String> };
    (map) => { BTreeMap<String, String> };
    (bool) => { bool };
}

/// The column of a field of this kind.
macro_rules! column {
    (@ $name:expr, $ty:ident, $nullable:expr, $doc:expr) => {
        $crate::column::Column {
            name: $name,
            ty: $crate::column::ColumnType::$ty,
            nullable: $nullable,
            wire: $doc,
        }
    };
    (text, $name:expr, $doc:expr) => { column!(@ $name, Utf8, true, $doc) };
    (string, $name:expr, $doc:expr) => { column!(@ $name, Utf8, false, $doc) };
    (actor, $name:expr, $doc:expr) => { column!(@ $name, Utf8, false, $doc) };
    (time, $name:expr, $doc:expr) => { column!(@ $name, TimestampNs, false, $doc) };
    (opt_time, $name:expr, $doc:expr) => { column!(@ $name, TimestampNs, true, $doc) };
    (opt_int, $name:expr, $doc:expr) => { column!(@ $name, Int64, true, $doc) };
    (list, $name:expr, $doc:expr) => { column!(@ $name, ListUtf8, false, $doc) };
    (map, $name:expr, $doc:expr) => { column!(@ $name, MapUtf8, false, $doc) };
    (bool, $name:expr, $doc:expr) => { column!(@ $name, Bool, false, $doc) };
}

/// The stored cell of a record's field.
macro_rules! cell {
    (text, $v:expr) => {
        $crate::column::Cell::Str($v.as_deref())
    };
    (string, $v:expr) => {
        $crate::column::Cell::Str(Some($v.as_str()))
    };
    (actor, $v:expr) => {
        $crate::column::Cell::Str(Some($v.as_str()))
    };
    (time, $v:expr) => {
        $crate::column::Cell::Time(Some($v))
    };
    (opt_time, $v:expr) => {
        $crate::column::Cell::Time($v)
    };
    (opt_int, $v:expr) => {
        $crate::column::Cell::Int($v)
    };
    (list, $v:expr) => {
        $crate::column::Cell::List(&$v)
    };
    (map, $v:expr) => {
        $crate::column::Cell::Map(&$v)
    };
    (bool, $v:expr) => {
        $crate::column::Cell::Bool($v)
    };
}

/// A record's field read back from its column.
macro_rules! read_cell {
    (text, $r:expr, $col:expr) => {
        $r.text($col)?
    };
    (string, $r:expr, $col:expr) => {
        $r.text($col)?.ok_or_else(|| $r.null($col))?
    };
    (actor, $r:expr, $col:expr) => {{
        let kind = $r.text($col)?.ok_or_else(|| $r.null($col))?;
        ActorKind::parse(&kind).ok_or_else(|| $r.invalid($col, &kind, "agent/human"))?
    }};
    (time, $r:expr, $col:expr) => {
        $r.time($col)?.ok_or_else(|| $r.null($col))?
    };
    (opt_time, $r:expr, $col:expr) => {
        $r.time($col)?
    };
    (opt_int, $r:expr, $col:expr) => {
        $r.int($col)?
    };
    (list, $r:expr, $col:expr) => {
        $r.list($col)?
    };
    (map, $r:expr, $col:expr) => {
        $r.map($col)?
    };
    (bool, $r:expr, $col:expr) => {
        $r.boolean($col)?.ok_or_else(|| $r.null($col))?
    };
}

/// Hands a record's string field, with its wire key, to `f`.
macro_rules! record_text {
    (text, $f:ident, $key:expr, $v:expr) => {
        $f($key, $v.as_deref())
    };
    (string, $f:ident, $key:expr, $v:expr) => {
        $f($key, Some($v.as_str()))
    };
    ($other:ident, $f:ident, $key:expr, $v:expr) => {};
}

/// Hands a record's string field to `f` to change.
macro_rules! record_text_mut {
    (text, $f:ident, $v:expr) => {
        if let Some(s) = &mut $v {
            $f(s)
        }
    };
    (string, $f:ident, $v:expr) => {
        $f(&mut $v)
    };
    ($other:ident, $f:ident, $v:expr) => {};
}

/// Hands a draft's string field, with its wire key, to `f`.
macro_rules! draft_text {
    (text, $f:ident, $key:expr, $v:expr) => {
        $f($key, $v)
    };
    (string, $f:ident, $key:expr, $v:expr) => {
        $f($key, $v)
    };
    (actor, $f:ident, $key:expr, $v:expr) => {
        $f($key, $v)
    };
    ($other:ident, $f:ident, $key:expr, $v:expr) => {};
}

/// Hands a draft's string field to `f` to change.
macro_rules! draft_text_mut {
    (text, $f:ident, $v:expr) => {
        $f($v)
    };
    (string, $f:ident, $v:expr) => {
        $f($v)
    };
    (actor, $f:ident, $v:expr) => {
        $f($v)
    };
    ($other:ident, $f:ident, $v:expr) => {};
}

/// Sets a draft's field from the string a span or an OTLP attribute gave.
macro_rules! set_from_str {
    (opt_time, $d:expr, $name:ident, $field:expr, $value:expr) => {
        match $value.trim().parse::<i64>() {
            Ok(ns) => $d.$name = Some(ns),
            // Kept, not lost: a time that does not parse is still evidence.
            Err(_) => {
                $d.attributes.insert($field.wire().to_owned(), $value);
            }
        }
    };
    (list, $d:expr, $name:ident, $field:expr, $value:expr) => {
        $d.$name = split_scopes(&$value)
    };
    ($string:ident, $d:expr, $name:ident, $field:expr, $value:expr) => {
        $d.$name = Some($value)
    };
}

/// A record's field from a checked draft's (see the module docs).
macro_rules! from_draft {
    (string, $v:expr, $actor:expr) => {
        $v.unwrap_or_default()
    };
    (time, $v:expr, $actor:expr) => {
        $v.unwrap_or_default()
    };
    (actor, $v:expr, $actor:expr) => {
        $actor
    };
    ($same:ident, $v:expr, $actor:expr) => {
        $v
    };
}

/// `Some(key)`, or `None` for a field with no key of its own on the wire.
macro_rules! wire_key {
    () => {
        None
    };
    ($key:expr) => {
        Some($key)
    };
}

/// A stored record: its struct, its column list (the record's columns,
/// then the collector's [`STAMP`](crate::column::STAMP)), its cells, and
/// its strings with their wire keys. A row says where its value travels:
/// `attr "key"` (an OTLP attribute; a literal after it adds to the column's
/// docs), `resource "key"` (an OTLP resource attribute) or `source "docs"`
/// (elsewhere in the log record).
macro_rules! stored_record {
    (
        $(#[$meta:meta])*
        pub struct $Record:ident in $COLUMNS:ident $(added $ADDED:ident)? {
            $(
                $(#[doc = $doc:literal])*
                $name:ident: $kind:ident = $col:literal
                $(, attr $wire:literal $($suffix:literal)?)?
                $(, resource $rkey:literal)?
                $(, source $sdoc:literal)?
                ;
            )*
        }
    ) => {
        $(#[$meta])*
        pub struct $Record {
            $( $(#[doc = $doc])* pub $name: record_ty!($kind), )*
        }

        #[doc = concat!(
            "Columns of the dataset of [`", stringify!($Record), "`] rows, in file order."
        )]
        pub const $COLUMNS: &[$crate::column::Column] = &[
            $(
                column!(
                    $kind,
                    $col,
                    concat!(
                        $("attribute `", $wire, "`", $($suffix,)?)?
                        $("resource `", $rkey, "`",)?
                        $($sdoc,)?
                    )
                ),
            )*
            $crate::column::STAMP[0],
            $crate::column::STAMP[1],
            $crate::column::STAMP[2],
        ];

        impl $crate::column::Stored for $Record {
            const COLUMNS: &'static [$crate::column::Column] = $COLUMNS;
            $(const ADDED: &'static [&'static str] = $ADDED;)?

            fn cells(&self, f: &mut dyn FnMut($crate::column::Cell<'_>)) {
                $( f(cell!($kind, self.$name)); )*
            }

            fn from_cells<R: $crate::column::ReadCells>(cells: &mut R) -> Result<Self, R::Error> {
                Ok($Record { $( $name: read_cell!($kind, cells, $col), )* })
            }
        }

        // Not every record needs every accessor.
        #[allow(dead_code)]
        impl $Record {
            /// Every string field with its wire key (`None` for those that
            /// travel outside the attributes, e.g. the trace id).
            pub(crate) fn for_each_text(&self, mut f: impl FnMut(Option<&'static str>, Option<&str>)) {
                $( record_text!($kind, f, wire_key!($($wire)? $($rkey)?), self.$name); )*
            }

            /// Every string field, to change in place.
            pub(crate) fn for_each_text_mut(&mut self, mut f: impl FnMut(&mut String)) {
                $( record_text_mut!($kind, f, self.$name); )*
            }
        }
    };
}

/// The audit record from its table: [`stored_record!`] plus the [`Field`]
/// names a client sets (with their wire keys, span aliases and meanings),
/// and the [`Draft`] that gathers them before the rules run.
///
/// [`Field`]: crate::Field
/// [`Draft`]: crate::Draft
macro_rules! audit_record {
    (
        $(#[$meta:meta])*
        pub struct AuditRecord {
            $(
                $(#[doc = $doc:literal])*
                $name:ident: $kind:ident = $col:literal
                $(, field $Field:ident($wire:literal, $alias:literal, $meaning:literal) $($suffix:literal)?)?
                $(, resource $rkey:literal)?
                $(, source $sdoc:literal)?
                ;
            )*
        }
        flags {
            $(
                $(#[doc = $fdoc:literal])*
                $flag:ident: $Flag:ident($fwire:literal, $falias:literal, $fmeaning:literal);
            )*
        }
    ) => {
        /// A field of the audit record that a client sets (the collector
        /// sets the rest). Its doc is its meaning in [`FIELDS`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Field {
            $($( #[doc = $meaning] $Field, )?)*
            $( #[doc = $fmeaning] $Flag, )*
        }

        impl Field {
            /// One of the flags (`audit.privileged`, `audit.dangerous`): a
            /// boolean of the draft, not text, set by [`Field::set_flag`].
            pub fn is_flag(self) -> bool {
                matches!(self, $( Field::$Flag )|*)
            }
        }

        /// The field table: wire names, span aliases and meanings, in schema order.
        pub const FIELDS: &[FieldSpec] = &[
            $($(
                FieldSpec { field: Field::$Field, wire: $wire, alias: $alias, meaning: $meaning },
            )?)*
            $(
                FieldSpec { field: Field::$Flag, wire: $fwire, alias: $falias, meaning: $fmeaning },
            )*
        ];

        stored_record! {
            $(#[$meta])*
            pub struct AuditRecord in AUDIT added AUDIT_ADDED {
                $(
                    $(#[doc = $doc])*
                    $name: $kind = $col
                    $(, attr $wire $($suffix)?)?
                    $(, resource $rkey)?
                    $(, source $sdoc)?
                    ;
                )*
            }
        }

        /// Everything gathered about one privileged action before the rules
        /// run. Strings are kept as given; the rules decide what empty or
        /// unknown means.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct Draft {
            $(
                #[doc = concat!("See [`AuditRecord::", stringify!($name), "`].")]
                pub $name: draft_ty!($kind),
            )*
            $( $(#[doc = $fdoc])* pub $flag: bool, )*
        }

        impl Draft {
            /// Sets a schema field from its string form. Booleans accept
            /// `true`; scopes accept a comma-separated list (tracing fields
            /// carry no arrays).
            pub fn set(&mut self, field: Field, value: String) {
                match field {
                    $($( Field::$Field => set_from_str!($kind, self, $name, field, value), )?)*
                    $( Field::$Flag => field.set_flag(is_true(&value), &mut self.privileged, &mut self.dangerous), )*
                }
            }

            /// Every string field with its wire key (`None` for those that
            /// travel outside the attributes, e.g. the trace id).
            pub(crate) fn for_each_text(&self, mut f: impl FnMut(Option<&'static str>, Option<&str>)) {
                $( draft_text!($kind, f, wire_key!($($wire)? $($rkey)?), self.$name.as_deref()); )*
            }

            /// Every string field, to change in place.
            pub(crate) fn for_each_text_mut(&mut self, mut f: impl FnMut(&mut Option<String>)) {
                $( draft_text_mut!($kind, f, &mut self.$name); )*
            }
        }

        // `for_each_attribute` serves the OTLP codec, a feature.
        #[allow(dead_code)]
        impl AuditRecord {
            /// The record from a draft that [`Rules::check`](crate::Rules::check)
            /// found complete, with its defaults filled.
            pub(crate) fn from_draft(d: Draft, actor_kind: ActorKind) -> AuditRecord {
                AuditRecord { $( $name: from_draft!($kind, d.$name, actor_kind), )* }
            }

            /// Every field a client sets, with its cell, in schema order:
            /// what travels as the log record's attributes (the layer's
            /// exporter encodes them straight to protobuf from this).
            pub fn for_each_attribute(&self, mut f: impl FnMut(Field, $crate::column::Cell<'_>)) {
                $($( f(Field::$Field, cell!($kind, self.$name)); )?)*
            }
        }
    };
}
