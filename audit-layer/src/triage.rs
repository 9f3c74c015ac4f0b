//! What the layer decides for every span the application makes, kept
//! cheap: most spans are not privileged, and the layer must cost them
//! next to nothing.
//!
//! - [`Callsites`]: the policy's answer per callsite. Target prefixes,
//!   span names and the `audit.privileged` field are static metadata, so
//!   a span of a callsite seen before is classified by one load and one
//!   compare instead of string compares.
//! - [`Marks`]: which span ids may carry the layer's state. The layer is
//!   told only the id when a span is entered, records or closes; without
//!   this it must look the span up in the registry to learn that there is
//!   nothing to do.
//!
//! Both belong to one layer, whose policy does not change once built: a
//! second layer (another subscriber) keeps its own.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use tracing_core::span::Id;
use tracing_core::Metadata;

use crate::policy::{Policy, Static};

/// Slots of the callsite cache: a program's span callsites that are hot at
/// once fit; two that share a slot are classified again, not wrongly.
const CALLSITE_BITS: u32 = 9;

/// Buckets of the span marks: many privileged spans open at once only
/// make more non-privileged spans look their span up, as they all do
/// without the marks.
const MARK_BITS: u32 = 10;

/// The class is kept in the low bits of the callsite's metadata address.
const CLASS_MASK: usize = 0b11;
const _: () = assert!(std::mem::align_of::<Metadata<'static>>() > CLASS_MASK);

/// Fibonacci hashing of `key` to `bits` bits.
#[inline]
fn slot(key: u64, bits: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

/// The rules' class of each callsite seen, by its metadata's address
/// (`&'static`, one per callsite). A slot holds the address with the class
/// in its low bits, one word, so that a reader never sees the class of one
/// callsite with the address of another.
pub(crate) struct Callsites {
    slots: Box<[AtomicUsize; 1 << CALLSITE_BITS]>,
}

impl Default for Callsites {
    fn default() -> Self {
        Callsites {
            slots: Box::new([const { AtomicUsize::new(0) }; 1 << CALLSITE_BITS]),
        }
    }
}

impl Callsites {
    /// What `policy` says about a span of `meta`: the rules' class from the
    /// cache, and a user predicate asked every time, as documented.
    #[inline]
    pub fn classify(&self, policy: &Policy, meta: &'static Metadata<'static>) -> Static {
        let key = std::ptr::from_ref(meta) as usize;
        // Relaxed: the word is the whole of what is published, and it is
        // computed from immutable data; a stale or racing value only means
        // classifying again.
        let held = self.slots[slot(key as u64, CALLSITE_BITS)].load(Ordering::Relaxed);
        let by_rules = if held & !CLASS_MASK == key {
            decode(held & CLASS_MASK)
        } else {
            self.fill(policy, meta)
        };
        policy.with_predicate(meta, by_rules)
    }

    /// Classifies a callsite the subscriber registers, before its first span.
    pub fn register(&self, policy: &Policy, meta: &'static Metadata<'static>) {
        self.fill(policy, meta);
    }

    #[cold]
    #[inline(never)]
    fn fill(&self, policy: &Policy, meta: &'static Metadata<'static>) -> Static {
        let key = std::ptr::from_ref(meta) as usize;
        let class = policy.by_rules(meta);
        self.slots[slot(key as u64, CALLSITE_BITS)].store(key | class as usize, Ordering::Relaxed);
        class
    }
}

#[inline]
fn decode(bits: usize) -> Static {
    match bits {
        1 => Static::IfFlagged,
        2 => Static::Privileged,
        _ => Static::No,
    }
}

/// A counting filter of the span ids that carry the layer's state: a span
/// is marked when its state is attached and unmarked when the state is
/// taken at close. An unmarked bucket proves that no span hashing to it
/// has state; a marked one may be another span's, and then the span is
/// looked up as before.
///
/// Relaxed is enough: a span is marked (in `on_new_span`) before its id is
/// returned, and whatever thread then enters, records or closes the span
/// got the id from the creating one through a synchronisation of its own,
/// so it sees the mark or a later count that still includes it.
pub(crate) struct Marks {
    buckets: Box<[AtomicU32; 1 << MARK_BITS]>,
}

impl Default for Marks {
    fn default() -> Self {
        Marks {
            buckets: Box::new([const { AtomicU32::new(0) }; 1 << MARK_BITS]),
        }
    }
}

impl Marks {
    #[inline]
    fn bucket(&self, id: &Id) -> &AtomicU32 {
        &self.buckets[slot(id.into_u64(), MARK_BITS)]
    }

    /// `id` now carries state.
    pub fn mark(&self, id: &Id) {
        self.bucket(id).fetch_add(1, Ordering::Relaxed);
    }

    /// `id`'s state was taken; call once per [`mark`](Self::mark).
    pub fn unmark(&self, id: &Id) {
        self.bucket(id).fetch_sub(1, Ordering::Relaxed);
    }

    /// False when `id` surely carries no state.
    #[inline]
    pub fn may_carry(&self, id: &Id) -> bool {
        self.bucket(id).load(Ordering::Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;

    /// The metadata of the spans `make` creates (callsite statics), read
    /// under a registry: without a subscriber a span has none.
    fn metas(make: impl Fn() -> Vec<tracing::Span>) -> Vec<&'static Metadata<'static>> {
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            make()
                .iter()
                .map(|s| s.metadata().expect("enabled"))
                .collect()
        })
    }

    fn callsites() -> Vec<&'static Metadata<'static>> {
        metas(|| {
            vec![
                tracing::info_span!(target: "audit::payments", "transfer"),
                tracing::info_span!("maybe", audit.privileged = tracing::field::Empty),
                tracing::info_span!("http.request", method = "GET"),
                tracing::info_span!(target: "auditor", "not.under.audit"),
                tracing::info_span!("users.delete"),
            ]
        })
    }

    #[test]
    fn cached_classes_are_the_policys_every_time() {
        let policy = Policy::default().span_name("users.delete");
        let cache = Callsites::default();
        let expected = [
            Static::Privileged,
            Static::IfFlagged,
            Static::No,
            Static::No,
            Static::Privileged,
        ];
        for _ in 0..3 {
            for (meta, want) in callsites().into_iter().zip(expected) {
                assert_eq!(cache.classify(&policy, meta), want, "{}", meta.name());
                assert_eq!(policy.classify(meta), want, "{}", meta.name());
            }
        }
    }

    #[test]
    fn each_layer_keeps_its_own_policys_classes() {
        let (strict, lax) = (
            Policy::default().span_name("http.request"),
            Policy::default().no_target_prefixes(),
        );
        let (a, b) = (Callsites::default(), Callsites::default());
        let sites = callsites();
        for meta in &sites {
            a.register(&strict, meta);
            b.register(&lax, meta);
        }
        assert_eq!(a.classify(&strict, sites[2]), Static::Privileged);
        assert_eq!(b.classify(&lax, sites[2]), Static::No);
        assert_eq!(a.classify(&strict, sites[0]), Static::Privileged);
        assert_eq!(b.classify(&lax, sites[0]), Static::No);
    }

    #[test]
    fn a_predicate_is_asked_for_every_span() {
        let on = Arc::new(AtomicBool::new(false));
        let flag = on.clone();
        let policy = Policy::default().predicate(move |_| flag.load(Ordering::Relaxed));
        let cache = Callsites::default();
        let plain = callsites()[2];
        assert_eq!(cache.classify(&policy, plain), Static::No);
        on.store(true, Ordering::Relaxed);
        assert_eq!(cache.classify(&policy, plain), Static::Privileged);
        on.store(false, Ordering::Relaxed);
        assert_eq!(cache.classify(&policy, plain), Static::No);
    }

    #[test]
    fn marks_count_per_span_until_unmarked() {
        let marks = Marks::default();
        let (a, b) = (Id::from_u64(1), Id::from_u64(2));
        assert!(!marks.may_carry(&a) && !marks.may_carry(&b));
        marks.mark(&a);
        marks.mark(&a);
        assert!(marks.may_carry(&a));
        marks.unmark(&a);
        assert!(marks.may_carry(&a), "one of the two is still marked");
        marks.unmark(&a);
        assert!(!marks.may_carry(&a));
    }
}
