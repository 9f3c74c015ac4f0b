//! Signed checkpoints, as the proof panel and the trail-health view show
//! them: the latest checkpoint each collector signed to its witness
//! (`[store] witness_dir` or `--witness`), checked here and now — its
//! signature under the key pinned in the witness, its origin, and that the
//! collector's chain still holds the signed head at the signed size. A row
//! is covered by a checkpoint whose size reaches past the row's seal entry:
//! from then on the collector's host cannot drop or rewrite that entry
//! without the witness showing it.
//!
//! Only the newest note of each collector is read (the witness keeps one
//! per digest); `verify --witness` checks them all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use audit_collector::checkpoint::{self, NoteVerifier};
use audit_collector::coverage::rfc3339;
use audit_collector::manifest::Entry;
use audit_collector::store::{self, put, Location, RemoteOptions};
use maud::{html, Markup};

/// Where the collectors' witness is.
#[derive(Clone, Debug)]
pub struct Witness {
    location: Location,
    /// As configured, for the page.
    shown: String,
    /// As configured, for `verify`'s witness check.
    pub dir: PathBuf,
    /// The store options a bucket witness is read with.
    pub remote: RemoteOptions,
}

impl Witness {
    /// The witness at `dir` (a directory or `s3://bucket/prefix`).
    pub fn open(dir: &Path, remote: &RemoteOptions) -> Result<Witness, store::StoreError> {
        let shown = dir.display().to_string();
        let location = match dir.to_str().filter(|d| store::is_remote(d)) {
            Some(url) => Location::parse(url, remote)?,
            None => Location::local(dir)?,
        };
        Ok(Witness {
            location,
            shown,
            dir: dir.to_owned(),
            remote: remote.clone(),
        })
    }

    async fn text(&self, rel: &str) -> Result<String, String> {
        put::read(self.location.store.as_ref(), &self.location.path(rel))
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("{rel}: {e}"))
    }

    /// The newest checkpoint of `collector_id`, checked against `entries`
    /// (its chain as the dataset holds it now); `None` when the witness
    /// has none.
    pub async fn latest(&self, collector_id: &str, entries: &[Entry]) -> Option<Signed> {
        let names = match self.location.list(collector_id).await {
            Ok(n) => n,
            Err(e) => return Some(Signed::unreadable(format!("{}: {e}", self.shown))),
        };
        // Zero-padded sizes: the last name is the largest size.
        let note = names.into_iter().rfind(|n| n.ends_with(".note"))?;
        let text = match self.text(&note).await {
            Ok(t) => t,
            Err(e) => return Some(Signed::unreadable(e)),
        };
        let key = match self.text(&format!("{collector_id}.pub")).await {
            Ok(k) => NoteVerifier::parse(&k).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let path = PathBuf::from(&self.shown).join(&note).display().to_string();
        Some(Signed::check(path, collector_id, &text, key, entries))
    }

    /// Where the witness is, as configured.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// A checkpoint as read and checked.
#[derive(Clone, Debug)]
pub struct Signed {
    /// The note's path in the witness.
    pub path: String,
    /// Manifest entries it counts (0 when unreadable).
    pub size: u64,
    /// When the counted head entry was appended, if the chain has it.
    pub head_time_ns: Option<i64>,
    /// The signing key's name when it checks out, else why not.
    pub verdict: Result<String, String>,
}

impl Signed {
    fn unreadable(why: String) -> Signed {
        Signed {
            path: String::new(),
            size: 0,
            head_time_ns: None,
            verdict: Err(why),
        }
    }

    fn check(
        path: String,
        collector_id: &str,
        note: &str,
        key: Result<NoteVerifier, String>,
        entries: &[Entry],
    ) -> Signed {
        let opened = key.and_then(|k| {
            k.open(note)
                .map(|cp| (k.name().to_owned(), cp))
                .map_err(|e| e.to_string())
        });
        let (name, cp) = match opened {
            Ok(o) => o,
            Err(e) => {
                return Signed {
                    path,
                    ..Signed::unreadable(e)
                }
            }
        };
        let head = cp.size.checked_sub(1).and_then(|i| entries.get(i as usize));
        let verdict = if cp.origin != checkpoint::origin(collector_id) {
            Err(format!("origin {:?} is not this collector's", cp.origin))
        } else {
            match head {
                Some(e) if e.hash == cp.head_hex => Ok(name),
                Some(_) => Err(format!(
                    "the chain's entry {} is not the one signed: rewritten since",
                    cp.size - 1
                )),
                None => Err(format!(
                    "signed at {} entries, the chain now has {}: cut off since",
                    cp.size,
                    entries.len()
                )),
            }
        };
        Signed {
            path,
            size: cp.size,
            head_time_ns: head.map(|e| e.time_ns),
            verdict,
        }
    }

    /// Whether it covers seal entry `entry` (and checks out).
    pub fn covers(&self, entry: u64) -> bool {
        self.verdict.is_ok() && self.size > entry
    }

    fn summary(&self) -> Markup {
        html! {
            @match &self.verdict {
                Ok(key) => {
                    strong { "SIGNED" } " by " code { (key) } ": " (self.size) " entries"
                    @if let Some(t) = self.head_time_ns { ", head appended " (rfc3339(t)) }
                    "; the chain still holds the signed head. "
                    code { (self.path) }
                }
                Err(why) => { strong { "FAIL" } " " (why) " " code { (self.path) } }
            }
        }
    }
}

/// The proof panel's line: the latest checkpoint and whether it covers the
/// row's seal entry.
pub fn covering(witness: Option<&Witness>, latest: Option<&Signed>, entry: Option<u64>) -> Markup {
    let Some(w) = witness else {
        return html! { dd { "no witness configured ([store] witness_dir or --witness): nothing signed to check against" } };
    };
    let Some(s) = latest else {
        return html! { dd class="fail" { "the witness " code { (w.shown()) } " has no checkpoint of this collector" } };
    };
    let covered = entry.is_some_and(|e| s.covers(e));
    html! {
        dd class=(if covered { "pass" } else { "fail" }) {
            @if covered {
                "covers this row's seal entry. "
            } @else if s.verdict.is_ok() {
                "does not cover this row's seal entry yet (signed before it). "
            }
            (s.summary())
        }
    }
}

/// The trail-health view's table: each collector's latest checkpoint.
pub fn table(witness: Option<&Witness>, latest: &BTreeMap<String, Option<Signed>>) -> Markup {
    let Some(w) = witness else {
        return html! {
            p class="hint" {
                "No witness configured ([store] witness_dir or --witness): no signed checkpoint to show. "
                "Check checkpoints kept elsewhere with "
                code { "audit-collector verify --checkpoint FILE --public-key KEY" } "."
            }
        };
    };
    html! {
        table class="rows" {
            caption { "Last signed checkpoint per collector (witness " code { (w.shown()) } ")" }
            thead { tr { th scope="col" { "Collector" } th scope="col" { "Checkpoint" } } }
            tbody {
                @for (id, s) in latest {
                    tr {
                        td { code { (id) } }
                        @match s {
                            Some(s) => td class=(if s.verdict.is_ok() { "pass" } else { "fail" }) { (s.summary()) },
                            None => td class="fail" { "none in the witness" },
                        }
                    }
                }
            }
        }
    }
}

/// The latest checkpoint of every collector in `chains`.
pub async fn latest_all(
    witness: &Witness,
    chains: &BTreeMap<String, Vec<Entry>>,
) -> BTreeMap<String, Option<Signed>> {
    let mut out = BTreeMap::new();
    for (id, entries) in chains {
        out.insert(id.clone(), witness.latest(id, entries).await);
    }
    out
}
