//! Trail health: `verify`'s result over the whole dataset (every file's
//! hash, every chain, seq continuity, and the witness's checkpoints when
//! one is configured; run in the background by [`crate::verified`], the
//! page showing the latest run and when it ran), and each collector's
//! chain: its length, its last seal and its last digest (the heartbeat that proves a collector was
//! alive when nothing was sealed), the windows it recorded nobody was
//! listening (coverage gaps), and its last signed checkpoint; and the side
//! doors of the last 7 days: ungated effects per service.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use chrono::DateTime;
use maud::{html, Markup};

use crate::app::{with_rows, App, Viewer};
use crate::checkpoints::{self, Witness};
use crate::page::{layout, problem, respond};
use crate::verified::{self, Latest};
use audit_collector::checkpoint::NoteVerifier;
use audit_collector::coverage::{self, SealedThrough};
use audit_collector::manifest::{self, Body, Entry};
use audit_collector::store::{chain, Location};
use audit_collector::verify::{self, Report};

const PATH: &str = "/health";

/// Every collector's entries, wherever the dataset is.
async fn chains(loc: &Location) -> Result<BTreeMap<String, Vec<Entry>>, String> {
    if let Some(dir) = loc.local_dir() {
        return manifest::read_all(dir).map_err(|e| e.to_string());
    }
    let stored = chain::read_all(loc).await.map_err(|e| e.to_string())?;
    Ok(stored
        .into_iter()
        .map(|(id, s)| (id, s.into_iter().filter_map(|s| s.entry.ok()).collect()))
        .collect())
}

/// `verify` over the dataset (blocking: it reads every file), with
/// `verify --witness`'s check of a data dir when a witness is known.
pub fn verify_now(
    loc: &Location,
    operator_keys: &[String],
    witness: Option<&Witness>,
) -> Result<Report, String> {
    let opts = verify::Options {
        operator_keys: NoteVerifier::parse_all(operator_keys)
            .map_err(|e| format!("[retention] operator_keys: {e}"))?,
    };
    let Some(dir) = loc.local_dir() else {
        return verify::verify_store(loc, &opts).map_err(|e| e.to_string());
    };
    let mut r = verify::verify(dir, &opts).map_err(|e| e.to_string())?;
    if let Some(w) = witness {
        verify::check_witness(dir, &w.dir, &w.remote, None, &mut r)
            .map_err(|e| format!("witness {}: {e}", w.dir.display()))?;
    }
    Ok(r)
}

fn when(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339()
}

/// Ungated effects per service over the last 7 days.
async fn ungated(app: &App) -> Result<Vec<(String, i64)>, String> {
    let to = chrono::Utc::now();
    let engine = app.engine().await.map_err(|e| e.to_string())?;
    audit_query::ungated::by_service(&engine, to - chrono::Duration::days(7), to)
        .await
        .map_err(|e| e.to_string())
}

/// `GET /health`.
pub async fn page(State(app): State<Arc<App>>, Extension(viewer): Extension<Viewer>) -> Response {
    let (chains, sealed, ungated) = tokio::join!(
        chains(&app.location),
        coverage::require(&app.location),
        ungated(&app)
    );
    let sealed = sealed.map_err(|e| e.to_string());
    let (chains, sealed, ungated) = match (chains, sealed, ungated) {
        (Ok(c), Ok(s), Ok(u)) => (c, s, u),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                PATH,
                Some(&viewer.0),
                &format!("cannot read the trail: {e}"),
            )
        }
    };
    let seen = match verified::fingerprint(&app.location, &chains).await {
        Ok(f) => f,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                PATH,
                Some(&viewer.0),
                &format!("cannot list the trail: {e}"),
            )
        }
    };
    let signed = match &app.witness {
        Some(w) => checkpoints::latest_all(w, &chains).await,
        None => BTreeMap::new(),
    };
    let latest = app.verifier.latest(&seen);
    let collectors = chains.len();
    let page = layout(
        "Trail health",
        PATH,
        Some(&viewer.0),
        html! {
            p { "Dataset " code { (app.location.url) } }
            (verdict(&latest))
            (chain_table(&chains, &latest))
            (gaps(&sealed))
            (checkpoints::table(app.witness.as_ref(), &signed))
            (side_doors(&ungated))
        },
    );
    with_rows(respond(StatusCode::OK, page), collectors)
}

