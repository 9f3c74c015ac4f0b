//! Trace, span and event ids, generated without a system call or a lock.
//!
//! A privileged span needs three random ids. Asking the OS for each
//! (`getrandom`) and building a UUIDv7 through `uuid`'s shared
//! monotonic context cost about a microsecond per span in the layer bench,
//! more than the rest of the record. Ids only need to be unique, not
//! secret, so each thread keeps a wyrand generator seeded once from the OS.
//! A forked child would inherit its parent's generators and repeat its ids
//! (and an event id is the collector's deduplication key), so a fork
//! handler bumps a generation counter and every thread reseeds on its next
//! id after a fork.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static AT_FORK: Once = Once::new();

thread_local! {
    /// (wyrand state, fork generation it was seeded in); `None` until first use.
    static RNG: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

fn install_fork_handler() {
    AT_FORK.call_once(|| {
        #[cfg(unix)]
        // SAFETY: the handler only touches an atomic, which is
        // async-signal-safe and valid in a freshly forked child.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

fn seed() -> u64 {
    // Installed before the first state exists: a fork before any seed has
    // nothing to duplicate.
    install_fork_handler();
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: time, thread and address still differ between
        // threads and processes.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let here = &b as *const _ as u64;
        return t ^ here.rotate_left(32) ^ u64::from(std::process::id()) << 17;
    }
    u64::from_le_bytes(b)
}

/// The next 64 random bits of this thread (wyrand).
fn next_u64() -> u64 {
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    RNG.with(|cell| {
        let mut state = match cell.get() {
            Some((s, g)) if g == generation => s,
            _ => seed(),
        };
        state = state.wrapping_add(0xa076_1d64_78bd_642f);
        cell.set(Some((state, generation)));
        let t = u128::from(state) * u128::from(state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// A non-zero 64-bit id (all zeros means "unset" in OTLP).
fn nonzero() -> u64 {
    loop {
        let v = next_u64();
        if v != 0 {
            return v;
        }
    }
}

/// A 16-byte trace id, kept binary until a record is built.
pub(crate) fn trace_id_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&nonzero().to_be_bytes());
    b[8..].copy_from_slice(&next_u64().to_be_bytes());
    b
}

/// An 8-byte span id, kept binary until a record is built.
pub(crate) fn span_id_bytes() -> [u8; 8] {
    nonzero().to_be_bytes()
}

/// A 16-byte trace id as 32 lower-case hex digits.
#[cfg(test)]
fn trace_id() -> String {
    hex(&trace_id_bytes())
}

/// An 8-byte span id as 16 lower-case hex digits.
#[cfg(test)]
fn span_id() -> String {
    hex(&span_id_bytes())
}

/// A hyphenated UUIDv7 held on the stack: a privileged span records it
/// without an allocation.
#[derive(Clone, Copy, Debug)]
pub struct EventId([u8; uuid::fmt::Hyphenated::LENGTH]);

impl EventId {
    /// The id, 36 characters.
    pub fn as_str(&self) -> &str {
        // `encode_lower` wrote ASCII only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A UUIDv7 (time-ordered to the millisecond, 74 random bits).
pub(crate) fn event_id_text() -> EventId {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut rand = [0u8; 10];
    rand[..8].copy_from_slice(&next_u64().to_le_bytes());
    rand[8..].copy_from_slice(&next_u64().to_le_bytes()[..2]);
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Builder::from_unix_timestamp_millis(ms, &rand)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut text);
    EventId(text)
}

/// A UUIDv7, hyphenated.
pub(crate) fn event_id() -> String {
    event_id_text().as_str().to_owned()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::{after_fork_in_child, event_id, span_id, trace_id, FORK_GENERATION, RNG};

    #[test]
    fn formats_are_otlp_and_uuid_v7() {
        let t = trace_id();
        assert_eq!(t.len(), 32);
        assert!(t
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(t, "0".repeat(32));
        let s = span_id();
        assert_eq!(s.len(), 16);
        assert_ne!(s, "0".repeat(16));
        let e = uuid::Uuid::parse_str(&event_id()).expect("a uuid");
        assert_eq!(e.get_version_num(), 7);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let (secs, nanos) = e.get_timestamp().expect("v7 has a time").to_unix();
        let id_ms = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(now_ms.abs_diff(id_ms) < 60_000, "{now_ms} vs {id_ms}");
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let per_thread = 10_000;
        let handles: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || (0..per_thread).map(|_| event_id()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for id in h.join().expect("thread") {
                assert!(all.insert(id), "duplicate event id");
            }
        }
        assert_eq!(all.len(), 2 * per_thread);
    }

    #[test]
    fn a_new_fork_generation_reseeds_the_thread() {
        let _ = span_id();
        let before = RNG.with(Cell::get).expect("seeded").0;
        // What the fork handler does in a child: the next id must not
        // continue the inherited sequence.
        after_fork_in_child();
        let expected_if_not_reseeded = before.wrapping_add(0xa076_1d64_78bd_642f);
        let _ = span_id();
        let after = RNG.with(Cell::get).expect("seeded");
        assert_ne!(after.0, expected_if_not_reseeded);
        assert_eq!(after.1, FORK_GENERATION.load(Ordering::Relaxed));
    }
}