/// `verify`'s latest result: its verdict, when it ran and what it found.
fn verdict(latest: &Latest) -> Markup {
    let Some(run) = &latest.run else {
        return html! {
            p id="verdict" class="verdict small" { "VERIFYING" }
            p class="summary" {
                "verify has been running since "
                (latest.running.map_or_else(String::new, |t| t.to_rfc3339()))
                " (it reads every file); reload in a moment."
            }
        };
    };
    let r = match &run.report {
        Ok(r) => r,
        Err(e) => {
            return html! {
                p id="verdict" class="verdict small inconsistent" { "NOT VERIFIED" }
                p class="problem" role="alert" { "verify could not run: " (e) }
            }
        }
    };
    let (verdict, class) = if r.intact() {
        ("INTACT", "human")
    } else {
        ("NOT INTACT", "inconsistent")
    };
    html! {
        p id="verdict" class=(format!("verdict small {class}")) { (verdict) }
        p class="summary" {
            (r.manifests) " manifest(s), " (r.entries) " entries, " (r.files) " files, "
            (r.rows) " rows, " (r.deleted) " deleted by retention"
        }
        p class="hint" {
            "verify ran at " (run.at.to_rfc3339()) " (took " (format!("{:.1}", run.took.as_secs_f64())) " s) over the chains as they were then"
            @if let Some(t) = latest.running {
                "; a new run for the chains as they are now has been under way since " (t.to_rfc3339())
            }
            "."
        }
        @if !r.findings.is_empty() {
            table class="rows" {
                caption { "Findings" }
                thead { tr { th scope="col" { "Kind" } th scope="col" { "Where" } th scope="col" { "Detail" } } }
                tbody {
                    @for f in &r.findings {
                        tr { td class="fail" { (f.kind) } td { code { (f.path) } } td { (f.detail) } }
                    }
                }
            }
        }
    }
}

/// Each collector's chain: verify's result for it, length, head, last
/// seal, last digest.
fn chain_table(chains: &BTreeMap<String, Vec<Entry>>, latest: &Latest) -> Markup {
    // verify's findings name the manifest or file they are about, and
    // both names hold the collector id.
    let findings = |id: &str| {
        let r = latest.run.as_ref()?.report.as_ref().ok()?;
        Some(r.findings.iter().filter(|f| f.path.contains(id)).count())
    };
    html! {
        table class="rows" {
            caption { "Collectors" }
            thead { tr {
                th scope="col" { "Collector" } th scope="col" { "verify" } th scope="col" { "Entries" } th scope="col" { "Head" }
                th scope="col" { "Last seal" } th scope="col" { "Sealed up to seq" } th scope="col" { "Last digest" }
            } }
            tbody {
                @for (id, entries) in chains {
                    @let seal = entries.iter().rev().find_map(|e| match &e.body {
                        Body::Seal { seq_last, .. } => Some((e.time_ns, *seq_last)),
                        _ => None,
                    });
                    @let digest = entries.iter().rev().find(|e| matches!(e.body, Body::Digest { .. }));
                    tr {
                        td { code { (id) } }
                        @match findings(id) {
                            Some(0) => td class="pass" { "intact" },
                            Some(n) => td class="fail" { (n) " finding(s)" },
                            None => td { "—" },
                        }
                        td { (entries.len()) }
                        td { code class="hash" { (entries.last().map_or("—", |e| e.hash.as_str())) } }
                        td { (seal.map_or_else(|| "never".to_owned(), |(t, _)| when(t))) }
                        td { (seal.map_or_else(|| "—".to_owned(), |(_, s)| s.to_string())) }
                        td { (digest.map_or_else(|| "never".to_owned(), |e| when(e.time_ns))) }
                    }
                }
            }
        }
    }
}

/// Each collector's coverage gaps: windows it recorded that nothing was
/// listening, in which "no rows" proves nothing.
fn gaps(sealed: &[SealedThrough]) -> Markup {
    let n: usize = sealed.iter().map(|s| s.gaps.len()).sum();
    html! {
        table class="rows" {
            caption { "Coverage gaps (" (n) "): windows nothing was listening" }
            thead { tr {
                th scope="col" { "Collector" } th scope="col" { "Sealed through" }
                th scope="col" { "Not listening from" } th scope="col" { "to" }
            } }
            tbody {
                @for s in sealed {
                    @if s.gaps.is_empty() {
                        tr {
                            td { code { (s.collector_id) } }
                            td { (s.through.as_deref().unwrap_or("nothing yet")) }
                            td class="pass" colspan="2" { "none: listening throughout" }
                        }
                    }
                    @for g in &s.gaps {
                        tr {
                            td { code { (s.collector_id) } }
                            td { (s.through.as_deref().unwrap_or("nothing yet")) }
                            td class="fail" { (g.from) } td class="fail" { (g.to) }
                        }
                    }
                }
            }
        }
    }
}

/// Side doors: ungated effects per service in the last 7 days.
fn side_doors(ungated: &[(String, i64)]) -> Markup {
    html! {
        table class="rows" id="ungated" {
            caption { "Side doors: ungated effects in the last 7 days" }
            thead { tr { th scope="col" { "Service" } th scope="col" { "Ungated effects" } } }
            tbody {
                @for (service, n) in ungated {
                    tr { td { (service) } td class="fail" { (n) } }
                }
                @if ungated.is_empty() {
                    tr { td colspan="2" { "none" } }
                }
            }
        }
    }
}
